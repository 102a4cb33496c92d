//! `liveloop-cli`: two headless clients join a room by link through the real room server,
//! exchange video and chat, and print it all as JSON lines; bad input exits non-zero.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::{Command, Stdio};

use liveloop_e2e::workspace_bin;
use liveloop_server::embedded;
use serde_json::Value;

fn cli() -> Command {
    Command::new(workspace_bin("liveloop-cli").unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_cli_clients_call_each_other_by_link() {
    let server = embedded::start_loopback().await.unwrap();
    let link = format!("liveloop://join/cli-room?server=ws://{}/ws", server.rooms);
    let spawn = |id: &str| {
        cli()
            .args([
                "join",
                &link,
                "--id",
                id,
                "--seconds",
                "6",
                "--video",
                "synthetic:320x180@15",
                "--chat",
                &format!("hi from {id}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn("one"), spawn("two"));
    let outputs = tokio::task::spawn_blocking(move || {
        (
            one.wait_with_output().unwrap(),
            two.wait_with_output().unwrap(),
        )
    })
    .await
    .unwrap();
    for (me, other, out) in [("one", "two", &outputs.0), ("two", "one", &outputs.1)] {
        assert!(
            out.status.success(),
            "{me} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let frames = events
            .iter()
            .filter(|e| e["event"] == "frame" && e["from"] == other && e["stamp"].is_u64())
            .count();
        let audio = events
            .iter()
            .filter(|e| {
                e["event"] == "audio" && e["from"] == other && e["rms"].as_f64().unwrap() > 0.01
            })
            .count();
        eprintln!("{me}: {frames} stamped frames and {audio} s of audio from {other}");
        assert!(frames >= 20, "{me} decoded {frames} frames from {other}");
        assert!(audio >= 3, "{me} got {audio} s of audio from {other}");
        let summary = events.last().unwrap();
        assert_eq!(summary["event"], "summary", "the last line sums up");
        assert!(summary["join_to_connected_ms"].as_f64().unwrap() > 0.0);
        assert!(summary["latency_ms"]["n"].as_u64().unwrap() >= 20);
        assert!(summary["rss_mb"].as_f64().unwrap() > 1.0);
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "chat" && e["text"] == format!("hi from {other}")),
            "{me} never got {other}'s chat"
        );
        assert!(
            events
                .iter()
                .any(|e| e["event"] == "joined" && e["id"] == me)
        );
    }
}

#[test]
fn bad_input_gives_a_message_and_a_failing_exit_code() {
    for args in [
        vec!["join", "https://not-a-room-link"],
        vec!["join", "--room", "r"],
        vec![
            "join",
            "--server",
            "ws://127.0.0.1:9/ws",
            "--room",
            "bad room",
        ],
    ] {
        let out = cli().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?} succeeded");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Error") || err.contains("error"),
            "{args:?}: {err}"
        );
    }
}
