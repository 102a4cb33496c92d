//! The caps on what a remote party can fill in `liveloop-core`, driven far past their limits:
//! the documented behaviour at the cap, and the process's memory before and after (nextest
//! runs each test in a process of its own, so the resident set is this test's).

// Test code: failing loudly is intended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use liveloop_core::jitter::{self, JitterBuffer};
use liveloop_core::rooms::{Limits, RoomRegistry};
use liveloop_proto::rooms::{ClientMessage, ErrorCode, ServerMessage};

/// Resident memory in bytes (`VmRSS`).
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

const MIB: u64 = 1024 * 1024;

#[test]
fn the_jitter_buffer_holds_at_most_its_cap_whatever_arrives() {
    let mut buffer = JitterBuffer::<Vec<u8>>::new(48_000, Duration::from_millis(20));
    // 200,000 packets of 1 KiB (200 MB if all were kept) with timestamps all over the place,
    // and nothing ever played: a sender that floods, or a receiver that stalls.
    let before = rss();
    let mut ts: u32 = 0;
    for i in 0..200_000u32 {
        ts = ts.wrapping_add(if i % 7 == 0 { 960 * 5_000 } else { 960 });
        let now = Duration::from_micros(u64::from(i) * 100);
        buffer.push(ts, now, vec![0xa5; 1024]);
    }
    let after = rss();
    let stats = buffer.stats();
    eprintln!(
        "jitter: RSS {} -> {} KiB; {} dropped at the cap",
        before / 1024,
        after / 1024,
        stats.overflow_dropped
    );
    assert!(
        stats.overflow_dropped >= 200_000 - jitter::MAX_PACKETS as u64,
        "past {} packets the furthest ahead is dropped: {stats:?}",
        jitter::MAX_PACKETS
    );
    assert!(
        after.saturating_sub(before) < 8 * MIB,
        "RSS grew by {} KiB",
        (after - before) / 1024
    );
}

#[test]
fn reserved_ids_stay_within_their_cap() {
    let limits = Limits {
        max_reservations: 20_000,
        ..Limits::default()
    };
    let mut reg = RoomRegistry::new(limits, |b| b.fill(7));
    let now = Duration::from_secs(10);
    // 100,000 members join and drop without `leave`: each leaves a reservation behind.
    let join = |reg: &mut RoomRegistry, conn: u64| {
        let text = format!(
            r#"{{"type":"join","room":"r{}","from":"id-{conn}"}}"#,
            conn % 500
        );
        reg.handle(now, conn, ClientMessage::parse(&text));
        while reg.poll_output().is_some() {}
    };
    // Up to the cap first; past it, memory must stay where it is.
    for conn in 1..=20_000u64 {
        reg.connect(now, conn);
        join(&mut reg, conn);
        reg.disconnect(now, conn);
    }
    let before = rss();
    for conn in 20_001..=100_000u64 {
        reg.connect(now, conn);
        join(&mut reg, conn);
        reg.disconnect(now, conn);
    }
    let after = rss();
    let stats = reg.stats();
    eprintln!(
        "reservations: RSS {} -> {} KiB; {} reserved",
        before / 1024,
        after / 1024,
        stats.reserved
    );
    assert_eq!(stats.reserved, 20_000, "at the cap the oldest ends first");
    assert_eq!((stats.connections, stats.members), (0, 0));
    assert!(
        after.saturating_sub(before) < 8 * MIB,
        "RSS grew by {} KiB",
        (after - before) / 1024
    );
    // The newest reservation is the one kept: its id is still taken without its secret...
    reg.connect(now, 200_000);
    reg.handle(
        now,
        200_000,
        ClientMessage::parse(r#"{"type":"join","room":"r0","from":"id-100000"}"#),
    );
    let refused = std::iter::from_fn(|| reg.poll_output()).any(|d| {
        matches!(
            d.msg,
            ServerMessage::Error {
                code: ErrorCode::DuplicateId,
                ..
            }
        )
    });
    assert!(refused, "a kept reservation still protects its id");
    // ...and the oldest is free again.
    reg.connect(now, 200_001);
    reg.handle(
        now,
        200_001,
        ClientMessage::parse(r#"{"type":"join","room":"r1","from":"id-1"}"#),
    );
    let joined = std::iter::from_fn(|| reg.poll_output())
        .any(|d| matches!(d.msg, ServerMessage::Joined { .. }));
    assert!(joined, "the oldest reservation ended at the cap");
}
