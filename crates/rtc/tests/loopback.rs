//! Two peers in one process over loopback UDP: real DTLS, SRTP and SCTP, synthetic media.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::quality::psnr;
use liveloop_media::synthetic::{SyntheticCamera, read_stamp};
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions, VideoCodec};
use tokio::sync::mpsc;

struct Side {
    peer: Arc<Peer>,
    events: mpsc::Receiver<PeerEvent>,
}

async fn side(polite: bool) -> (Arc<Peer>, mpsc::Receiver<PeerEvent>) {
    let (tx, rx) = mpsc::channel(4096);
    let options = PeerOptions {
        polite,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..PeerOptions::default()
    };
    (Arc::new(Peer::new(options, tx).await.unwrap()), rx)
}

/// Forwards signaling from one side's events to the other peer; everything else goes to `rest`.
fn relay(mut from: mpsc::Receiver<PeerEvent>, to: Arc<Peer>) -> mpsc::Receiver<PeerEvent> {
    let (tx, rest) = mpsc::channel(4096);
    tokio::spawn(async move {
        while let Some(ev) = from.recv().await {
            match ev {
                PeerEvent::LocalDescription(d) => to.handle_description(&d).await.unwrap(),
                PeerEvent::LocalCandidate(c) => to.add_candidate(&c).await.unwrap(),
                other => {
                    let _ = tx.send(other).await;
                }
            }
        }
    });
    rest
}

async fn connected_pair(glare: bool) -> (Side, Side) {
    let (a, a_rx) = side(false).await;
    let (b, b_rx) = side(true).await;
    let a_rest = relay(a_rx, b.clone());
    let b_rest = relay(b_rx, a.clone());
    if glare {
        let (x, y) = tokio::join!(a.start_offer(), b.start_offer());
        x.unwrap();
        y.unwrap();
    } else {
        a.start_offer().await.unwrap();
    }
    let mut a = Side {
        peer: a,
        events: a_rest,
    };
    let mut b = Side {
        peer: b,
        events: b_rest,
    };
    for s in [&mut a, &mut b] {
        wait_for(&mut s.events, |e| {
            matches!(e, PeerEvent::Connection(ConnectionState::Connected))
        })
        .await;
        wait_for(&mut s.events, |e| matches!(e, PeerEvent::ChatOpen)).await;
    }
    (a, b)
}

