//! LiveLoop's peer against a peer it did not configure: a plain webrtc-rs connection that
//! numbers its codecs as Firefox does (Opus 109, H.264 126, VP8 120) and offers late (after
//! LiveLoop has been trying to send for a while). Cases: H.264 and VP8 offered (H.264 is
//! sent); VP8 only, offered or answered (VP8 is sent and decodes); VP9 only (no video
//! codec in common: audio, chat and a reason).

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

use bytes::{Bytes, BytesMut};
use liveloop_media::h264::{H264Config, H264Encoder};
use liveloop_media::synthetic::SyntheticCamera;
use liveloop_media::vp8::{Vp8Decoder, Vp8Encoder};
use liveloop_rtc::{Peer, PeerEvent, PeerOptions, VideoCodec};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MIME_TYPE_VP9,
};
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::{RTCRtpCodec, RTCRtpCodecParameters, RtpCodecKind};
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCIceCandidateInit, RTCPeerConnectionIceEvent, RTCSdpType, RTCSessionDescription,
};

#[derive(Debug)]
enum Foreign {
    Candidate(RTCIceCandidateInit),
    /// An RTP packet arrived: its media kind and payload type.
    Rtp(RtpCodecKind, u8),
    /// A VP8 frame arrived and decoded (its size).
    Vp8Frame(u32, u32),
    Chat(String),
    ChatOpen,
}

struct Handler(mpsc::UnboundedSender<Foreign>);

