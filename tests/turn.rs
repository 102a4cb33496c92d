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
use std::process::{Command, Stdio};
use std::time::Duration;

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::{ChildGuard, free_port, temp_dir, wait_for, workspace_bin};
use serde_json::{Value, json};

const SECRET: &str = "liveloop-test-secret";

/// coturn on loopback with `use-auth-secret`; its UDP and TCP port.
fn coturn() -> (ChildGuard, u16) {
    let port = free_port().unwrap();
    let log = temp_dir("coturn").unwrap().join("turn.log");
    let mut cmd = Command::new("turnserver");
    cmd.args([
        "-n",
        "--listening-ip",
        "127.0.0.1",
        "--relay-ip",
        "127.0.0.1",
    ])
    .args(["--listening-port", &port.to_string()])
    .args(["--use-auth-secret", "--static-auth-secret", SECRET])
    .args([
        "--realm",
        "liveloop.test",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
    ])
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
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .unwrap();
    (guard, port)
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

/// Two CLIs in one room, relay-only through `rtc_config`; their events.
async fn relay_call(
    rooms_port: u16,
    room: &str,
    rtc_config: &Value,
    seconds: u32,
) -> Vec<Vec<Value>> {
    let ws = format!("ws://127.0.0.1:{rooms_port}/ws");
    let config = rtc_config.to_string();
    let spawn = |id: &str| {
        CliPeer::spawn(
            &format!("turn-{room}-{id}"),
            &[
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
                "--rtc-config",
                &config,
            ],
        )
        .unwrap()
    };
    let (a, b) = (spawn("a"), spawn("b"));
    vec![
        a.finish(Duration::from_secs(60)).await.unwrap(),
        b.finish(Duration::from_secs(60)).await.unwrap(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_only_calls_use_time_limited_credentials_that_coturn_takes_and_that_expire() {
    let (_turn, turn_port) = coturn();
    let (rooms, mm) = (free_port().unwrap(), free_port().unwrap());
    let mut cmd = Command::new(workspace_bin("liveloop-server").unwrap());
    cmd.args(["--rooms-addr", &format!("127.0.0.1:{rooms}")])
        .args(["--matchmaking-addr", &format!("127.0.0.1:{mm}")])
        .args(["--turn-secret", SECRET, "--turn-ttl-secs", "3600"])
        .env(
            "RTC_CONFIG_JSON",
            json!({"iceServers": [{"urls": format!("turn:127.0.0.1:{turn_port}")}]}).to_string(),
        )
        .stdout(Stdio::null());
    let _server = ChildGuard::spawn("liveloop-server", &mut cmd).unwrap();
    wait_for("the server", Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", rooms)).ok()
    })
    .unwrap();

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
    let calls = relay_call(rooms, "relayed", &relay, 8).await;
    for (events, from) in calls.iter().zip(["b", "a"]) {
        let frames = events
            .iter()
            .filter(|e| e["event"] == "frame" && e["from"] == from)
            .count();
        let summary = events.iter().find(|e| e["event"] == "summary").unwrap();
        eprintln!(
            "relay-only: {frames} frames from {from}, join → connected {} ms",
            summary["join_to_connected_ms"]
        );
        assert!(frames > 30, "{frames} frames from {from} through the relay");
    }

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
        let calls = relay_call(rooms, label, &refused, 6).await;
        for events in &calls {
            assert!(
                !events.iter().any(|e| e["event"] == "peer_connected"),
                "{label} credentials connected a relay-only call"
            );
        }
    }
}
