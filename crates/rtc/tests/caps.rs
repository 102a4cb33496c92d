//! Queues a remote party can fill, driven past their caps, with the process's memory before
//! and after (nextest runs each test in a process of its own):
//! - remote candidates: the queue before the remote description keeps at most 128 (100,000
//!   sent), and an oversized candidate is refused with an error while the peer goes on;
//! - chat: a remote floods the data channel while the owner reads no events; the chat queue
//!   (256) and the owner's channel hold what they can, the rest is dropped, and once the owner
//!   reads, chat flows again;
//! - media: the same with video frames (the media queue, 512);
//! - our own chat sends: past 1 MiB the remote has not acknowledged, `send_chat` refuses with
//!   `SendBufferFull` instead of queueing, and sends again once the network has carried it.
//!
//! The queues' drop counters are crate-private (no stats carry them), so drops are counted
//! here from what the owner reads. The receive pipeline's 4 MiB frame cap cannot be reached
//! from here: our own sender's pacer holds 128 packets and refuses the rest, so a 5 MiB frame
//! arrives as losses (162 of its 4,780 packets did); `receive.rs`'s tests cover that cap.

// Test code: failing loudly is intended.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::synthetic::{SyntheticCamera, read_stamp};
use liveloop_rtc::{
    ConnectionState, MAX_CANDIDATE_BYTES, Peer, PeerEvent, PeerOptions, RtcError, VideoCodec,
};
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

/// The owner's channel per peer, as the engine makes it (`mpsc 4096 per peer`).
const OWNER_CHANNEL: usize = 4096;
/// The peer's own queues (`rtc/src/events.rs`; crate-private there, restated here).
const CHAT_QUEUE: usize = 256;
const MEDIA_QUEUE: usize = 512;
/// What an owner that reads nothing can find waiting of one kind: its channel, that kind's
/// queue, and the one event the forwarder holds while it waits for room in the channel.
const CHAT_HELD: usize = OWNER_CHANNEL + CHAT_QUEUE + 1;
const MEDIA_HELD: usize = OWNER_CHANNEL + MEDIA_QUEUE + 1;

/// One peer and its owner's channel (nothing else reads it).
struct Side {
    peer: Arc<Peer>,
    events: mpsc::Receiver<PeerEvent>,
}

async fn side(polite: bool) -> Side {
    let (tx, events) = mpsc::channel(OWNER_CHANNEL);
    let options = PeerOptions {
        polite,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..PeerOptions::default()
    };
    Side {
        peer: Arc::new(Peer::new(options, tx).await.unwrap()),
        events,
    }
}

/// Two peers over loopback UDP, as in `loopback.rs`, except that signaling is relayed here
/// only until both are connected with chat open: then each owner's channel is handed back
/// untouched, so that a test can leave one unread (the loopback relay reads it on).
async fn connected_pair() -> (Side, Side) {
    let (mut a, mut b) = (side(false).await, side(true).await);
    a.peer.start_offer().await.unwrap();
    // [connected, chat open] per side.
    let mut ready = [[false; 2]; 2];
    tokio::time::timeout(Duration::from_secs(20), async {
        while ready != [[true; 2]; 2] {
            let (ev, from_a) = tokio::select! {
                Some(e) = a.events.recv() => (e, true),
                Some(e) = b.events.recv() => (e, false),
            };
            let (to, flags) = if from_a {
                (&b.peer, &mut ready[0])
            } else {
                (&a.peer, &mut ready[1])
            };
            match ev {
                PeerEvent::LocalDescription(d) => to.handle_description(&d).await.unwrap(),
                PeerEvent::LocalCandidate(c) => to.add_candidate(&c).await.unwrap(),
                PeerEvent::Connection(ConnectionState::Connected) => flags[0] = true,
                PeerEvent::ChatOpen => flags[1] = true,
                _ => {}
            }
        }
    })
    .await
    .expect("the peers connected and opened chat");
    (a, b)
}

/// The sender's owner reads its events (it is a well-behaved peer), counting nothing.
fn drain(mut events: mpsc::Receiver<PeerEvent>) {
    tokio::spawn(async move { while events.recv().await.is_some() {} });
}

