//! Issue 21: TURN relays. coturn from Debian, started here on loopback with a secret shared
//! with `liveloop-server --turn-secret` (coturn's `use-auth-secret`): the server hands each
//! client time-limited credentials, coturn takes them, and two CLIs connect relay-only
//! (`iceTransportPolicy: "relay"`) and exchange media through it. Credentials past their
//! expiry, or made with another secret, are refused.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::{ChildGuard, free_port, temp_dir, wait_for, workspace_bin};
use serde_json::{Value, json};

const SECRET: &str = "liveloop-test-secret";

/// coturn on loopback with `use-auth-secret`; its UDP and TCP port.
fn coturn() -> (ChildGuard, u16) {
    let port = free_port().unwrap();
    let args = [
        "--use-auth-secret",
        "--static-auth-secret",
        SECRET,
        "--no-tls",
    ];
    (coturn_with(port, &args), port)
}

/// coturn on loopback at `port` (TCP and, unless `--no-udp` is among `args`, UDP).
fn coturn_with(port: u16, args: &[&str]) -> ChildGuard {
    coturn_on(Ipv4Addr::LOCALHOST, port, args)
}

/// coturn listening and relaying on `ip`.
fn coturn_on(ip: Ipv4Addr, port: u16, args: &[&str]) -> ChildGuard {
    let log = temp_dir("coturn").unwrap().join("turn.log");
    let ip_text = ip.to_string();
    let mut cmd = Command::new("turnserver");
    cmd.args(["-n", "--listening-ip", &ip_text, "--relay-ip", &ip_text])
        .args(["--listening-port", &port.to_string()])
        .args(args)
        .args(["--realm", "liveloop.test", "--no-dtls", "--no-cli"])
        .args([
            "--allow-loopback-peers",
            "--min-port",
            "49160",
            "--max-port",
            "49260",
        ])
        .arg("--log-file")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let guard = ChildGuard::spawn("coturn", &mut cmd).expect("coturn (apt package coturn)");
    wait_for("coturn to listen", Duration::from_secs(10), || {
        std::net::TcpStream::connect((ip, port)).ok()
    })
    .unwrap();
    guard
}

/// coturn's arguments for the one long-term user the tests' clients use.
const LT_USER: [&str; 3] = ["--lt-cred-mech", "--user", "liveloop:relay-pass"];

/// An `RTC_CONFIG_JSON` with the TURN server `url` and [`LT_USER`]'s credentials, relay-only
/// if asked.
fn turn_config(url: &str, relay_only: bool) -> Value {
    let mut config = json!({"iceServers": [{"urls": url,
        "username": "liveloop", "credential": "relay-pass"}]});
    if relay_only {
        config["iceTransportPolicy"] = json!("relay");
    }
    config
}

/// The built-in servers (rooms and matchmaking) in this process, on `ip`.
async fn embedded_servers(
    ip: Ipv4Addr,
    rooms: liveloop_server::rooms::RoomsConfig,
) -> liveloop_server::embedded::Embedded {
    liveloop_server::embedded::start(
        ip.into(),
        (0, 0),
        liveloop_server::matchmaking::MatchmakingConfig::default(),
        rooms,
    )
    .await
    .unwrap()
}

/// liveloop-server's room and matchmaking services on loopback, with `args`; the room port.
fn liveloop_server(args: &[&str], rtc_config: Option<&Value>) -> (ChildGuard, u16, u16) {
    let (rooms, mm) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = Command::new(workspace_bin("liveloop-server").unwrap());
    cmd.args(["--rooms-addr", &format!("127.0.0.1:{rooms}")])
        .args(["--matchmaking-addr", &format!("127.0.0.1:{mm}")])
        .args(args)
        .stdout(Stdio::null());
    if let Some(c) = rtc_config {
        cmd.env("RTC_CONFIG_JSON", c.to_string());
    }
    let server = ChildGuard::spawn("liveloop-server", &mut cmd).unwrap();
    wait_for("the server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rooms)).ok()
    })
    .unwrap();
    (server, rooms, mm)
}