async fn wait_for(
    rx: &mut mpsc::Receiver<PeerEvent>,
    pred: impl Fn(&PeerEvent) -> bool,
) -> PeerEvent {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let ev = rx.recv().await.expect("event stream ended");
            if pred(&ev) {
                return ev;
            }
        }
    })
    .await
    .expect("timed out waiting for a peer event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_audio_and_chat_flow_between_two_peers() {
    let (a, mut b) = connected_pair(false).await;
    const FRAMES: u64 = 90;
    let cam = SyntheticCamera::new(640, 360, 30.0);
    let sender = a.peer.clone();
    let send = tokio::spawn(async move {
        // Under the congestion controller's starting estimate (600 kbit/s), which the pacer
        // holds the sender to until feedback raises it.
        let mut enc = H264Encoder::new(H264Config {
            bitrate_bps: 400_000,
            fps: 30.0,
        })
        .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0..FRAMES {
            tick.tick().await;
            let frame = cam.render(n, n * 33_000);
            let au = enc.encode(&frame).unwrap();
            sender
                .send_video(
                    VideoCodec::H264,
                    Bytes::from(au.data),
                    Duration::from_micros(33_333),
                )
                .await
                .unwrap();
            sender
                .send_audio(
                    Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                    Duration::from_millis(20),
                )
                .await
                .unwrap();
        }
    });
    a.peer.send_chat("hello from a").await.unwrap();
    b.peer.send_chat("hello from b").await.unwrap();

    let mut dec = H264Decoder::new().unwrap();
    let reference = SyntheticCamera::new(640, 360, 30.0);
    let (mut decoded, mut audio, mut chat) = (Vec::new(), 0, Vec::new());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while decoded.len() < FRAMES as usize {
        let Ok(Some(ev)) = tokio::time::timeout_at(deadline, b.events.recv()).await else {
            break;
        };
        match ev {
            PeerEvent::Video { access_unit, .. } => {
                if let Ok(Some(frame)) = dec.decode(&access_unit) {
                    let stamp = read_stamp(&frame).expect("stamp readable");
                    let sent = reference
                        .render(u64::from(stamp.number), u64::from(stamp.capture_ms) * 1000);
                    decoded.push((stamp.number, psnr(&sent, &frame)));
                }
            }
            PeerEvent::Audio { .. } => audio += 1,
            PeerEvent::Chat(text) => chat.push(text),
            _ => {}
        }
        if decoded
            .last()
            .is_some_and(|(n, _)| u64::from(*n) == FRAMES - 1)
        {
            break;
        }
    }
    send.await.unwrap();
    let worst = decoded
        .iter()
        .map(|(_, p)| *p)
        .fold(f64::INFINITY, f64::min);
    eprintln!(
        "decoded {} of {FRAMES} frames, worst PSNR {worst:.1} dB, {audio} audio packets",
        decoded.len()
    );
    assert!(
        decoded.len() as f64 >= 0.9 * FRAMES as f64,
        "decoded {} of {FRAMES}",
        decoded.len()
    );
    assert!(worst >= 30.0, "worst PSNR {worst:.1}");
    assert!(audio >= 80, "audio packets {audio}");
    assert_eq!(chat, vec!["hello from a".to_owned()]);
    let mut a = a;
    let got = wait_for(&mut a.events, |e| matches!(e, PeerEvent::Chat(_))).await;
    assert_eq!(got, PeerEvent::Chat("hello from b".into()));
    // A keyframe request from the receiver reaches the sender's application.
    b.peer.request_keyframe().await.unwrap();
    wait_for(&mut a.events, |e| matches!(e, PeerEvent::KeyframeRequested)).await;
    // Three seconds of media gave the sender's congestion controller feedback (TWCC) to
    // estimate from: the estimate is there, within the controller's range, and in the stats.
    let estimate = a.peer.send_estimate_bps();
    let stats = a.peer.stats().await;
    eprintln!("send estimate after the call: {estimate:?} bit/s, stats {stats:?}");
    let bps = estimate.expect("an estimate from the feedback");
    assert!((100_000..=6_000_000).contains(&bps), "{bps}");
    assert_eq!(stats.send_estimate_bps, bps);
    a.peer.close().await.unwrap();
    b.peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glare_ends_in_one_working_connection() {
    let (a, b) = connected_pair(true).await;
    a.peer.send_chat("after glare").await.unwrap();
    let mut b = b;
    assert_eq!(
        wait_for(&mut b.events, |e| matches!(e, PeerEvent::Chat(_))).await,
        PeerEvent::Chat("after glare".into())
    );
    a.peer.close().await.unwrap();
    b.peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signaling_is_an_error_not_a_panic() {
    let (peer, _rx) = side(false).await;
    assert!(
        peer.handle_description(&serde_json::json!({"type": "offer"}))
            .await
            .is_err()
    );
    assert!(
        peer.handle_description(&serde_json::json!("nonsense"))
            .await
            .is_err()
    );
    assert!(
        peer.add_candidate(&serde_json::json!({"candidate": 5}))
            .await
            .is_err()
    );
    assert!(peer.add_candidate(&serde_json::Value::Null).await.is_ok());
    peer.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ice_restart_renegotiates_and_media_keeps_flowing() {
    let (a, mut b) = connected_pair(false).await;
    // What the engine does when a connection fails: the impolite side restarts ICE and
    // re-offers; the relay applies the new offer and answer (it panics on an error).
    a.peer.restart_ice().await.unwrap();
    let cam = SyntheticCamera::new(320, 180, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 500_000,
        fps: 30.0,
    })
    .unwrap();
    let sender = a.peer.clone();
    let send = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0..90u64 {
            tick.tick().await;
            // Frames sent while the restart settles may be lost; a keyframe every ten frames
            // stands in for the engine's answer to the receiver's keyframe requests.
            if n % 10 == 0 {
                enc.request_keyframe();
            }
            let au = enc.encode(&cam.render(n, n * 33_000)).unwrap();
            // Sends during the renegotiation may fail; the later ones must arrive.
            let _ = sender
                .send_video(
                    VideoCodec::H264,
                    Bytes::from(au.data),
                    Duration::from_micros(33_333),
                )
                .await;
        }
    });
    let mut dec = H264Decoder::new().unwrap();
    let mut stamped = 0;
    tokio::time::timeout(Duration::from_secs(10), async {
        while stamped < 30 {
            match b.events.recv().await.expect("event stream ended") {
                PeerEvent::Video { access_unit, .. } => {
                    if let Ok(Some(frame)) = dec.decode(&access_unit)
                        && read_stamp(&frame).is_some()
                    {
                        stamped += 1;
                    }
                }
                PeerEvent::Connection(ConnectionState::Failed | ConnectionState::Closed) => {
                    panic!("the connection broke during the ICE restart")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("frames after the ICE restart");
    send.await.unwrap();
    a.peer.send_chat("after restart").await.unwrap();
    wait_for(
        &mut b.events,
        |e| matches!(e, PeerEvent::Chat(t) if t == "after restart"),
    )
    .await;
}
