//! Issue 21, network changes: a computer's address changes in the middle of a call (Wi-Fi to
//! Ethernet, a new DHCP lease) and the call carries on within 2 s, with no new call.
//!
//! Two network namespaces are the two computers, joined by a veth pair (the network the media
//! takes). In the first test each also has a link of its own to the signaling server in the
//! root namespace, on a subnet the other computer has no route to, so the signaling survives
//! the change and no candidate on it can carry the call: only an ICE restart on A's new
//! address brings the call back. In the second, the server runs on B and A reaches it over the
//! media network, so the change kills A's signaling connection too, as on a real laptop.
//! Without the network watcher, webrtc-rs would notice the dead path only after its
//! disconnect timeout (5 s) and the engine restart only once it failed. Needs root
//! (CAP_NET_ADMIN).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::{ChildGuard, artifacts_dir, free_port, wait_for, workspace_bin};
use serde_json::Value;

fn ip(args: &[&str]) {
    let status = Command::new("ip").args(args).status().expect("ip");
    assert!(status.success(), "ip {args:?}");
}

/// Namespaces `<p>-a` and `<p>-b`: media network 10.72.0.0/24 between them (A .1, B .2);
/// signaling links 10.70.0.0/24 (A .2, root .1) and 10.71.0.0/24 (B .2, root .1).
struct Computers {
    prefix: String,
}

impl Computers {
    /// With `signaling_links`, each computer also gets its own link to the root namespace
    /// (where the server then runs); without, the server runs on B and A reaches it over the
    /// media network, so A's change takes its signaling connection with it.
    fn start(prefix: &str, signaling_links: bool) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test makes network namespaces: run the tests as root"
        );
        let me = Self {
            prefix: prefix.to_owned(),
        };
        me.remove();
        let (a, b) = (me.ns("a"), me.ns("b"));
        for ns in [&a, &b] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        let (ma, mb) = (format!("{prefix}-ma"), format!("{prefix}-mb"));
        ip(&["link", "add", &ma, "type", "veth", "peer", "name", &mb]);
        ip(&["link", "set", &ma, "netns", &a]);
        ip(&["link", "set", &mb, "netns", &b]);
        ip(&["-n", &a, "addr", "add", "10.72.0.1/24", "dev", &ma]);
        ip(&["-n", &b, "addr", "add", "10.72.0.2/24", "dev", &mb]);
        ip(&["-n", &a, "link", "set", &ma, "up"]);
        ip(&["-n", &b, "link", "set", &mb, "up"]);
        let links: &[(&String, &str, &str)] = if signaling_links {
            &[(&a, "a", "10.70.0"), (&b, "b", "10.71.0")]
        } else {
            &[]
        };
        for &(ns, name, net) in links {
            let (inner, outer) = (format!("{prefix}-s{name}"), format!("{prefix}-r{name}"));
            ip(&[
                "link", "add", &inner, "type", "veth", "peer", "name", &outer,
            ]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&["addr", "add", &format!("{net}.1/24"), "dev", &outer]);
            ip(&["link", "set", &outer, "up"]);
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{net}.2/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", ns, "link", "set", &inner, "up"]);
        }
        me
    }

    fn media_dev(&self) -> String {
        format!("{}-ma", self.prefix)
    }

    fn ns(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn remove(&self) {
        // Deleting a namespace deletes the veth ends in it, and so the pairs.
        for name in ["a", "b"] {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.ns(name)])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Computers {
    fn drop(&mut self) {
        self.remove();
    }
}

fn count(events: &[Value], pred: impl Fn(&Value) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

/// One side's view of the other's video after the change: the longest time without a frame,
/// and the frames in the last part of the watch.
struct Gap {
    longest: Duration,
    frames_at_end: usize,
}

/// The signaling keeps its own path: only ICE has to notice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_an_address_change_within_two_seconds_without_a_rejoin() {
    let computers = Computers::start("llnc", true);
    let port = free_port().unwrap();
    let _server = server(None, port);
    let (a, b) = change_addresses(&computers, port, ("10.70.0.1", "10.71.0.1")).await;
    for (who, events) in [("A", &a), ("B", &b)] {
        assert_eq!(
            count(events, |e| e["event"] == "joined"),
            1,
            "{who} joined the room once and never again"
        );
        assert_eq!(
            count(events, |e| e["event"] == "state"
                && e["state"] == "reconnecting"),
            0,
            "{who}'s signaling was never lost"
        );
    }
}

/// A laptop's move as it is: the signaling's TCP connection ran over the address that went
/// away, so it is dead too, with nothing to say so for tens of seconds (the server's pings).
/// The room client sees its address gone, reconnects at once and rejoins with its resume
/// secret; the restart's offer waits for it. For B nothing happened: the same call goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_survives_a_change_that_takes_the_signaling_connection_with_it() {
    let computers = Computers::start("llnd", false);
    let port = free_port().unwrap();
    let _server = server(Some(&computers.ns("b")), port);
    let (a, b) = change_addresses(&computers, port, ("10.72.0.2", "127.0.0.1")).await;
    let rejoins = count(&a, |e| e["event"] == "joined");
    eprintln!("A joined {rejoins} times");
    assert!(rejoins <= 2, "A rejoined {rejoins} times");
    assert_eq!(count(&b, |e| e["event"] == "joined"), 1);
}

