//! Remote candidates past their caps: the queue before the remote description keeps at most
//! 128 (memory before and after 100,000), and an oversized candidate is refused with an error
//! while the peer goes on.

// Test code: failing loudly is intended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use liveloop_rtc::{MAX_CANDIDATE_BYTES, Peer, PeerOptions, RtcError};
use serde_json::json;
use tokio::sync::mpsc;

/// Resident memory in bytes (`VmRSS`; nextest gives each test a process of its own).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn candidates_before_the_remote_description_are_capped() {
    let (tx, _events) = mpsc::channel(4096);
    let options = PeerOptions {
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..PeerOptions::default()
    };
    let peer = Peer::new(options, tx).await.unwrap();
    // Each candidate is valid and about 1.9 KiB (a long extension attribute): 100,000 of
    // them would be 190 MB if all were queued.
    let pad = "x".repeat(1900);
    let candidate = |i: u32| {
        json!({
            "candidate": format!(
                "candidate:{i} 1 udp 2130706431 10.{}.{}.{} 5000 typ host pad {pad}",
                (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff
            ),
            "sdpMid": "0",
        })
    };
    for i in 0..1000 {
        peer.add_candidate(&candidate(i)).await.unwrap();
    }
    let before = rss();
    for i in 1000..100_000 {
        peer.add_candidate(&candidate(i)).await.unwrap();
    }
    let after = rss();
    eprintln!(
        "100,000 early candidates: RSS {} -> {} KiB",
        before / 1024,
        after / 1024
    );
    assert!(
        after.saturating_sub(before) < 8 * 1024 * 1024,
        "RSS grew by {} KiB",
        (after - before) / 1024
    );
    // An oversized one is refused with a clear error, and the peer still takes candidates.
    let big = json!({"candidate": "c".repeat(MAX_CANDIDATE_BYTES + 1), "sdpMid": "0"});
    let refused = peer.add_candidate(&big).await;
    assert!(
        matches!(&refused, Err(RtcError::InvalidSignal(m)) if m.contains("at most")),
        "{refused:?}"
    );
    peer.add_candidate(&candidate(7)).await.unwrap();
    peer.close().await.unwrap();
}