/// The foreign side's chat: says hello when open, reports what arrives.
fn watch_chat(chat: Arc<dyn DataChannel>, tx: mpsc::UnboundedSender<Foreign>) {
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
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, e: RTCPeerConnectionIceEvent) {
        if let Ok(init) = e.candidate.to_json() {
            let _ = self.0.send(Foreign::Candidate(init));
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        watch_chat(dc, self.0.clone());
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let tx = self.0.clone();
        tokio::spawn(async move {
            let kind = track.kind().await;
            let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
            let vp8 = track
                .codec(ssrc)
                .await
                .is_some_and(|c| c.mime_type.eq_ignore_ascii_case(MIME_TYPE_VP8));
            // VP8 frames are put together and decoded with libvpx: proof that what LiveLoop
            // sends as VP8 is VP8.
            let mut depacketizer = Vp8Packet::default();
            let mut frame = BytesMut::new();
            let mut decoder = Vp8Decoder::new().unwrap();
            while let Some(ev) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(pkt) = ev {
                    let _ = tx.send(Foreign::Rtp(kind, pkt.header.payload_type));
                    if !vp8 {
                        continue;
                    }
                    if let Ok(payload) = depacketizer.depacketize(&pkt.payload) {
                        frame.extend_from_slice(&payload);
                    }
                    if pkt.header.marker
                        && let Ok(Some(f)) = decoder.decode(&frame.split())
                    {
                        let _ = tx.send(Foreign::Vp8Frame(f.width, f.height));
                    }
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

/// The video codecs the foreign peer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Video {
    H264AndVp8,
    Vp8Only,
    Vp9Only,
}

/// A receive-only peer with Firefox's numbering and `video` codecs; as the offerer it adds
/// its own transceivers and data channel.
async fn foreign_peer(
    video: Video,
    offerer: bool,
) -> (Arc<dyn PeerConnection>, mpsc::UnboundedReceiver<Foreign>) {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            codec(MIME_TYPE_OPUS, 48_000, 2, "minptime=10;useinbandfec=1", 109),
            RtpCodecKind::Audio,
        )
        .unwrap();
    if video == Video::H264AndVp8 {
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
    let (mime, pt) = if video == Video::Vp9Only {
        (MIME_TYPE_VP9, 121)
    } else {
        (MIME_TYPE_VP8, 120)
    };
    media
        .register_codec(codec(mime, 90_000, 0, "", pt), RtpCodecKind::Video)
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
    if !offerer {
        return (pc, rx);
    }
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
    watch_chat(dc, tx);
    (pc, rx)
}

/// What the foreign side saw in `window`: packets per (kind, payload type), chat received.
#[derive(Debug, Default)]
struct Seen {
    rtp: BTreeMap<(String, u8), usize>,
    chat: Vec<String>,
    chat_open: bool,
    vp8_frames: Vec<(u32, u32)>,
    /// Our descriptions, in order: (type, SDP).
    ours: Vec<(String, String)>,
}

/// The media sections of an SDP: (kind, port, payload types in order of preference).
fn sections(sdp: &str) -> Vec<(String, u16, Vec<u8>)> {
    sdp.lines()
        .filter_map(|l| l.strip_prefix("m="))
        .map(|m| {
            let mut parts = m.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_owned();
            let port = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
            let pts = parts.skip(1).filter_map(|p| p.parse().ok()).collect();
            (kind, port, pts)
        })
        .collect()
}

/// The payload type our SDP gives `codec` (e.g. `H264/90000`) in its first video section.
fn video_pt(sdp: &str, codec: &str) -> Option<u8> {
    sdp.lines()
        .skip_while(|l| !l.starts_with("m=video"))
        .take_while(|l| !l.starts_with("m=") || l.starts_with("m=video"))
        .find_map(|l| {
            let rest = l.strip_prefix("a=rtpmap:")?;
            let (pt, name) = rest.split_once(' ')?;
            name.starts_with(codec).then(|| pt.parse().ok()).flatten()
        })
}

/// LiveLoop's side starts sending at once (the engine does, before any offer), the foreign
/// offer comes 300 ms later (or LiveLoop offers then, with `we_offer`), and the call runs
/// for `window`. Video is encoded in the codec LiveLoop's peer reports it is sending as.
/// With `restart_after`, LiveLoop restarts ICE that long into the call (a new offer of ours).
async fn late_offer_call(
    video: Video,
    we_offer: bool,
    window: Duration,
    restart_after: Option<Duration>,
) -> (Seen, Vec<PeerEvent>) {
    let (tx, mut ours) = mpsc::channel(4096);
    let peer = Arc::new(
        Peer::new(
            PeerOptions {
                polite: !we_offer,
                udp_addrs: vec!["127.0.0.1:0".into()],
                ..PeerOptions::default()
            },
            tx,
        )
        .await
        .unwrap(),
    );
    let sender = peer.clone();
    let (codec_tx, codec_rx) = tokio::sync::watch::channel(VideoCodec::H264);
    // As the engine does: a keyframe when the connection is up (the first one went out
    // before anything could arrive).
    let keyframe = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wants_keyframe = keyframe.clone();
    let send = tokio::spawn(async move {
        let cam = SyntheticCamera::new(320, 180, 30.0);
        let config = H264Config {
            bitrate_bps: 300_000,
            fps: 30.0,
        };
        let mut h264 = H264Encoder::new(config).unwrap();
        let mut vp8 = Vp8Encoder::new(config).unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0.. {
            tick.tick().await;
            let frame = cam.render(n, n * 33_000);
            let codec = *codec_rx.borrow();
            if wants_keyframe.swap(false, std::sync::atomic::Ordering::Relaxed) {
                h264.request_keyframe();
                vp8.request_keyframe();
            }
            let au = match codec {
                VideoCodec::H264 => h264.encode(&frame).unwrap(),
                VideoCodec::Vp8 => vp8.encode(&frame).unwrap(),
            };
            // Before negotiation these fail (not ready); they must never poison the route.
            let _ = sender
                .send_video(codec, Bytes::from(au.data), Duration::from_micros(33_333))
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

    let (foreign, mut theirs) = Box::pin(foreign_peer(video, !we_offer)).await;
    if we_offer {
        peer.start_offer().await.expect("LiveLoop offers");
    } else {
        let offer = foreign.create_offer(None).await.unwrap();
        foreign.set_local_description(offer.clone()).await.unwrap();
        peer.handle_description(&serde_json::to_value(&offer).unwrap())
            .await
            .expect("LiveLoop takes the offer");
    }

    let restart = restart_after.map(|after| {
        let peer = peer.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            peer.restart_ice()
                .await
                .expect("an ICE restart offers again");
        })
    });
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
                PeerEvent::LocalDescription(desc) => {
                    let desc: RTCSessionDescription = serde_json::from_value(desc).unwrap();
                    let offer = desc.sdp_type == RTCSdpType::Offer;
                    seen.ours.push((desc.sdp_type.to_string(), desc.sdp.clone()));
                    foreign.set_remote_description(desc).await.unwrap();
                    if offer {
                        let answer = foreign.create_answer(None).await.unwrap();
                        foreign.set_local_description(answer.clone()).await.unwrap();
                        peer.handle_description(&serde_json::to_value(&answer).unwrap())
                            .await
                            .expect("LiveLoop takes the answer");
                    }
                }
                PeerEvent::Connection(liveloop_rtc::ConnectionState::Connected) => {
                    keyframe.store(true, std::sync::atomic::Ordering::Relaxed);
                    events.push(PeerEvent::Connection(liveloop_rtc::ConnectionState::Connected));
                }
                PeerEvent::SendVideoAs(codec) => {
                    let _ = codec_tx.send(codec);
                    events.push(PeerEvent::SendVideoAs(codec));
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
                Foreign::Vp8Frame(w, h) => seen.vp8_frames.push((w, h)),
                Foreign::Chat(text) => seen.chat.push(text),
                Foreign::ChatOpen => seen.chat_open = true,
            },
            () = tokio::time::sleep(left) => break,
        }
    }
    send.abort();
    if let Some(r) = restart {
        r.abort();
    }
    let _ = peer.close().await;
    let _ = foreign.close().await;
    (seen, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_offer_with_other_payload_types_gets_video_and_audio_in_its_numbering() {
    let (seen, events) = Box::pin(late_offer_call(
        Video::H264AndVp8,
        false,
        Duration::from_secs(3),
        None,
    ))
    .await;
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
        "nothing under our own numbering (102, 111) and no VP8: {:?}",
        seen.rtp
    );
    assert!(seen.chat.iter().any(|t| t == "hello from liveloop"));
    assert!(!events.iter().any(|e| matches!(e, PeerEvent::NoVideoCodec)));
    assert!(events.contains(&PeerEvent::SendVideoAs(VideoCodec::H264)));
}

/// A peer without H.264 (Firefox as Debian ships it) gets VP8 that decodes, whoever offers.
async fn vp8_only(we_offer: bool) {
    let (seen, events) = Box::pin(late_offer_call(
        Video::Vp8Only,
        we_offer,
        Duration::from_secs(3),
        None,
    ))
    .await;
    eprintln!(
        "foreign side received {:?}, {} VP8 frames decoded; our events {events:?}",
        seen.rtp,
        seen.vp8_frames.len()
    );
    // The answerer takes the offerer's numbering.
    let (vp8_pt, opus_pt) = if we_offer { (96, 111) } else { (120, 109) };
    let video = seen
        .rtp
        .get(&("video".into(), vp8_pt))
        .copied()
        .unwrap_or(0);
    let audio = seen
        .rtp
        .get(&("audio".into(), opus_pt))
        .copied()
        .unwrap_or(0);
    assert!(video >= 60, "VP8 packets as payload type {vp8_pt}: {video}");
    assert!(
        audio >= 40,
        "Opus packets as payload type {opus_pt}: {audio}"
    );
    assert!(
        seen.vp8_frames.len() >= 40 && seen.vp8_frames.iter().all(|s| *s == (320, 180)),
        "VP8 frames decoded by libvpx on the foreign side: {:?}",
        seen.vp8_frames.len()
    );
    assert!(events.contains(&PeerEvent::SendVideoAs(VideoCodec::Vp8)));
    assert!(!events.iter().any(|e| matches!(e, PeerEvent::NoVideoCodec)));
    assert!(seen.chat.iter().any(|t| t == "hello from liveloop"));
    if we_offer {
        // Our offer: audio first, then the camera, then the screen (and the data channel);
        // H.264 before VP8.
        let (kind, offer) = seen.ours.first().expect("our offer");
        assert_eq!(kind, "offer");
        let all = sections(offer);
        let kinds: Vec<&str> = all.iter().map(|(k, ..)| k.as_str()).collect();
        assert_eq!(kinds, ["audio", "video", "video", "application"], "{offer}");
        let (h264, vp8) = (video_pt(offer, "H264/"), video_pt(offer, "VP8/"));
        let order = &all[1].2;
        let at = |pt: Option<u8>| pt.and_then(|pt| order.iter().position(|p| *p == pt));
        assert!(
            matches!((at(h264), at(vp8)), (Some(h), Some(v)) if h < v),
            "H.264 ({h264:?}) before VP8 ({vp8:?}) in {order:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_with_vp8_only_gets_vp8_video() {
    Box::pin(vp8_only(false)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_with_vp8_only_gets_vp8_video() {
    Box::pin(vp8_only(true)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offer_without_a_video_codec_of_ours_gets_audio_and_chat_and_a_reason() {
    let (seen, events) = Box::pin(late_offer_call(
        Video::Vp9Only,
        false,
        Duration::from_secs(4),
        Some(Duration::from_secs(2)),
    ))
    .await;
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
    // Our answer rejected both video sections, and so does our offer of the ICE restart
    // later: a rejected section never comes back to poison the negotiation.
    let kinds = |sdp: &str| -> Vec<(String, u16)> {
        sections(sdp)
            .into_iter()
            .map(|(k, port, _)| (k, port))
            .collect()
    };
    assert!(
        seen.ours.len() >= 2,
        "an answer and a restart offer: {:?}",
        seen.ours.len()
    );
    for (kind, sdp) in &seen.ours {
        let video: Vec<u16> = kinds(sdp)
            .into_iter()
            .filter(|(k, _)| k == "video")
            .map(|(_, p)| p)
            .collect();
        assert!(
            !video.is_empty() && video.iter().all(|p| *p == 0),
            "{kind}: video sections {video:?} in {sdp}"
        );
        assert!(
            kinds(sdp).iter().any(|(k, p)| k == "audio" && *p != 0),
            "{kind}: audio kept"
        );
    }
    assert_eq!(seen.ours.last().map(|(k, _)| k.as_str()), Some("offer"));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, PeerEvent::Chat(t) if t == "hello from the foreign peer"))
    );
}
