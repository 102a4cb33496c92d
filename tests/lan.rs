//! Issue 17: a room link works from another computer. Two network namespaces behind `netlab`'s
//! router stand in for two computers on one network (support/netlab.rs). Computer A runs the
//! built-in servers on the network (`liveloop-cli host`, as the app does with no server
//! configured); the link it prints must name A's address on the network, and a client on
//! computer B joins with exactly that link. Needs root (CAP_NET_ADMIN), as CI runs it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::time::Duration;

use liveloop_e2e::browser::{Browser, BrowserOptions};
use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::netlab::{NetLab, client_addr};
use liveloop_e2e::{artifacts_dir, temp_dir, workspace_bin};
use liveloop_media::synthetic::{SyntheticMic, Voice};
use serde_json::Value;

fn lab(prefix: &str) -> NetLab {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes network namespaces and TUN devices: run the tests as root"
    );
    // Nobody's link is impaired (client 9 does not exist).
    NetLab::start(prefix, &["a", "b"], 9).expect("the network lab")
}

fn count(events: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_hosted_on_one_computer_is_joined_from_another_with_its_link() {
    let lab = lab("lla");
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = lab.command(0, &cli);
    cmd.args(["host", "--room", "lan-room", "--seconds", "40"]);
    let mut host = CliPeer::spawn_command("lan-host", cmd).unwrap();
    let hosting = host
        .next("the host's links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    eprintln!("hosting: {hosting}");
    assert_eq!(hosting["reach"], "network");
    let link = hosting["room_link"]
        .as_str()
        .expect("a room link")
        .to_owned();
    // The link names A's address on the network (its default route's), not loopback.
    assert!(
        link.starts_with(&format!("http://{}:", client_addr(0))) && link.ends_with("/r/lan-room"),
        "{link}"
    );
    let spawn = |n: usize, id: &str| {
        let mut cmd = lab.command(n, &cli);
        cmd.args(["join", &link, "--id", id])
            .args(["--video", "synthetic:320x180@30", "--seconds", "12"])
            .args(["--chat", &format!("hello from {id}")]);
        CliPeer::spawn_command(&format!("lan-{id}"), cmd).unwrap()
    };
    // A's own user and B's join with the same link.
    let (a, b) = (spawn(0, "a"), spawn(1, "b"));
    let (a, b) = (
        a.finish(Duration::from_secs(40)).await.unwrap(),
        b.finish(Duration::from_secs(40)).await.unwrap(),
    );
    for (name, events, from) in [("a", &a, "b"), ("b", &b, "a")] {
        let frames = count(events, |e| e["event"] == "frame" && e["from"] == from);
        let speech = count(events, |e| {
            e["event"] == "audio"
                && e["from"] == from
                && e["rms"].as_f64().is_some_and(|r| r > 0.01)
        });
        let chat = count(events, |e| {
            e["event"] == "chat" && e["from"] == from && e["text"] == format!("hello from {from}")
        });
        eprintln!("{name}: {frames} frames, {speech} s of speech, {chat} chat from {from}");
        assert!(frames > 150, "{name} decoded {frames} frames from {from}");
        assert!(speech >= 5, "{name} heard {speech} s of {from}");
        assert_eq!(chat, 1, "{name} did not get {from}'s chat");
    }
    host.kill();
    drop(lab);
}

/// The link stays valid across a restart: the port is kept (the app keeps it in its settings;
/// here it is passed again), and a server that comes back on it serves the same link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_port_gives_the_same_link_after_a_restart() {
    let lab = lab("llk");
    let cli = workspace_bin("liveloop-cli").unwrap();
    let hosting = |port: u16| {
        let mut cmd = lab.command(0, &cli);
        cmd.args(["host", "--room", "kept", "--seconds", "30"])
            .args(["--rooms-port", &port.to_string()]);
        CliPeer::spawn_command("kept-host", cmd).unwrap()
    };
    let mut first = hosting(0);
    let link = first
        .next("the first links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await["room_link"]
        .as_str()
        .unwrap()
        .to_owned();
    let port: u16 = link
        .rsplit(':')
        .next()
        .and_then(|rest| rest.split('/').next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    first.kill();
    let mut second = hosting(port);
    let again = second
        .next(
            "the links after the restart",
            Duration::from_secs(15),
            |e| e["event"] == "hosting",
        )
        .await;
    assert_eq!(again["room_link"].as_str(), Some(link.as_str()));
    // And the link works from B.
    let mut cmd = lab.command(1, &cli);
    cmd.args([
        "join",
        &link,
        "--id",
        "b",
        "--video",
        "none",
        "--seconds",
        "3",
    ]);
    let b = CliPeer::spawn_command("kept-b", cmd)
        .unwrap()
        .finish(Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        b.iter().any(|e| e["event"] == "joined"),
        "B could not join with the kept link: {b:?}"
    );
    second.kill();
    drop(lab);
}

/// A browser guest on computer B: the HTTPS link the host prints opens the browser client on a
/// secure origin (the camera needs one), over the host's self-signed certificate (a user
/// accepts the warning once; Chromium here is told to), and Chromium calls a native client on
/// computer A.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_on_another_computer_joins_over_https() {
    let lab = lab("llh");
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = lab.command(0, &cli);
    cmd.args(["host", "--room", "web-room", "--seconds", "60"]);
    let mut host = CliPeer::spawn_command("https-host", cmd).unwrap();
    let hosting = host
        .next("the host's links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    let browser_link = hosting["browser_link"]
        .as_str()
        .expect("an https link")
        .to_owned();
    assert!(
        browser_link.starts_with(&format!("https://{}:", client_addr(0))),
        "{browser_link}"
    );
    let link = hosting["room_link"].as_str().unwrap().to_owned();
    let mut cmd = lab.command(0, &cli);
    cmd.args(["join", &link, "--id", "a-native"]).args([
        "--video",
        "synthetic:320x180@30",
        "--seconds",
        "40",
    ]);
    let mut native = CliPeer::spawn_command("https-native", cmd).unwrap();

    let dir = temp_dir("lan-https").unwrap();
    let mic = SyntheticMic::new(Voice::Speech, false);
    let samples: Vec<f32> = (0..48_000 * 10).map(|n| mic.sample(n)).collect();
    let wav = dir.join("speech.wav");
    liveloop_media::file::write_wav(&wav, &samples).unwrap();
    let b = Browser::start_with(
        &BrowserOptions {
            fake_audio: Some(wav),
            netns: Some(lab.namespaces[1].clone()),
            extra_args: vec!["--ignore-certificate-errors".into()],
            ..BrowserOptions::default()
        },
        &artifacts_dir().unwrap().join("lan-https-console.log"),
    )
    .unwrap();
    // The plain link first: no camera on an insecure page, and the page says where the
    // secure one is.
    b.open("web", &link).await.unwrap();
    let pointed = b
        .wait(
            "web",
            "const n = document.getElementById('insecure'); \
             return !n.hidden && document.getElementById('secure-link').href",
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert_eq!(pointed.as_str(), Some(browser_link.as_str()), "{pointed}");
    b.open("web", &format!("{browser_link}?id=b-web"))
        .await
        .unwrap();
    let hidden = b
        .eval("web", "return document.getElementById('insecure').hidden")
        .await
        .unwrap();
    assert_eq!(hidden, true, "the secure page still says it is not secure");
    let secure = b
        .eval("web", "return window.isSecureContext && location.protocol")
        .await
        .unwrap();
    assert_eq!(secure, "https:", "the page is not on a secure origin");
    b.eval(
        "web",
        r#"state.name = "Guest"; return connect("web-room", "b-web")"#,
    )
    .await
    .unwrap();
    b.wait(
        "web",
        "return state.roomState === 'joined'",
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    native
        .next("connected", Duration::from_secs(30), |e| {
            e["event"] == "peer_connected"
        })
        .await;
    // Both ways: Chromium decodes the native video and hears it, the native client decodes
    // Chromium's camera.
    let seen = b
        .wait(
            "web",
            "const s = (await callStats())['a-native']; \
             return s && s.video.framesDecoded > 60 && s",
            Duration::from_secs(30),
        )
        .await
        .unwrap();
    eprintln!("Chromium's view of the native peer: {seen}");
    native
        .next("frames from the browser", Duration::from_secs(30), |e| {
            e["event"] == "frame" && e["from"] == "b-web"
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let frames = native.count(|e| e["event"] == "frame" && e["from"] == "b-web");
    assert!(
        frames > 30,
        "the native peer decoded {frames} frames from the browser"
    );
    // Audio both ways: Chromium receives the native Opus, and the native client hears the
    // browser's microphone (its speech file).
    let audio = b
        .eval(
            "web",
            "const s = (await callStats())['a-native']; return s.audio.packetsReceived ?? 0",
        )
        .await
        .unwrap();
    assert!(
        audio.as_f64().is_some_and(|p| p > 100.0),
        "Chromium received {audio} audio packets"
    );
    let speech = native.count(|e| {
        e["event"] == "audio" && e["from"] == "b-web" && e["rms"].as_f64().is_some_and(|r| r > 0.01)
    });
    assert!(
        speech >= 2,
        "the native peer heard {speech} s of the browser"
    );
    drop(b);
    native.kill();
    host.kill();
    drop(lab);
}

/// The app itself as the host: on computer A, with no server configured (so its built-in
/// servers are on the network), *Create room* shows a link naming A's address; a CLI on
/// computer B joins with exactly that link; video, audio and chat go both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_hosts_a_room_that_another_computer_joins_with_the_link_it_shows() {
    use liveloop_e2e::wait_for;
    let seg = Segment::start("llp", 2);
    let env = [
        ("LIVELOOP_VIDEO", "synthetic:320x180@15"),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let settings = serde_json::json!({"displayName": "Host App"});
    let (_driver, s, _dir) =
        liveloop_e2e::app::open_app_in_netns("lan-app", &seg.namespaces[0], &env, Some(&settings))
            .unwrap();
    let js = |script: &str| s.execute(script, &[]).unwrap();
    let view = |v: &str| {
        wait_for(&format!("the {v} view"), Duration::from_secs(30), || {
            (js("return document.body.dataset.view") == v).then_some(())
        })
        .unwrap();
    };
    view("home");
    let click = |css: &str| {
        wait_for(
            &format!("{css} to take a click"),
            Duration::from_secs(5),
            || s.click(&s.find(css).ok()?).ok(),
        )
        .unwrap();
    };
    click("#create-room");
    view("call");
    let link = wait_for("the room link", Duration::from_secs(10), || {
        let v = js("return document.getElementById('room-link').value");
        v.as_str().filter(|l| !l.is_empty()).map(str::to_owned)
    })
    .unwrap();
    eprintln!("the app's link: {link}");
    assert!(
        link.starts_with("https://10.79.0.1:") && link.contains("/r/"),
        "the link does not name A's address: {link}"
    );
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = seg.command(1, &cli);
    cmd.args(["join", &link, "--id", "b", "--name", "Computer B"])
        .args(["--video", "synthetic:320x180@15", "--seconds", "60"])
        .args(["--chat", "hello from b"]);
    let b = CliPeer::spawn_command("lan-app-b", cmd).unwrap();
    // B's video is drawn in the app, and its speech makes it the active speaker there.
    let frames = wait_for("B's video in the app", Duration::from_secs(40), || {
        let n = js("return window.__liveloop.tiles()['b']?.frames ?? 0").as_u64()?;
        (n >= 30).then_some(n)
    })
    .unwrap_or_else(|e| {
        let _ = s.screenshot(&artifacts_dir().unwrap().join("lan-app-failure.png"));
        panic!("{e:#}: {}", js("return window.__liveloop.tiles()"));
    });
    eprintln!("the app drew {frames} frames of B");
    wait_for("B speaking in the app", Duration::from_secs(20), || {
        let n = js("return document.querySelectorAll(\".tile[data-id='b'].speaking\").length");
        (n.as_u64()? == 1).then_some(())
    })
    .unwrap();
    wait_for("B's chat in the app", Duration::from_secs(20), || {
        let m = js("return window.__liveloop.messages()");
        m.as_array()?
            .iter()
            .any(|t| t == "hello from b")
            .then_some(())
    })
    .unwrap();
    // And the app's video, speech and chat reach B.
    let app_id = b.seen("the app's frames", |v| v["event"] == "frame")["from"]
        .as_str()
        .unwrap()
        .to_owned();
    b.seen("the app's speech", |v| {
        v["event"] == "audio"
            && v["from"] == app_id.as_str()
            && v["rms"].as_f64().is_some_and(|r| r > 0.01)
    });
    s.execute(
        "document.getElementById('chat-input').value = 'hello from the app'",
        &[],
    )
    .unwrap();
    click("#chat-form button");
    b.seen("the app's chat", |v| {
        v["event"] == "chat" && v["text"] == "hello from the app"
    });
    s.screenshot(&artifacts_dir().unwrap().join("lan-app-host.png"))
        .unwrap();
}

/// A LAN outside the private ranges (here 198.51.100.0/24; at home, often global IPv6) is
/// still the local network: the native client takes the host's plain link and its https
/// link with the self-signed certificate, because the host's address is inside one of its
/// own interface prefixes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lan_on_public_addresses_counts_as_local_for_both_links() {
    let seg = Segment::start_on("llg", 2, "198.51.100");
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = seg.command(0, &cli);
    cmd.args(["host", "--room", "public-lan", "--seconds", "30"]);
    let mut host = CliPeer::spawn_command("public-host", cmd).unwrap();
    let hosting = host
        .next("the host's links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    for (key, id) in [("room_link", "b-plain"), ("browser_link", "b-tls")] {
        let link = hosting[key].as_str().unwrap().to_owned();
        assert!(link.contains("//198.51.100.1:"), "{key}: {link}");
        let mut cmd = seg.command(1, &cli);
        cmd.args([
            "join",
            &link,
            "--id",
            id,
            "--video",
            "none",
            "--seconds",
            "2",
        ]);
        let b = CliPeer::spawn_command(&format!("public-{key}"), cmd)
            .unwrap()
            .finish(Duration::from_secs(30))
            .await
            .unwrap();
        assert!(
            b.iter().any(|e| e["event"] == "joined"),
            "{link} was not joined: {b:?}"
        );
    }
    host.kill();
}

/// Network namespaces on one bridge: computers on one Ethernet segment, where multicast
/// (mDNS) works as on a home network. Computer `n` has 10.79.0.`n+1` (or `<net>.n+1` with
/// [`Segment::start_on`]); the bridge lives in a namespace of its own (the switch).
struct Segment {
    namespaces: Vec<String>,
    switch: String,
}

impl Segment {
    fn start(prefix: &str, computers: usize) -> Self {
        Self::start_on(prefix, computers, "10.79.0")
    }

    /// On the /24 network `net` (`a.b.c`).
    fn start_on(prefix: &str, computers: usize, net: &str) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test makes network namespaces: run the tests as root"
        );
        let ip = |args: &[&str]| {
            let status = std::process::Command::new("ip")
                .args(args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        };
        let names = ["a", "b", "c", "d"];
        let namespaces: Vec<String> = names[..computers]
            .iter()
            .map(|n| format!("{prefix}-{n}"))
            .collect();
        let switch = format!("{prefix}-sw");
        for ns in namespaces.iter().chain([&switch]) {
            // A killed earlier run can leave one behind.
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        // No IGMP snooping: with no querier on the segment, multicast goes to every port.
        ip(&[
            "-n",
            &switch,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        ip(&["-n", &switch, "link", "set", "br0", "up"]);
        for (n, ns) in namespaces.iter().enumerate() {
            let (dev, port) = (format!("{prefix}-v{n}"), format!("{prefix}-s{n}"));
            ip(&["link", "add", &dev, "type", "veth", "peer", "name", &port]);
            ip(&["link", "set", &dev, "netns", ns]);
            ip(&["link", "set", &port, "netns", &switch]);
            ip(&["-n", &switch, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &switch, "link", "set", &port, "up"]);
            let addr = format!("{net}.{}/24", n + 1);
            ip(&["-n", ns, "addr", "add", &addr, "dev", &dev]);
            ip(&["-n", ns, "link", "set", &dev, "up"]);
            ip(&["-n", ns, "route", "add", "default", "dev", &dev]);
        }
        Self { namespaces, switch }
    }

    fn command(&self, n: usize, program: &std::path::Path) -> std::process::Command {
        let mut cmd = std::process::Command::new("ip");
        cmd.args(["netns", "exec", &self.namespaces[n]])
            .arg(program);
        cmd
    }
}

impl Drop for Segment {
    fn drop(&mut self) {
        // Deleting a namespace deletes the veth ends in it, and so the pairs.
        for ns in self.namespaces.iter().chain([&self.switch]) {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// Nearby: a host on computer A lists one room; `liveloop-cli nearby` on computer B finds it
/// within 3 s, with a link that names A, and never the room A did not list (in use all along).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_room_shows_nearby_and_an_unlisted_one_never_does() {
    let seg = Segment::start("llm", 2);
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = seg.command(0, &cli);
    cmd.args([
        "host",
        "--room",
        "open-room",
        "--list-nearby",
        "--seconds",
        "30",
    ]);
    let mut host = CliPeer::spawn_command("nearby-host", cmd).unwrap();
    let hosting = host
        .next("the host's links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    // A private room in use on the same servers.
    let rooms = hosting["rooms"][0].as_str().unwrap().to_owned();
    let secret = format!("{rooms}/r/secret-room");
    let mut cmd = seg.command(0, &cli);
    cmd.args([
        "join",
        &secret,
        "--id",
        "s",
        "--video",
        "none",
        "--seconds",
        "10",
    ]);
    let mut private = CliPeer::spawn_command("nearby-private", cmd).unwrap();
    private
        .next("joined", Duration::from_secs(10), |e| {
            e["event"] == "joined"
        })
        .await;
    let mut cmd = seg.command(1, &cli);
    cmd.args(["nearby", "--seconds", "6"]);
    let mut nearby = CliPeer::spawn_command("nearby-b", cmd).unwrap();
    let found = nearby
        .next("A's listed room", Duration::from_secs(3), |e| {
            e["event"] == "nearby"
                && e["app"]["rooms"]
                    .as_array()
                    .is_some_and(|r| r.iter().any(|r| r == "open-room"))
        })
        .await;
    eprintln!("found: {found}");
    let link = found["room_links"][0].as_str().unwrap();
    assert!(
        link.starts_with("http://10.79.0.1:") && link.ends_with("/r/open-room"),
        "{link}"
    );
    let events = nearby.finish(Duration::from_secs(20)).await.unwrap();
    let leaked: Vec<&Value> = events
        .iter()
        .filter(|e| e.to_string().contains("secret-room"))
        .collect();
    assert!(
        leaked.is_empty(),
        "an unlisted room was announced: {leaked:?}"
    );
    private.kill();
    host.kill();
}

/// Random chat on the network: two computers each host the built-in servers; a user on each
/// presses random chat on "the network's" matchmaker, both pick the one announced longest
/// (A's, started first), and they are matched. A quits: B's user moves to B's matchmaker, the
/// network's now, by itself, and a user on a third computer is matched with B's there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_chat_on_one_network_meets_on_the_matchmaker_announced_longest() {
    let seg = Segment::start("llr", 3);
    let cli = workspace_bin("liveloop-cli").unwrap();
    let host = |n: usize, label: &str| {
        let mut cmd = seg.command(n, &cli);
        cmd.args(["host", "--seconds", "90"]);
        CliPeer::spawn_command(label, cmd).unwrap()
    };
    let mut host_a = host(0, "random-host-a");
    let hosting_a = host_a
        .next("A's servers", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    // B starts later: its matchmaker is the younger one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut host_b = host(1, "random-host-b");
    let hosting_b = host_b
        .next("B's servers", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    let user = |n: usize, label: &str, seconds: u32| {
        let mut cmd = seg.command(n, &cli);
        cmd.args(["random", "nearby", "--video", "synthetic:320x180@15"])
            .args(["--seconds", &seconds.to_string()]);
        CliPeer::spawn_command(label, cmd).unwrap()
    };
    let (mut ua, mut ub) = (user(0, "random-user-a", 60), user(1, "random-user-b", 70));
    let (at_a, at_b) = (
        hosting_a["matchmaking"][0].as_str().unwrap().to_owned(),
        hosting_b["matchmaking"][0].as_str().unwrap().to_owned(),
    );
    for u in [&mut ua, &mut ub] {
        let chosen = u
            .next("the matchmaker chosen", Duration::from_secs(10), |e| {
                e["event"] == "matchmaker"
            })
            .await;
        assert_eq!(chosen["url"].as_str(), Some(at_a.as_str()), "{chosen}");
    }
    for u in [&mut ua, &mut ub] {
        u.next("matched and connected", Duration::from_secs(20), |e| {
            e["event"] == "peer_connected"
        })
        .await;
    }
    // A third, alone, waits at A's matchmaker: B's computer sees one person waiting nearby.
    let mut alone = user(0, "random-user-alone", 20);
    alone
        .next("queued", Duration::from_secs(10), |e| e["event"] == "state")
        .await;
    let mut cmd = seg.command(1, &cli);
    cmd.args(["nearby", "--seconds", "8"]);
    let mut nearby = CliPeer::spawn_command("random-nearby", cmd).unwrap();
    nearby
        .next("one waiting at A", Duration::from_secs(8), |e| {
            e["event"] == "nearby" && e["app"]["waiting"] == 1
        })
        .await;
    nearby.kill();
    alone.kill();
    // A goes, its user with it, without a goodbye (killed): B's user moves to B's matchmaker
    // and waits there.
    host_a.kill();
    ua.kill();
    let moved = ub
        .next("moved to B's matchmaker", Duration::from_secs(15), |e| {
            e["event"] == "matchmaker" && e["moved"] == true
        })
        .await;
    assert_eq!(moved["url"].as_str(), Some(at_b.as_str()), "{moved}");
    // A user on a third computer finds B's matchmaker and meets B's user there.
    let mut uc = user(2, "random-user-c", 25);
    let chosen = uc
        .next("C's matchmaker", Duration::from_secs(10), |e| {
            e["event"] == "matchmaker"
        })
        .await;
    assert_eq!(chosen["url"].as_str(), Some(at_b.as_str()), "{chosen}");
    uc.next("C matched and connected", Duration::from_secs(25), |e| {
        e["event"] == "peer_connected"
    })
    .await;
    ub.next("B matched again", Duration::from_secs(10), |e| {
        e["event"] == "peer_connected"
    })
    .await;
    // And media flows between them.
    uc.next("video from B", Duration::from_secs(10), |e| {
        e["event"] == "frame"
    })
    .await;
    uc.kill();
    ub.kill();
    host_b.kill();
}

/// The HTTPS link works in the native client too: `wss://` to a LiveLoop app on the local
/// network takes its self-signed certificate (as plain `ws://` is taken there), so a guest who
/// got the browser link can open it in LiveLoop as well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_link_works_in_the_native_client_too() {
    let lab = lab("llw");
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = lab.command(0, &cli);
    cmd.args(["host", "--room", "tls-room", "--seconds", "40"]);
    let mut host = CliPeer::spawn_command("wss-host", cmd).unwrap();
    let hosting = host
        .next("the host's links", Duration::from_secs(15), |e| {
            e["event"] == "hosting"
        })
        .await;
    let (plain, secure) = (
        hosting["room_link"].as_str().unwrap().to_owned(),
        hosting["browser_link"].as_str().unwrap().to_owned(),
    );
    assert!(secure.starts_with("https://"), "{secure}");
    let spawn = |n: usize, id: &str, link: &str| {
        let mut cmd = lab.command(n, &cli);
        cmd.args(["join", link, "--id", id]).args([
            "--video",
            "synthetic:320x180@30",
            "--seconds",
            "8",
        ]);
        CliPeer::spawn_command(&format!("wss-{id}"), cmd).unwrap()
    };
    let (a, b) = (spawn(0, "a", &plain), spawn(1, "b", &secure));
    let (a, b) = (
        a.finish(Duration::from_secs(30)).await.unwrap(),
        b.finish(Duration::from_secs(30)).await.unwrap(),
    );
    for (name, events, from) in [("a", &a, "b"), ("b", &b, "a")] {
        let frames = count(events, |e| e["event"] == "frame" && e["from"] == from);
        assert!(frames > 90, "{name} decoded {frames} frames from {from}");
    }
    host.kill();
    drop(lab);
}
