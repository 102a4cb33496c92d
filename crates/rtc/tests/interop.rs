//! LiveLoop's peer against a peer it did not configure: a plain webrtc-rs connection that
//! numbers its codecs as Firefox does (Opus 109, H.264 126, VP8 120), offers late (after
//! LiveLoop has been trying to send for a while), and in one case offers no H.264 at all.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveloop_media::h264::{H264Config, H264Encoder};
use liveloop_media::synthetic::SyntheticCamera;
use liveloop_rtc::{Peer, PeerEvent, PeerOptions};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8,
};
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSessionDescription,
};

#[derive(Debug)]
enum Foreign {
    Candidate(RTCIceCandidateInit),
    /// An RTP packet arrived: its media kind and payload type.
    Rtp(RtpCodecKind, u8),
    Chat(String),
    ChatOpen,
}

struct Handler(mpsc::UnboundedSender<Foreign>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, e: RTCPeerConnectionIceEvent) {
        if let Ok(init) = e.candidate.to_json() {
            let _ = self.0.send(Foreign::Candidate(init));
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.0.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(pkt) = ev {
                    let _ = tx.send(Foreign::Rtp(kind, pkt.header.payload_type));
                }
            }
        });
    }
}

fn codec(mime: &str, clock_rate: u32, channels: u16, fmtp: &str, pt: u8) -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: mime.to_owned(),
            clock_rate,
            channels,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: pt,
    }
}

/// A receive-only offerer with Firefox's numbering; `h264: false` offers VP8 video only.
async fn foreign_offerer(
    h264: bool,
) -> (Arc<dyn PeerConnection>, mpsc::UnboundedReceiver<Foreign>) {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 109),
            RtpCodecKind::Audio,
        )
        .unwrap();
    if h264 {
        media
            .register_codec(
                codec(
                    MIME_TYPE_H264,
                    90_000,
                    0,
                    "profile-level-id=42e01f;level-asymmetry-allowed=1;packetization-mode=1",
                    126,
                ),
                RtpCodecKind::Video,
            )
            .unwrap();
    }
    media
        .register_codec(
            codec(MIME_TYPE_VP8, 90_000, 0, "", 120),
            RtpCodecKind::Video,
        )
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    // The builder's future is large (20 kB): boxed, as in the crate.
    let pc = Box::pin(
        PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_handler(Arc::new(Handler(tx.clone())))
            .with_udp_addrs(vec!["127.0.0.1:0".to_owned()])
            .build(),
    )
    .await
    .unwrap();
    let pc: Arc<dyn PeerConnection> = Arc::new(pc);
    for kind in [RtpCodecKind::Audio, RtpCodecKind::Video] {
        pc.add_transceiver_from_kind(
            kind,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..RTCRtpTransceiverInit::default()
            }),
        )
        .await
        .unwrap();
    }
    let dc = pc.create_data_channel("chat", None).await.unwrap();
    let chat: Arc<dyn DataChannel> = dc;
    tokio::spawn(async move {
        while let Some(ev) = chat.poll().await {
            match ev {
                DataChannelEvent::OnOpen => {
                    let _ = tx.send(Foreign::ChatOpen);
                    let _ = chat.send_text("hello from the foreign peer").await;
                }
                DataChannelEvent::OnMessage(m) => {
                    let _ = tx.send(Foreign::Chat(String::from_utf8_lossy(&m.data).into()));
                }
                DataChannelEvent::OnClose => break,
                _ => {}
            }
        }
    });
    (pc, rx)
}

/// What the foreign side saw in `window`: packets per (kind, payload type), chat received.
#[derive(Debug, Default)]
struct Seen {
    rtp: BTreeMap<(String, u8), usize>,
    chat: Vec<String>,
    chat_open: bool,
}

