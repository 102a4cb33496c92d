//! One participant asking for a keyframe every 20 ms (PLI, as a broken or hostile peer might)
//! cannot make the encoder that every peer shares send more than 2 IDR a second, and the other
//! peers' video goes on as before (issue 20, point 3).
//!
//! The engine under test ("zed") is in a room with two webrtc-rs peers driven from here: "amy"
//! floods PLIs, "bea" only watches. Both count the frames and keyframes they receive.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use liveloop_e2e::rooms_client::RoomClient;
use liveloop_engine::{EngineConfig, join_room};
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice};
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

/// What one watching peer has received, and whether it is flooding.
#[derive(Default)]
struct Counts {
    connected: AtomicBool,
    frames: AtomicU32,
    keyframes: AtomicU32,
    flood: AtomicBool,
    plis_sent: AtomicU32,
}

impl Counts {
    fn take(&self) -> (u32, u32) {
        (
            self.frames.swap(0, Ordering::AcqRel),
            self.keyframes.swap(0, Ordering::AcqRel),
        )
    }
}

/// A webrtc-rs peer in `room` as `id`, calling `target` (ids that sort before the engine's
/// offer) and counting the video it gets; while `flood` is set it sends a PLI every 20 ms.
async fn watcher(addr: std::net::SocketAddr, room: &str, id: &str, target: &str) -> Arc<Counts> {
    let counts = Arc::new(Counts::default());
    let mut room_client = RoomClient::join(addr, room, id).await.unwrap();
    let (tx, mut events) = mpsc::channel(4096);
    let options = PeerOptions {
        polite: false,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..PeerOptions::default()
    };
    let peer = Peer::new(options, tx).await.unwrap();
    peer.start_offer().await.unwrap();
    let target = target.to_owned();
    let c = counts.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                frame = room_client.ws.next() => {
                    let Some(Ok(Message::Text(text))) = frame else {
                        if frame.is_none() { return; }
                        continue;
                    };
                    let msg: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
                    if msg["from"] != target.as_str() {
                        continue;
                    }
                    match msg["type"].as_str() {
                        Some("offer" | "answer") => {
                            peer.handle_description(&msg["sdp"]).await.unwrap();
                        }
                        Some("candidate") if msg["candidate"].is_object() => {
                            let _ = peer.add_candidate(&msg["candidate"]).await;
                        }
                        _ => {}
                    }
                }
                event = events.recv() => match event {
                    Some(PeerEvent::LocalDescription(sdp)) => {
                        let m = json!({"type": sdp["type"], "to": target, "sdp": sdp});
                        room_client.send(&m).await.unwrap();
                    }
                    Some(PeerEvent::LocalCandidate(candidate)) => {
                        let m = json!({"type": "candidate", "to": target, "candidate": candidate});
                        room_client.send(&m).await.unwrap();
                    }
                    Some(PeerEvent::Connection(ConnectionState::Connected)) => {
                        c.connected.store(true, Ordering::Release);
                    }
                    Some(PeerEvent::Video { codec, access_unit, .. }) => {
                        c.frames.fetch_add(1, Ordering::AcqRel);
                        if codec.is_keyframe(&access_unit) {
                            c.keyframes.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    Some(_) => {}
                    None => return,
                },
                _ = tick.tick() => {
                    if c.flood.load(Ordering::Acquire) && peer.request_keyframe().await.is_ok() {
                        c.plis_sent.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }
    });
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_flood_gives_at_most_two_idr_a_second_and_others_are_unaffected() {
    let server = liveloop_e2e::start_servers_on(0).await;
    let url = format!("ws://{}/ws", server.rooms);
    let config = EngineConfig {
        name: "zed".into(),
        bitrate_bps: 800_000,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..EngineConfig::default()
    };
    let (_zed, _zed_events) = join_room(
        config,
        url,
        "pli".into(),
        "zed".into(),
        Box::new(SyntheticCamera::new(320, 180, 30.0)),
        Box::new(SyntheticMic::new(Voice::Speech, true)),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let amy = watcher(server.rooms, "pli", "amy", "zed").await;
    let bea = watcher(server.rooms, "pli", "bea", "zed").await;
    // Both receive video, then a calm window of 4 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while amy.frames.load(Ordering::Acquire) < 30 || bea.frames.load(Ordering::Acquire) < 30 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no video: amy {} frames, bea {}",
            amy.frames.load(Ordering::Acquire),
            bea.frames.load(Ordering::Acquire)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    const WINDOW: Duration = Duration::from_secs(4);
    amy.take();
    bea.take();
    tokio::time::sleep(WINDOW).await;
    let (calm_frames, calm_keys) = bea.take();
    amy.take();
    // Amy floods: a PLI every 20 ms. The first second lets the flood reach the encoder.
    amy.flood.store(true, Ordering::Release);
    tokio::time::sleep(Duration::from_secs(1)).await;
    amy.take();
    bea.take();
    tokio::time::sleep(WINDOW).await;
    let (amy_frames, amy_keys) = amy.take();
    let (bea_frames, bea_keys) = bea.take();
    let plis = amy.plis_sent.load(Ordering::Acquire);
    let secs = WINDOW.as_secs_f64();
    eprintln!(
        "calm: bea {calm_frames} frames, {calm_keys} keyframes in {secs} s; flood of {plis} PLIs: \
         amy {amy_frames} frames, {amy_keys} keyframes; bea {bea_frames} frames, {bea_keys} keyframes"
    );
    assert!(
        plis as f64 >= 30.0 * (secs + 1.0),
        "the flood ran: {plis} PLIs"
    );
    let most = 2.0f64.mul_add(secs, 1.0);
    for (who, keys) in [("amy", amy_keys), ("bea", bea_keys)] {
        assert!(
            f64::from(keys) <= most,
            "{who} got {keys} keyframes in {secs} s of a PLI flood (at most {most})"
        );
    }
    assert!(amy_keys >= 1, "a requested keyframe is still served");
    assert!(
        f64::from(bea_frames) >= 0.8 * f64::from(calm_frames),
        "bea's video during the flood: {bea_frames} frames against {calm_frames} before it"
    );
}