/// A CA and a certificate it signed for `localhost` (openssl): `(ca.pem, cert, key)`.
fn test_certificates() -> (PathBuf, PathBuf, PathBuf) {
    let dir = temp_dir("turn-tls").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=LiveLoop test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "turn.key",
            "-out",
            "turn.csr",
            "-subj",
            "/CN=localhost",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "turn.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "turn.pem",
        "-days",
        "2",
        "-extfile",
        "leaf.ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("turn.pem"),
        dir.join("turn.key"),
    )
}

fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn body_json(response: &str) -> Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Two CLIs in one room, relay-only through `rtc_config` (trusting the roots in `ca`,
/// if any); their events.
async fn relay_call(
    rooms_port: u16,
    room: &str,
    rtc_config: &Value,
    seconds: u32,
    ca: Option<&Path>,
) -> Vec<Vec<Value>> {
    let ws = format!("ws://127.0.0.1:{rooms_port}/ws");
    let config = rtc_config.to_string();
    let spawn = |id: &str| {
        let mut cmd = Command::new(workspace_bin("liveloop-cli").unwrap());
        cmd.args([
            "join",
            "--server",
            &ws,
            "--room",
            room,
            "--id",
            id,
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            &seconds.to_string(),
            "--stats",
            "--rtc-config",
            &config,
        ]);
        if let Some(ca) = ca {
            cmd.env("SSL_CERT_FILE", ca);
        }
        CliPeer::spawn_command(&format!("turn-{room}-{id}"), cmd).unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    vec![
        a.finish(Duration::from_secs(60)).await.unwrap(),
        b.finish(Duration::from_secs(60)).await.unwrap(),
    ]
}

/// Each side received more than 30 frames through the relay, and its stats said relayed;
/// prints join → connected and the median relay round trip.
fn assert_relayed_media(label: &str, calls: &[Vec<Value>]) {
    for (events, from) in calls.iter().zip(["b", "a"]) {
        let frames = events
            .iter()
            .filter(|e| e["event"] == "frame" && e["from"] == from)
            .count();
        let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
        let mut rtts: Vec<f64> = events
            .iter()
            .filter(|e| e["event"] == "stats")
            .flat_map(|e| e["peers"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["relayed"] == true && p["rtt_ms"].as_f64() > Some(0.0))
            .filter_map(|p| p["rtt_ms"].as_f64())
            .collect();
        rtts.sort_by(f64::total_cmp);
        if rtts.is_empty() {
            eprintln!(
                "{label}: stats {:?}",
                events.iter().rfind(|e| e["event"] == "stats")
            );
        }
        eprintln!(
            "{label} relay-only: {frames} frames from {from}, join → connected {} ms, \
             relay round trip p50 {:?} ms over {} reports",
            summary["join_to_connected_ms"],
            rtts.get(rtts.len() / 2),
            rtts.len()
        );
        assert!(
            frames > 30,
            "{label}: {frames} frames from {from} through the relay"
        );
        assert!(
            !rtts.is_empty(),
            "{label}: no stats said the call was relayed"
        );
    }
}

fn never_connected(label: &str, calls: &[Vec<Value>]) {
    for events in calls {
        assert!(
            !events.iter().any(|e| e["event"] == "peer_connected"),
            "{label}: a relay-only call connected"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_calls_use_time_limited_credentials_that_coturn_takes_and_that_expire() {
    let (_turn, turn_port) = coturn();
    let turn_url = json!({"iceServers": [{"urls": format!("turn:127.0.0.1:{turn_port}")}]});
    let (_server, rooms, mm) = liveloop_server(
        &["--turn-secret", SECRET, "--turn-ttl-secs", "3600"],
        Some(&turn_url),
    );

    // Both services hand out credentials valid for the TTL, different each time.
    let first = body_json(&http_get(rooms, "/api/rtc-config"));
    let again = body_json(&http_get(mm, "/api/rtc-config"));
    let turn = &first["iceServers"][0];
    let username = turn["username"].as_str().unwrap();
    let expiry: u64 = username.split(':').next().unwrap().parse().unwrap();
    assert!(expiry.abs_diff(now_unix() + 3600) < 60, "{username}");
    assert_ne!(first, again, "the same credentials twice");
    assert!(http_get(rooms, "/api/rtc-config").contains("no-store"));
    // The browser client's page gets them too.
    let page = http_get(rooms, "/config.js");
    assert!(page.contains("\"username\":\""), "{page}");

    // coturn takes them: a relay-only call connects and carries media.
    let mut relay = first.clone();
    relay["iceTransportPolicy"] = json!("relay");
    assert_relayed_media("udp", &relay_call(rooms, "relayed", &relay, 8, None).await);

    // Expired credentials (made an hour and a half ago for an hour), and ones made with
    // another secret: coturn refuses them, and a relay-only call cannot connect.
    let expired = liveloop_server::turn::TurnSecret::new(SECRET, Duration::from_secs(3600))
        .credentials("late", now_unix() - 5400);
    let forged = liveloop_server::turn::TurnSecret::new("guessed", Duration::from_secs(3600))
        .credentials("eve", now_unix());
    for (label, c) in [("expired", expired), ("forged", forged)] {
        let refused = json!({
            "iceServers": [{"urls": format!("turn:127.0.0.1:{turn_port}"),
                "username": c.username, "credential": c.credential}],
            "iceTransportPolicy": "relay",
        });
        never_connected(label, &relay_call(rooms, label, &refused, 6, None).await);
    }
}

/// Where no UDP reaches the TURN server (coturn here listens on none), relay-only calls
/// still connect over TCP (`?transport=tcp`) and TLS (`turns:`, its certificate checked
/// against a CA the CLIs are told to trust), which webrtc-rs reaches through our bridge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_calls_reach_turn_over_tcp_and_tls_when_no_udp_does() {
    let (ca, cert, key) = test_certificates();
    let (port, tls_port) = (free_port().unwrap(), free_port().unwrap());
    let (cert, key) = (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    );
    let tls = tls_port.to_string();
    let _turn = coturn_with(port, &[&LT_USER[..], &["--no-udp", "--no-tls"]].concat());
    let tls_args = [
        "--no-udp",
        "--tls-listening-port",
        &tls,
        "--cert",
        &cert,
        "--pkey",
        &key,
    ];
    let _turns = coturn_with(free_port().unwrap(), &[&LT_USER[..], &tls_args].concat());
    let (_server, rooms, _) = liveloop_server(&[], None);
    let config = |url: String| turn_config(&url, true);
    let tcp = config(format!("turn:127.0.0.1:{port}?transport=tcp"));
    assert_relayed_media("tcp", &relay_call(rooms, "tcp", &tcp, 8, None).await);
    let turns = config(format!("turns:localhost:{tls_port}?transport=tcp"));
    assert_relayed_media("tls", &relay_call(rooms, "tls", &turns, 8, Some(&ca)).await);
    // Over UDP the same server cannot be reached: the calls above went over the streams.
    let udp = config(format!("turn:127.0.0.1:{port}"));
    never_connected(
        "udp to a TCP-only server",
        &relay_call(rooms, "udp", &udp, 5, None).await,
    );
    // And a TLS server whose certificate is not trusted is not used.
    never_connected(
        "untrusted TLS",
        &relay_call(rooms, "untrusted", &turns, 5, None).await,
    );
}

/// Chromium relay-only through the same coturn, with a native peer relay-only too: the page
/// gets `iceTransportPolicy: "relay"` from the room service's config.js, offers relay
/// candidates only, and media flows both ways through the relay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_relay_only_calls_a_native_peer_through_coturn() {
    use liveloop_proto::rtc_config::RtcConfig;
    use liveloop_server::rooms::RoomsConfig;

    let port = free_port().unwrap();
    let _turn = coturn_with(port, &[&LT_USER[..], &["--no-tls"]].concat());
    let relay = turn_config(&format!("turn:127.0.0.1:{port}"), true);
    let rooms = RoomsConfig {
        rtc_config: RtcConfig::parse(&relay.to_string()).unwrap(),
        ..RoomsConfig::default()
    };
    let server = embedded_servers(Ipv4Addr::LOCALHOST, rooms).await;
    let log = liveloop_e2e::artifacts_dir()
        .unwrap()
        .join("turn-chromium-console.log");
    let b = liveloop_e2e::browser::Browser::start(None, &log).unwrap();
    let base = format!("http://{}", server.rooms);
    b.open("web", &format!("{base}/r/relayed?id=web"))
        .await
        .unwrap();
    b.eval("web", r#"return connect("relayed", "web")"#)
        .await
        .unwrap();
    b.wait(
        "web",
        "return state.roomState === 'joined'",
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let mut cmd = Command::new(workspace_bin("liveloop-cli").unwrap());
    cmd.args([
        "join",
        "--server",
        &format!("ws://{}/ws", server.rooms),
        "--room",
        "relayed",
        "--id",
        "native",
        "--video",
        "synthetic:320x180@15",
        "--seconds",
        "30",
        "--stats",
        "--rtc-config",
        &relay.to_string(),
    ]);
    let mut native = CliPeer::spawn_command("turn-chromium-native", cmd).unwrap();
    native
        .next("connected", Duration::from_secs(20), |e| {
            e["event"] == "peer_connected"
        })
        .await;
    // Chromium decodes the native video, and the native peer Chromium's.
    b.wait(
        "web",
        "const s = (await callStats())['native']; return s && s.video.framesDecoded > 30",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    native
        .next("frames from Chromium", Duration::from_secs(20), |e| {
            e["event"] == "stats"
                && e["peers"].as_array().is_some_and(|p| {
                    p.iter()
                        .any(|p| p["relayed"] == true && p["frames_decoded"].as_u64() > Some(30))
                })
        })
        .await;
    // The page offered relay candidates only: none of its own addresses.
    let candidates = b
        .eval(
            "web",
            "const p = state.peers.get('native'); \
             const st = await p.pc.getStats(); const types = []; \
             st.forEach((r) => { if (r.type === 'local-candidate') types.push(r.candidateType); }); \
             return types",
        )
        .await
        .unwrap();
    let types = candidates.as_array().unwrap();
    assert!(!types.is_empty(), "no local candidates in Chromium's stats");
    assert!(
        types.iter().all(|t| t == "relay"),
        "Chromium's candidates: {types:?}"
    );
}

/// Private mode in random chat: the stranger (a socket.io client of ours, standing in for
/// any peer) receives our offer and every candidate we trickle, and none carries an address
/// of ours: relay candidates only, their related address hidden.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_mode_in_random_chat_shows_the_stranger_no_address_of_ours() {
    let port = free_port().unwrap();
    let _turn = coturn_with(port, &[&LT_USER[..], &["--no-tls"]].concat());
    let server = embedded_servers(Ipv4Addr::LOCALHOST, Default::default()).await;
    let url = format!("http://{}", server.matchmaking);
    let turn = turn_config(&format!("turn:127.0.0.1:{port}"), false);

    // Without a TURN server, private mode refuses to start rather than show our addresses.
    let refused = Command::new(workspace_bin("liveloop-cli").unwrap())
        .args(["random", &url, "--private", "--connect-timeout", "2"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("TURN"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The CLI queues first, so it makes the offer.
    let mut cmd = Command::new(workspace_bin("liveloop-cli").unwrap());
    cmd.args([
        "random",
        &url,
        "--video",
        "synthetic:320x180@15",
        "--seconds",
        "20",
    ])
    .args(["--private", "--rtc-config", &turn.to_string()]);
    let _cli = CliPeer::spawn_command("turn-private", cmd).unwrap();
    wait_for_queue(&url, 1);
    stranger_sees_only_relay_candidates(&url).await;
}

/// Waits until the matchmaker at `url` has `n` waiting.
fn wait_for_queue(url: &str, n: u64) {
    wait_for("the queue", Duration::from_secs(10), || {
        let status = ureq::get(&format!("{url}/api/status")).call().ok()?;
        let v: Value = status.into_body().read_json().ok()?;
        (v["queue"]["size"] == n).then_some(())
    })
    .unwrap();
}

/// A stranger (a socket.io client that can see everything the server relays) asks the
/// matchmaker at `url` for a partner: the one queued, which makes the offer. Nothing it
/// receives, the offer or any candidate trickled in the next 4 s, carries an address of the
/// other side: relay candidates only, their related address hidden.
async fn stranger_sees_only_relay_candidates(url: &str) {
    use liveloop_e2e::sio_client::SioClient;

    let mut stranger = SioClient::connect(url).await.unwrap();
    stranger
        .emit(
            "request-room",
            json!({"name": "Stranger", "roomId": null, "userImage": ""}),
        )
        .await
        .unwrap();
    let done = stranger.expect("match-done").await.unwrap();
    assert_eq!(done["makeOffer"], false);
    let offer = stranger.expect("negotiation-call-offer").await.unwrap();
    let sdp = offer["offer"]["sdp"].as_str().unwrap().to_owned();
    let mut candidates: Vec<String> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a="))
        .filter(|l| l.starts_with("candidate:"))
        .map(str::to_owned)
        .collect();
    // Everything it trickles over the next seconds.
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Ok((event, payload))) = tokio::time::timeout_at(until, stranger.next()).await {
        if event == "new-ice-candidates"
            && let Some(c) = payload["candidate"]["candidate"].as_str()
            && !c.is_empty()
        {
            candidates.push(c.to_owned());
        }
    }
    eprintln!("what the stranger got: {candidates:#?}");
    assert!(
        candidates.iter().any(|c| c.contains(" typ relay")),
        "no relay candidate reached the stranger"
    );
    for c in &candidates {
        assert!(
            c.contains(" typ relay"),
            "a candidate that is not relayed: {c}"
        );
        if let Some(related) = c.split(" raddr ").nth(1) {
            assert!(
                related.starts_with("0.0.0.0 rport 0"),
                "our address as related: {c}"
            );
        }
    }
    // The SDP names no address of ours either: the connection line is the placeholder.
    for line in sdp.lines().filter(|l| l.starts_with("c=")) {
        assert!(line.ends_with(" 0.0.0.0"), "{line}");
    }
}

/// Behind a firewall that lets UDP reach the TURN server alone (netlab: everything else
/// across A's link passes, UDP only to and from the server), A's call still connects through
/// the relay, without relay-only being asked for: the direct pairs fail and a relay pair is
/// taken after its wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_firewall_that_lets_udp_reach_only_the_turn_server_still_gets_a_relayed_call() {
    use liveloop_e2e::netlab::{NetLab, root_addr};

    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes network namespaces and TUN devices: run the tests as root"
    );
    let lab = NetLab::start("llturn", &["a", "b"], 0).expect("the network lab");
    lab.allow_udp_only_with(root_addr());
    let port = free_port().unwrap();
    let root = root_addr();
    let _turn = coturn_on(root, port, &[&LT_USER[..], &["--no-tls"]].concat());
    let server = embedded_servers(root, Default::default()).await;
    let ws = format!("ws://{}/ws", server.rooms);
    let config = turn_config(&format!("turn:{root}:{port}"), false).to_string();
    let cli = workspace_bin("liveloop-cli").unwrap();
    let spawn = |n: usize, id: &str| {
        let mut cmd = lab.command(n, &cli);
        cmd.args(["join", "--server", &ws, "--room", "firewalled", "--id", id])
            .args([
                "--video",
                "synthetic:320x180@15",
                "--seconds",
                "10",
                "--stats",
            ])
            .args(["--rtc-config", &config]);
        CliPeer::spawn_command(&format!("turn-firewall-{id}"), cmd).unwrap()
    };
    let (a, b) = (spawn(0, "a"), spawn(1, "b"));
    let calls = [
        a.finish(Duration::from_secs(60)).await.unwrap(),
        b.finish(Duration::from_secs(60)).await.unwrap(),
    ];
    for (events, from) in calls.iter().zip(["b", "a"]) {
        let frames = events
            .iter()
            .filter(|e| e["event"] == "frame" && e["from"] == from)
            .count();
        let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
        eprintln!(
            "firewalled: {frames} frames from {from}, join → connected {} ms",
            summary["join_to_connected_ms"]
        );
        assert!(
            frames > 30,
            "{frames} frames from {from} behind the firewall"
        );
    }
    // A relay carries it (A's, or B's relay address, which A's UDP may reach: either way
    // through the TURN server, the one UDP destination A has).
    let relayed = |events: &[Value]| {
        events
            .iter()
            .filter(|e| e["event"] == "stats")
            .flat_map(|e| e["peers"].as_array().cloned().unwrap_or_default())
            .any(|p| p["relayed"] == true)
    };
    assert!(
        relayed(&calls[0]) || relayed(&calls[1]),
        "neither side's stats said relayed"
    );
}

/// Private mode in the app (issue 21, point 5): on by default in random chat. With a server
/// whose `/api/rtc-config` offers a TURN relay (time-limited credentials from
/// `--turn-secret`), the app fetches it at the call's start, sends relay candidates only
/// (the stranger sees no address of ours) and the call view says "Private".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_is_private_in_random_chat_by_default_through_the_servers_relay() {
    let (_turn, turn_port) = coturn();
    let config = json!({"iceServers": [{"urls": format!("turn:127.0.0.1:{turn_port}")}]});
    let (_server, _rooms, mm) = liveloop_server(&["--turn-secret", SECRET], Some(&config));
    let url = format!("http://127.0.0.1:{mm}");
    let settings = json!({"displayName": "Private User", "matchmakingUrl": url});
    let env = [
        ("LIVELOOP_VIDEO", "synthetic:320x180@15"),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let (_driver, s, _dir) =
        liveloop_e2e::app::open_app("turn-app", &env, Some(&settings)).unwrap();
    let js = |script: &str| s.execute(script, &[]).unwrap();
    wait_for("the home view", Duration::from_secs(20), || {
        (js("return document.body.dataset.view") == "home").then_some(())
    })
    .unwrap();
    wait_for("a click on Random chat", Duration::from_secs(5), || {
        s.click(&s.find("#start-random").ok()?).ok()
    })
    .unwrap();
    wait_for_queue(&url, 1);
    // The pill follows the engine's event: wait for it rather than read it once.
    let read_pill = || {
        js("const p = document.getElementById('private-state'); \
             return {hidden: p.hidden, text: p.textContent}")
    };
    let shown = wait_for("the Private pill", Duration::from_secs(5), || {
        let pill = read_pill();
        (pill == json!({"hidden": false, "text": "Private"})).then_some(pill)
    });
    assert!(shown.is_ok(), "{}", read_pill());
    stranger_sees_only_relay_candidates(&url).await;
    let shot = liveloop_e2e::artifacts_dir()
        .unwrap()
        .join("app-private-random.png");
    s.screenshot(&shot).unwrap();
}