/// `liveloop-server`'s room service on `port` (all addresses), in namespace `ns` or here.
fn server(ns: Option<&str>, port: u16) -> ChildGuard {
    let log = std::fs::File::create(
        artifacts_dir()
            .unwrap()
            .join(format!("netchange-server-{port}.log")),
    )
    .unwrap();
    let bin = workspace_bin("liveloop-server").unwrap();
    let in_ns = |program: &std::ffi::OsStr| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns.unwrap_or_default()])
            .arg(program);
        c
    };
    let mut cmd = match ns {
        Some(_) => in_ns(bin.as_os_str()),
        None => Command::new(&bin),
    };
    cmd.args(["--rooms-addr", &format!("0.0.0.0:{port}")])
        .args([
            "--matchmaking-addr",
            &format!("127.0.0.1:{}", free_port().unwrap()),
        ])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log);
    let server = ChildGuard::spawn("liveloop-server", &mut cmd).unwrap();
    wait_for("the server", Duration::from_secs(10), || match ns {
        None => std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(drop),
        // bash's /dev/tcp, inside the namespace.
        Some(_) => in_ns("bash".as_ref())
            .args(["-c", &format!("exec 3<>/dev/tcp/127.0.0.1/{port}")])
            .stderr(Stdio::null())
            .status()
            .ok()?
            .success()
            .then_some(()),
    })
    .unwrap();
    server
}

/// Two CLIs in a call (A reaching the server at `servers.0`, B at `servers.1`); mid-call A's
/// address on the media network changes. Checks that both see the other's video again within
/// 2 s and that the call is the same one (no peer left or joined again); returns every event
/// each printed.
async fn change_addresses(
    computers: &Computers,
    port: u16,
    servers: (&str, &str),
) -> (Vec<Value>, Vec<Value>) {
    let cli = workspace_bin("liveloop-cli").unwrap();
    let spawn = |name: &str, server: &str| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &computers.ns(name)])
            .arg(&cli)
            .args(["join", "--server", &format!("ws://{server}:{port}/ws")])
            .args(["--room", "netchange", "--id", name, "--name", name])
            .args(["--video", "synthetic:320x180@30", "--seconds", "22"])
            .env("RUST_LOG", "liveloop_engine=info,rtc_ice=info,warn");
        CliPeer::spawn_command(&format!("netchange-{name}"), cmd).unwrap()
    };
    let mut a = spawn("a", servers.0);
    let mut b = spawn("b", servers.1);
    for (peer, from) in [(&mut a, "b"), (&mut b, "a")] {
        peer.next("frames before the change", Duration::from_secs(15), |e| {
            e["event"] == "frame" && e["from"] == from
        })
        .await;
    }
    // A steady call for a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while a.events.try_recv().is_ok() {}
    while b.events.try_recv().is_ok() {}

    // A's address on the media network changes, as a new lease would change it.
    let ns_a = computers.ns("a");
    let changed = Instant::now();
    ip(&[
        "-n",
        &ns_a,
        "addr",
        "del",
        "10.72.0.1/24",
        "dev",
        &computers.media_dev(),
    ]);
    ip(&[
        "-n",
        &ns_a,
        "addr",
        "add",
        "10.72.0.11/24",
        "dev",
        &computers.media_dev(),
    ]);

    // Watch both sides' frames for 7 s: the longest stretch without one from the other.
    let window = Duration::from_secs(7);
    let tail = Duration::from_secs(2);
    let mut gaps = [
        (
            changed,
            Gap {
                longest: Duration::ZERO,
                frames_at_end: 0,
            },
        ),
        (
            changed,
            Gap {
                longest: Duration::ZERO,
                frames_at_end: 0,
            },
        ),
    ];
    let mut network_changed: Option<Duration> = None;
    let deadline = tokio::time::Instant::from_std(changed + window);
    loop {
        let (side, ev) = tokio::select! {
            Some(ev) = a.events.recv() => (0, ev),
            Some(ev) = b.events.recv() => (1, ev),
            () = tokio::time::sleep_until(deadline) => break,
        };
        let now = Instant::now();
        if side == 0 && ev["event"] == "network_changed" {
            eprintln!("A: {ev} after {:?}", now - changed);
            network_changed.get_or_insert(now - changed);
        }
        let from = if side == 0 { "b" } else { "a" };
        if ev["event"] == "frame" && ev["from"] == from {
            let (last, gap) = &mut gaps[side];
            gap.longest = gap.longest.max(now - *last);
            *last = now;
            if now >= changed + window - tail {
                gap.frames_at_end += 1;
            }
        }
    }
    let end = changed + window;
    for (side, (last, gap)) in gaps.iter_mut().enumerate() {
        gap.longest = gap.longest.max(end - *last);
        eprintln!(
            "{}: longest stretch without the other's video {:?}, {} frames in the last {tail:?}",
            ["A", "B"][side],
            gap.longest,
            gap.frames_at_end
        );
    }
    let restart = network_changed.expect("A noticed the network change and restarted ICE");
    eprintln!("A restarted ICE {restart:?} after the change");
    for (side, (_, gap)) in gaps.iter().enumerate() {
        let who = ["A", "B"][side];
        assert!(
            gap.longest <= Duration::from_secs(2),
            "{who} went {:?} without video after the change (goal: back within 2 s)",
            gap.longest
        );
        assert!(
            gap.frames_at_end >= 20,
            "{who}: only {} frames in the last {tail:?}: the video did not come back steadily",
            gap.frames_at_end
        );
    }

    // Everything so far, while both are still in the call (they leave at 22 s, when each
    // sees the other go).
    let (a_events, b_events) = (a.all(), b.all());
    a.kill();
    b.kill();
    for (who, events, other) in [("A", &a_events, "b"), ("B", &b_events, "a")] {
        assert_eq!(
            count(events, |e| e["event"] == "peer_joined" && e["id"] == other),
            1,
            "{who} called {other} once: the same call went on"
        );
        assert_eq!(
            count(events, |e| e["event"] == "peer_left"),
            0,
            "{who} never saw the other leave"
        );
    }
    (a_events, b_events)
}
