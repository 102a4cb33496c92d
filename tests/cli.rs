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
    let record = liveloop_e2e::temp_dir("cli-record").unwrap();
    let spawn = |id: &str, extra: &[&str]| {
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
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (
        spawn("one", &[]),
        spawn("two", &["--record", record.to_str().unwrap()]),
    );
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

    // "two" recorded "one": a Y4M and a WAV that hold the call.
    use liveloop_media::VideoSource;
    let path = record.join("one.y4m");
    let mut video = liveloop_media::file::Y4mSource::open(&path).unwrap();
    let first = video.next_frame(0).unwrap();
    assert!(
        liveloop_media::synthetic::read_stamp(&first).is_some(),
        "the recording holds the stamped frames"
    );
    let bytes = std::fs::metadata(&path).unwrap().len() as usize;
    let frame_bytes = 6 + (first.width * first.height * 3 / 2) as usize;
    let frames = bytes / frame_bytes;
    let audio = liveloop_media::file::WavSource::open(&record.join("one.wav")).unwrap();
    let seconds = audio.samples().len() as f64 / 48_000.0;
    eprintln!("recorded {frames} frames and {seconds:.1} s of audio");
    assert!(frames >= 90, "{frames} frames recorded");
    assert!(seconds >= 3.0, "{seconds} s of audio recorded");
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
        // Nothing listens on port 9: a message after the connect timeout, not a hang.
        vec![
            "join",
            "--server",
            "ws://127.0.0.1:9/ws",
            "--room",
            "r",
            "--connect-timeout",
            "2",
        ],
        vec!["random", "http://127.0.0.1:9", "--connect-timeout", "2"],
        vec![
            "join",
            "--server",
            "ws://h/ws",
            "--room",
            "r",
            "--rtc-config",
            "{}x",
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