/// LiveLoop's side starts sending at once (the engine does, before any offer), the foreign
/// offer comes 300 ms later, and the call runs for `window`.
async fn late_offer_call(h264: bool, window: Duration) -> (Seen, Vec<PeerEvent>) {
    let (tx, mut ours) = mpsc::channel(4096);
    let peer = Arc::new(
        Peer::new(
            PeerOptions {
                polite: true,
                udp_addrs: vec!["127.0.0.1:0".into()],
                ..PeerOptions::default()
            },
            tx,
        )
        .await
        .unwrap(),
    );
    let sender = peer.clone();
    let send = tokio::spawn(async move {
        let cam = SyntheticCamera::new(320, 180, 30.0);
        let mut enc = H264Encoder::new(H264Config {
            bitrate_bps: 300_000,
            fps: 30.0,
        })
        .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0.. {
            tick.tick().await;
            let au = enc.encode(&cam.render(n, n * 33_000)).unwrap();
            // Before negotiation these fail (not ready); they must never poison the route.
            let _ = sender
                .send_video(Bytes::from(au.data), Duration::from_micros(33_333))
                .await;
            let _ = sender
                .send_audio(
                    Bytes::from_static(&[0xf8, 0xff, 0xfe]),
                    Duration::from_millis(20),
                )
                .await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (foreign, mut theirs) = Box::pin(foreign_offerer(h264)).await;
    let offer = foreign.create_offer(None).await.unwrap();
    foreign.set_local_description(offer.clone()).await.unwrap();
    peer.handle_description(&serde_json::to_value(&offer).unwrap())
        .await
        .expect("LiveLoop takes the offer");

    let mut seen = Seen::default();
    let mut events = Vec::new();
    let end = Instant::now() + window;
    let mut peer_chat_sent = false;
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::select! {
            ev = ours.recv() => match ev.expect("peer events") {
                PeerEvent::LocalDescription(answer) => {
                    let answer: RTCSessionDescription = serde_json::from_value(answer).unwrap();
                    foreign.set_remote_description(answer).await.unwrap();
                }
                PeerEvent::LocalCandidate(c) => {
                    // Strict, as a peer may be: a candidate before our answer is an error.
                    foreign
                        .add_ice_candidate(serde_json::from_value(c).unwrap())
                        .await
                        .expect("LiveLoop's candidates follow its answer");
                }
                PeerEvent::ChatOpen if !peer_chat_sent => {
                    peer_chat_sent = true;
                    peer.send_chat("hello from liveloop").await.unwrap();
                    events.push(PeerEvent::ChatOpen);
                }
                PeerEvent::Audio { .. } | PeerEvent::SenderReport { .. } => {}
                other => events.push(other),
            },
            ev = theirs.recv() => match ev.expect("foreign events") {
                Foreign::Candidate(c) => {
                    peer.add_candidate(&serde_json::to_value(&c).unwrap()).await.unwrap();
                }
                Foreign::Rtp(kind, pt) => {
                    *seen.rtp.entry((kind.to_string(), pt)).or_default() += 1;
                }
                Foreign::Chat(text) => seen.chat.push(text),
                Foreign::ChatOpen => seen.chat_open = true,
            },
            () = tokio::time::sleep(left) => break,
        }
    }
    send.abort();
    let _ = peer.close().await;
    let _ = foreign.close().await;
    (seen, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_offer_with_other_payload_types_gets_video_and_audio_in_its_numbering() {
    let (seen, events) = Box::pin(late_offer_call(true, Duration::from_secs(3))).await;
    eprintln!(
        "foreign side received {:?}; our events {events:?}",
        seen.rtp
    );
    let video = seen.rtp.get(&("video".into(), 126)).copied().unwrap_or(0);
    let audio = seen.rtp.get(&("audio".into(), 109)).copied().unwrap_or(0);
    // About 2.5 s of connected call: 75 frames of several packets each, 125 audio packets.
    assert!(video >= 60, "H.264 packets as payload type 126: {video}");
    assert!(audio >= 40, "Opus packets as payload type 109: {audio}");
    assert_eq!(
        seen.rtp
            .keys()
            .filter(|(_, pt)| *pt != 126 && *pt != 109)
            .count(),
        0,
        "nothing under our own numbering (102, 111): {:?}",
        seen.rtp
    );
    assert!(seen.chat.iter().any(|t| t == "hello from liveloop"));
    assert!(!events.iter().any(|e| matches!(e, PeerEvent::NoVideoCodec)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_h264_gets_audio_and_chat_and_a_reason() {
    let (seen, events) = Box::pin(late_offer_call(false, Duration::from_secs(3))).await;
    eprintln!(
        "foreign side received {:?}; our events {events:?}",
        seen.rtp
    );
    let audio = seen.rtp.get(&("audio".into(), 109)).copied().unwrap_or(0);
    assert!(audio >= 40, "Opus packets as payload type 109: {audio}");
    assert!(
        !seen.rtp.keys().any(|(kind, _)| kind == "video"),
        "no video: {:?}",
        seen.rtp
    );
    assert!(seen.chat_open, "the data channel opened");
    assert!(seen.chat.iter().any(|t| t == "hello from liveloop"));
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, PeerEvent::NoVideoCodec))
            .count(),
        1,
        "told once why there is no video: {events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PeerEvent::Chat(t) if t == "hello from the foreign peer"))
    );
}