/// The next event, or a panic after 10 s (a test that hangs says nothing).
async fn next(events: &mut mpsc::Receiver<PeerEvent>) -> PeerEvent {
    tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("an event within 10 s")
        .expect("the event stream ended")
}

/// Of the flood's numbers an owner read (0 up to `end`), how many were queued before it
/// started reading: while its queues were full the flood was dropped, so those are the ones
/// before the first gap of more than `held` numbers (the most the queues hold; no loss is
/// that long), and the ones after it arrived once the owner read again. Without such a gap
/// nothing was dropped, and all count. Returns (how many, the gap).
fn queued_run(mut seen: Vec<u64>, end: u64, held: usize) -> (usize, u64) {
    seen.sort_unstable();
    seen.dedup();
    let mut prev = None;
    for (i, n) in seen.iter().chain([&end]).enumerate() {
        let gap = prev.map_or(*n, |p: u64| n - p);
        if gap > held as u64 {
            return (i, gap);
        }
        prev = Some(*n);
    }
    (seen.len(), 0)
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_flood_into_an_owner_that_reads_nothing_is_capped() {
    /// 50,000 messages of 1000 characters: 50 MB, were they all kept.
    const FLOOD: u64 = 50_000;
    const LEN: usize = 1000;
    /// Bytes A has sent that B has not yet received, at most (see the pacing below).
    const WINDOW: u64 = 128 << 10;
    let (a, mut b) = connected_pair().await;
    drain(a.events);
    let message = |tag: &str, i: u64| {
        let mut text = format!("{tag} {i:07} ");
        text.extend(std::iter::repeat_n('x', LEN - text.len()));
        text
    };
    // What one message costs on the wire (SCTP and DTLS framing: 1065 bytes), from B's
    // counter over 512 that B reads. A paces its flood by it, keeping at most WINDOW bytes
    // that B has not yet received: our own send side refuses past 1 MiB unacknowledged
    // (`DATA_CHANNEL_SEND_LIMIT`, the next test), so a sender that ran ahead would be refused
    // rather than reach B's queues, and a burst larger than B's socket
    // buffer loses packets, which SCTP resends only after its timeout (1 s and doubling).
    let received = async || b.peer.stats().await.bytes_received;
    let start = received().await;
    for batch in 0..16 {
        for i in 0..32 {
            a.peer
                .send_chat(&message("warm", batch * 32 + i))
                .await
                .unwrap();
        }
        let mut read = 0;
        while read < 32 {
            if let PeerEvent::Chat(_) = next(&mut b.events).await {
                read += 1;
            }
        }
    }
    // The floor of the average: every message costs the same, the rest is STUN and RTCP.
    let per_message = (received().await - start) / 512;
    assert!(per_message >= LEN as u64, "{per_message} bytes per message");
    let wait_received = async |target: u64| {
        tokio::time::timeout(Duration::from_secs(20), async {
            while received().await < target {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("B received A's chat within 20 s");
    };

    // B's owner reads nothing from here on.
    let before = rss();
    let base = received().await;
    for i in 0..FLOOD {
        a.peer.send_chat(&message("flood", i)).await.unwrap();
        if i % 32 == 31 {
            wait_received((base + (i + 1) * per_message).saturating_sub(WINDOW)).await;
        }
    }
    wait_received(base + FLOOD * per_message).await;
    let after = rss();

    // B's owner reads again; A says "after" every 20 ms until B hears it: the call goes on.
    let heard = Arc::new(AtomicBool::new(false));
    let pinger = {
        let (peer, heard) = (a.peer.clone(), heard.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !heard.load(Ordering::Relaxed) {
                peer.send_chat(&format!("after {n}")).await.unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut flood = Vec::new();
    loop {
        match next(&mut b.events).await {
            PeerEvent::Chat(text) if text.starts_with("after ") => break,
            PeerEvent::Chat(text) => {
                let n = text.strip_prefix("flood ").and_then(|t| t.get(..7));
                flood.push(n.and_then(|n| n.parse::<u64>().ok()).expect(&text));
            }
            PeerEvent::Connection(state) => assert_eq!(state, ConnectionState::Connected),
            _ => {}
        }
    }
    heard.store(true, Ordering::Relaxed);
    pinger.await.unwrap();
    let read = flood.len();
    let (queued, gap) = queued_run(flood, FLOOD, CHAT_HELD);
    // The bound: what the queues can hold, at a generous 1.5 times each message's text (the
    // allocator's rounding, the channel's slots), plus 12 MiB for what is not the queues
    // (webrtc-rs's buffers and channels, the allocator's arenas): the same flood into an owner
    // that reads everything grew the process by 4 to 10 MiB. With the queues unbounded it
    // grew by 52 to 55 MiB.
    let bound = (CHAT_HELD * LEN * 3 / 2) as u64 + (12 << 20);
    let grown = after.saturating_sub(before);
    eprintln!(
        "chat flood: {FLOOD} messages of {LEN} characters ({per_message} bytes each on the \
         wire); RSS {:.1} -> {:.1} MiB (+{:.1} MiB, bound {:.1} MiB); B read {read} of them, \
         {queued} queued while it read nothing (at most {CHAT_HELD}), then a gap of {gap}; \
         at least {} dropped",
        mib(before),
        mib(after),
        mib(grown),
        mib(bound),
        FLOOD - read as u64,
    );
    assert!(
        queued <= CHAT_HELD,
        "{queued} messages were queued for an owner reading nothing (at most {CHAT_HELD})"
    );
    // The flood did reach the caps: the owner's channel filled, and the chat queue behind it.
    assert!(queued > OWNER_CHANNEL, "only {queued} queued");
    assert!(read < FLOOD as usize, "nothing was dropped");
    assert!(
        grown < bound,
        "RSS grew by {:.1} MiB (bound {:.1} MiB)",
        mib(grown),
        mib(bound)
    );
    a.peer.close().await.unwrap();
    b.peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_own_chat_sends_are_refused_past_the_send_buffer_limit() {
    /// 16,000 messages of 16 KiB: 250 MiB, were they all queued.
    const COUNT: usize = 16_000;
    const LEN: usize = 16 << 10;
    let (a, b) = connected_pair().await;
    drain(a.events);
    // B reads everything (a well-behaved remote): the limit is on what A has queued that the
    // network has not yet carried, and no link carries 250 MiB in the moment it takes to queue.
    let (b_peer, mut b_events) = (b.peer, b.events);
    let received = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (received, last) = (received.clone(), last.clone());
        tokio::spawn(async move {
            while let Some(ev) = b_events.recv().await {
                if let PeerEvent::Chat(text) = ev {
                    received.fetch_add(1, Ordering::Relaxed);
                    *last.lock().unwrap() = text.chars().take(16).collect();
                }
            }
        })
    };
    let before = rss();
    let (mut sent, mut refused) = (0usize, 0usize);
    for i in 0..COUNT {
        let mut text = format!("burst {i:07} ");
        text.extend(std::iter::repeat_n('x', LEN - text.len()));
        match a.peer.send_chat(&text).await {
            Ok(()) => sent += 1,
            Err(RtcError::SendBufferFull) => refused += 1,
            Err(e) => panic!("message {i}: {e}"),
        }
    }
    let after = rss();
    let grown = after.saturating_sub(before);
    // Once the network has carried what was queued, A sends again and B hears it.
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match a.peer.send_chat("after the burst").await {
                Ok(()) => break,
                Err(RtcError::SendBufferFull) => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Err(e) => panic!("after the burst: {e}"),
            }
        }
        while *last.lock().unwrap() != "after the burst" {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    eprintln!(
        "own chat burst: {COUNT} messages of {LEN} bytes; {sent} queued, {refused} refused; RSS {:.1} -> {:.1} MiB (+{:.1} MiB); B read {}",
        mib(before),
        mib(after),
        mib(grown),
        received.load(Ordering::Relaxed),
    );
    resumed.expect("A's chat was accepted and reached B within 20 s of the burst");
    assert!(refused > 0, "all {COUNT} messages were queued: no limit");
    // The bound: 4 times the limit for the queued messages and their chunks on the way, plus
    // 12 MiB for what is not the queue (as in the flood above). Unbounded, it would be 250 MiB.
    let bound = 4 * liveloop_rtc::DATA_CHANNEL_SEND_LIMIT as u64 + (12 << 20);
    assert!(
        grown < bound,
        "RSS grew by {:.1} MiB (bound {:.1} MiB)",
        mib(grown),
        mib(bound)
    );
    reader.abort();
    a.peer.close().await.unwrap();
    b_peer.close().await.unwrap();
}

/// Sends `frame` from `a` until `b`'s transport has received `until` packets more, as fast as
/// the connection carries them: at most 64 ahead of what B has received (a packet that does
/// not arrive within 50 ms is written off). Faster, our own sender's pacer would refuse
/// every other packet and the flood would be of losses, not of events. Returns how many
/// frames were sent.
async fn flood_video(a: &Peer, b: &Peer, frame: &Bytes, duration: Duration, until: u64) -> u64 {
    let received = async || b.stats().await.packets_received;
    let start = received().await;
    let (mut sent, mut written_off, mut stalled_since) = (0u64, 0u64, None);
    loop {
        let got = received().await - start;
        if got >= until {
            return sent;
        }
        if sent - written_off < got + 48 {
            stalled_since = None;
            for _ in 0..16 {
                a.send_video(VideoCodec::H264, frame.clone(), duration)
                    .await
                    .unwrap();
            }
            sent += 16;
        } else if stalled_since
            .get_or_insert_with(std::time::Instant::now)
            .elapsed()
            > Duration::from_millis(50)
        {
            written_off = sent - got;
            stalled_since = None;
        } else {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_media_flood_into_an_owner_that_reads_nothing_is_capped() {
    /// The flood goes on until B has received ten times what its queues hold.
    const TARGET: u64 = 10 * MEDIA_HELD as u64;
    /// A camera's frame at 30 fps: 3000 ticks of the 90 kHz RTP clock, by which B numbers the
    /// flood's frames (the packetizer advances the timestamp by each frame's duration).
    const TICKS: u32 = 3000;
    let frame_time = Duration::from_micros(33_334);
    let (a, mut b) = connected_pair().await;
    drain(a.events);
    // Real frames from the encoder, keyframes with a stamp: the warm-up, and what B decodes
    // once it reads again.
    let cam = SyntheticCamera::new(320, 180, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 300_000,
        fps: 30.0,
    })
    .unwrap();
    let mut stamped = move |n: u64| {
        enc.request_keyframe();
        Bytes::from(enc.encode(&cam.render(n, n * 33_333)).unwrap().data)
    };
    // The flood: the smallest access unit there is, an IDR slice header (NAL type 5) in one
    // packet. The receive pipeline takes each for a keyframe, so a lost packet holds nothing
    // back, and small packets make many events (what the queue counts) through our own
    // sender's pacer.
    let tiny = Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88, 0x80, 0x40, 0x11]);
    // Warm-up: a first flood, twice what B's queues hold, then stamped frames one at a time
    // while B reads, until it decodes one. Video flows, the process has met a flood (what is
    // measured below is what a second one adds, as the candidate test measures after 1000),
    // and the decoded frame's timestamp and number give the timestamp of the last frame sent,
    // which numbers the flood's.
    let warm_up = flood_video(&a.peer, &b.peer, &tiny, frame_time, 2 * MEDIA_HELD as u64).await;
    let mut decoder = H264Decoder::new().unwrap();
    let mut base = None;
    for n in 0..20 {
        a.peer
            .send_video(VideoCodec::H264, stamped(n), frame_time)
            .await
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(1), async {
            loop {
                if let Some(PeerEvent::Video {
                    access_unit,
                    rtp_timestamp,
                    ..
                }) = b.events.recv().await
                    && access_unit != tiny
                    && let Ok(Some(frame)) = decoder.decode(&access_unit)
                    && let Some(stamp) = read_stamp(&frame)
                {
                    return (rtp_timestamp, u64::from(stamp.number));
                }
            }
        })
        .await;
        if let Ok((ts, number)) = got {
            let later = u32::try_from(n - number).unwrap();
            base = Some(ts.wrapping_add(later * TICKS));
            break;
        }
    }
    let base = base.expect("a stamped frame reached B after the warm-up");
    // B's owner reads nothing from here on.
    let before = rss();
    let start = b.peer.stats().await.packets_received;
    let sent = tokio::time::timeout(
        Duration::from_secs(25),
        flood_video(&a.peer, &b.peer, &tiny, frame_time, TARGET),
    )
    .await
    .expect("B received the flood within 25 s");
    let arrived = b.peer.stats().await.packets_received - start;
    let after = rss();

    // B's owner reads again; A sends a stamped keyframe every 100 ms until B decodes one.
    let heard = Arc::new(AtomicBool::new(false));
    let sender = {
        let (peer, heard) = (a.peer.clone(), heard.clone());
        tokio::spawn(async move {
            let mut n = 1000;
            while !heard.load(Ordering::Relaxed) {
                peer.send_video(VideoCodec::H264, stamped(n), frame_time)
                    .await
                    .unwrap();
                n += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let (mut flood, mut other) = (Vec::new(), 0);
    let resumed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match next(&mut b.events).await {
                PeerEvent::Video {
                    access_unit,
                    rtp_timestamp,
                    ..
                } => {
                    let n = u64::from(rtp_timestamp.wrapping_sub(base) / TICKS);
                    if (1..=sent).contains(&n) {
                        flood.push(n - 1);
                    } else if access_unit != tiny
                        && let Ok(Some(frame)) = decoder.decode(&access_unit)
                        && let Some(stamp) = read_stamp(&frame)
                        && stamp.number >= 1000
                    {
                        break stamp.number;
                    }
                }
                PeerEvent::Connection(state) => assert_eq!(state, ConnectionState::Connected),
                PeerEvent::Audio { .. }
                | PeerEvent::SenderReport { .. }
                | PeerEvent::VideoLoss { .. }
                | PeerEvent::KeyframeRequested => other += 1,
                _ => {}
            }
        }
    })
    .await
    .expect("B decoded a new frame within 20 s");
    heard.store(true, Ordering::Relaxed);
    sender.await.unwrap();
    let read = flood.len();
    let (queued, gap) = queued_run(flood, sent, MEDIA_HELD);
    // The bound: what the queues can hold, at a generous 256 bytes an event (the channel's
    // slot and the frame's buffer), plus 2 MiB for what is not the queues (runs grew by 0.0
    // to 0.4 MiB). The events are small, as the flood has to be many of them to get through
    // our own sender's pacer: with the queues unbounded the process grew by 4.5 MiB (and the
    // count above failed first).
    let bound = (MEDIA_HELD * 256) as u64 + (2 << 20);
    let grown = after.saturating_sub(before);
    eprintln!(
        "media flood (after a warm-up of {warm_up}): A sent {sent} frames, B received \
         {arrived} packets; RSS {:.1} -> {:.1} MiB (+{:.1} MiB, bound {:.1} MiB); B read \
         {read} flood frames, {queued} queued while it read nothing (at most {MEDIA_HELD}), \
         then a gap of {gap}, and {other} other media \
         events; then decoded frame {resumed}",
        mib(before),
        mib(after),
        mib(grown),
        mib(bound),
    );
    assert!(
        queued <= MEDIA_HELD,
        "{queued} frames were queued for an owner reading nothing (at most {MEDIA_HELD})"
    );
    assert!(queued > MEDIA_QUEUE, "only {queued} queued");
    // Most of what arrived was dropped: B's queues hold a tenth of it.
    assert!((read as u64) < arrived / 2, "B read {read} of {arrived}");
    assert!(
        grown < bound,
        "RSS grew by {:.1} MiB (bound {:.1} MiB)",
        mib(grown),
        mib(bound)
    );
    a.peer.close().await.unwrap();
    b.peer.close().await.unwrap();
}
