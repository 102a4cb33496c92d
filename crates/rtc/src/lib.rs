#![doc = include_str!("../README.md")]

mod keyframe;
pub mod reorder;
mod video;

pub use video::VideoCodec;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::ice::mdns::MulticastDnsMode;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::PayloadType;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry, SettingEngineBuilder,
    StatsSelector,
};

/// Errors of the peer connection driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtcError {
    #[error("WebRTC: {0}")]
    WebRtc(String),
    #[error("invalid signaling payload: {0}")]
    InvalidSignal(String),
    #[error("the connection is not ready to send {0}")]
    NotReady(&'static str),
    /// The negotiation left this stream no codec of ours (the remote offers none, or rejected
    /// the section): it is not sent.
    #[error("the remote has no codec of ours for this stream")]
    NoSharedCodec,
    /// A frame of another codec than the one this stream was negotiated with.
    #[error("this stream is sent as {0:?}")]
    OtherCodec(VideoCodec),
}

fn rtc_err(e: impl std::fmt::Display) -> RtcError {
    RtcError::WebRtc(e.to_string())
}

/// One ICE server (STUN or TURN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

/// How to build a peer.
#[derive(Debug, Clone, Default)]
pub struct PeerOptions {
    pub ice_servers: Vec<IceServer>,
    /// The polite side yields on offer collisions (perfect negotiation).
    pub polite: bool,
    /// Addresses to gather host candidates on; empty means `0.0.0.0:0` (every interface).
    pub udp_addrs: Vec<String>,
}

/// Connection states the application cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    Connecting,
    Connected,
    Disconnected,
    Failed,
    Closed,
}

/// What a peer reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PeerEvent {
    /// Send this description (`{type, sdp}`) to the remote side.
    LocalDescription(serde_json::Value),
    /// Send this candidate (`RTCIceCandidateInit` JSON) to the remote side.
    LocalCandidate(serde_json::Value),
    Connection(ConnectionState),
    /// A text message on the data channel.
    Chat(String),
    /// The data channel is open: chat can be sent.
    ChatOpen,
    /// One video frame (an H.264 access unit in Annex-B, or a VP8 frame) and its RTP
    /// timestamp (90 kHz).
    Video {
        codec: VideoCodec,
        access_unit: Bytes,
        rtp_timestamp: u32,
    },
    /// One Opus packet, its RTP sequence number and timestamp (48 kHz).
    Audio {
        packet: Bytes,
        sequence: u16,
        rtp_timestamp: u32,
    },
    /// One frame of the remote's screen share (its second video stream).
    Screen {
        codec: VideoCodec,
        access_unit: Bytes,
        rtp_timestamp: u32,
    },
    /// The remote asked for a keyframe (PLI or FIR): the encoder should send an IDR.
    KeyframeRequested,
    /// The remote asked for a keyframe of our screen share.
    ScreenKeyframeRequested,
    /// The remote sender's clock for one stream (RTCP SR): its RTP timestamp `rtp_timestamp`
    /// was captured at `ntp_time` (NTP 32.32 format) on the sender's wall clock. Audio and video
    /// of one sender share that clock, which is what lip sync needs.
    SenderReport {
        video: bool,
        ntp_time: u64,
        rtp_timestamp: u32,
    },
    /// Video packets were lost: the frames up to the next keyframe are dropped and a keyframe
    /// was asked for (PLI).
    VideoLoss {
        lost_packets: u32,
    },
    /// The remote has no video codec of ours (neither H.264 nor VP8): the call goes on with
    /// audio and chat, and no video is sent or received. Reported once.
    NoVideoCodec,
    /// The negotiation chose this codec for our video (camera and screen): frames of it are
    /// what [`Peer::send_video`] takes from now on. Reported at the first negotiation and
    /// whenever a later one changes it.
    SendVideoAs(VideoCodec),
}

/// A snapshot of one connection's counters (cumulative; rates are the caller's differences).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerStats {
    /// Round-trip time of the selected candidate pair (STUN), in milliseconds.
    pub rtt_ms: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_received: u64,
    /// Packets lost, as counted by the receiver (all inbound streams).
    pub packets_lost: i64,
    /// Inter-arrival jitter of the inbound audio, in milliseconds.
    pub audio_jitter_ms: f64,
    /// Inter-arrival jitter of the inbound video, in milliseconds.
    pub video_jitter_ms: f64,
    pub nacks_sent: u32,
    pub plis_sent: u32,
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

#[derive(Debug, Default)]
struct Negotiation {
    making_offer: bool,
    ignore_offer: bool,
    stable: bool,
    remote_set: bool,
    pending: Vec<RTCIceCandidateInit>,
}

struct Shared {
    events: mpsc::Sender<PeerEvent>,
    negotiation: Mutex<Negotiation>,
    chat: Mutex<Option<Arc<dyn DataChannel>>>,
    remote_video: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    remote_screen: Mutex<Option<(Arc<dyn TrackRemote>, u32)>>,
    closed: AtomicBool,
    /// Bumped whenever a description is applied: the send routes are looked up again.
    generation: AtomicU64,
    /// Our video sections were refused (no video codec in common): video is not sent.
    video_refused: AtomicBool,
    /// While a local description is being set and sent, the candidates it gathers wait here
    /// (`Some`), so that they always follow it on the wire; `None` passes them at once.
    held_candidates: Mutex<Option<Vec<serde_json::Value>>>,
}

/// Local candidates held back at most while our description is set (a host has a few
/// candidates per interface; this bounds a pathological one).
const MAX_HELD_CANDIDATES: usize = 256;

impl Shared {
    /// Holds local candidates until [`Shared::release_candidates`].
    fn hold_candidates(&self) {
        lock(&self.held_candidates).get_or_insert_with(Vec::new);
    }

    /// Sends the held candidates (after our description) and stops holding.
    fn release_candidates(&self) {
        let held = lock(&self.held_candidates).take().unwrap_or_default();
        for c in held {
            self.emit(PeerEvent::LocalCandidate(c));
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn emit(&self, event: PeerEvent) {
        if self.events.try_send(event).is_err() && !self.closed.load(Ordering::Relaxed) {
            tracing::warn!("peer event queue full or closed; an event was dropped");
        }
    }

    fn watch_chat(self: &Arc<Self>, dc: Arc<dyn DataChannel>) {
        *lock(&self.chat) = Some(dc.clone());
        let shared = self.clone();
        tokio::spawn(async move {
            while let Some(ev) = dc.poll().await {
                match ev {
                    DataChannelEvent::OnOpen => shared.emit(PeerEvent::ChatOpen),
                    DataChannelEvent::OnMessage(m) => shared.emit(PeerEvent::Chat(
                        String::from_utf8_lossy(&m.data).into_owned(),
                    )),
                    DataChannelEvent::OnClose => break,
                    _ => {}
                }
            }
        });
    }
}

struct Handler(Arc<Shared>);

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, e: RTCPeerConnectionIceEvent) {
        if let Ok(init) = e.candidate.to_json()
            && let Ok(json) = serde_json::to_value(&init)
        {
            let mut held = lock(&self.0.held_candidates);
            match held.as_mut() {
                // Our description is not out yet: the candidate waits for it (a peer that
                // gets a candidate before the description it belongs to may drop it).
                Some(h) if h.len() < MAX_HELD_CANDIDATES => h.push(json),
                Some(_) => tracing::warn!("too many local candidates held; one was dropped"),
                None => {
                    drop(held);
                    self.0.emit(PeerEvent::LocalCandidate(json));
                }
            }
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::info!(?state, "peer connection state");
        let state = match state {
            RTCPeerConnectionState::Connected => ConnectionState::Connected,
            RTCPeerConnectionState::Disconnected => ConnectionState::Disconnected,
            RTCPeerConnectionState::Failed => ConnectionState::Failed,
            RTCPeerConnectionState::Closed => ConnectionState::Closed,
            _ => ConnectionState::Connecting,
        };
        self.0.emit(PeerEvent::Connection(state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        self.0.watch_chat(dc);
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let shared = self.0.clone();
        let kind = track.kind().await;
        let ssrc = track.ssrcs().await.first().copied().unwrap_or_default();
        let screen = kind == RtpCodecKind::Video && track.track_id().await == SCREEN_TRACK;
        // One codec per received track, the one the remote sends it with (a codec we do not
        // have, which negotiation prevents, is dropped).
        let codec = match track.codec(ssrc).await {
            Some(c) => VideoCodec::from_mime(&c.mime_type),
            None => None,
        };
        if kind == RtpCodecKind::Video {
            let slot = if screen {
                &shared.remote_screen
            } else {
                &shared.remote_video
            };
            *lock(slot) = Some((track.clone(), ssrc));
        }
        tokio::spawn(async move {
            let mut depacketizer = Depacketize::new(codec);
            let mut au = BytesMut::new();
            let mut assembly = FrameAssembly::default();
            let mut reorder = reorder::Reorder::default();
            loop {
                // While a hole waits for its retransmission, wake when it is to be given up.
                let ev = match reorder.deadline() {
                    Some(at) => tokio::select! {
                        ev = track.poll() => ev,
                        () = tokio::time::sleep_until(at.into()) => {
                            let ready = reorder.poll(Instant::now());
                            video_packets(&shared, &*track, ssrc, screen, ready,
                                &mut depacketizer, &mut au, &mut assembly).await;
                            continue;
                        }
                    },
                    None => track.poll().await,
                };
                let Some(ev) = ev else { break };
                let pkt = match ev {
                    TrackRemoteEvent::OnRtpPacket(pkt) => pkt,
                    TrackRemoteEvent::OnRtcpPacket(packets) => {
                        // webrtc-rs routes RTCP by track id, the remote's first: a keyframe
                        // request about *our* "video" or "screen" track lands here when the
                        // remote's track has the same id (two LiveLoop clients). A received
                        // track is never asked for keyframes, so it is ours.
                        if packets.iter().any(|p| {
                            let any = p.as_any();
                            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                        }) {
                            shared.emit(if screen {
                                PeerEvent::ScreenKeyframeRequested
                            } else {
                                PeerEvent::KeyframeRequested
                            });
                        }
                        // The screen's clock is not the camera's and lip sync has no use for it.
                        if screen {
                            continue;
                        }
                        for sr in packets
                            .iter()
                            .filter_map(|p| p.as_any().downcast_ref::<SenderReport>())
                        {
                            shared.emit(PeerEvent::SenderReport {
                                video: kind == RtpCodecKind::Video,
                                ntp_time: sr.ntp_time,
                                rtp_timestamp: sr.rtp_time,
                            });
                        }
                        continue;
                    }
                    TrackRemoteEvent::OnEnded => break,
                    _ => continue,
                };
                match kind {
                    RtpCodecKind::Video => {
                        let ready = reorder.push(pkt.header.sequence_number, pkt, Instant::now());
                        video_packets(
                            &shared,
                            &*track,
                            ssrc,
                            screen,
                            ready,
                            &mut depacketizer,
                            &mut au,
                            &mut assembly,
                        )
                        .await;
                    }
                    RtpCodecKind::Audio => shared.emit(PeerEvent::Audio {
                        packet: pkt.payload.clone(),
                        sequence: pkt.header.sequence_number,
                        rtp_timestamp: pkt.header.timestamp,
                    }),
                    _ => {}
                }
            }
        });
    }
}

/// webrtc-rs's default interceptors (NACK, RTCP reports, TWCC feedback), with the NACK
/// generator running every 20 ms rather than 100, at most four times per packet: the receiver holds a hole only briefly
/// (`reorder::MAX_WAIT`), so the retransmission has to be asked for at once.
fn default_interceptors(media: &mut MediaEngine) -> Result<Registry, RtcError> {
    use rtc::peer_connection::configuration::interceptor_registry as defaults;
    for parameter in ["", "pli"] {
        media.register_feedback(
            rtc::rtp_transceiver::rtp_sender::RTCPFeedback {
                typ: "nack".to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    let registry = Registry::new()
        .with(
            rtc::interceptor::Slot::NackResponder,
            rtc::interceptor::NackResponderBuilder::new().build(),
        )
        .with(
            rtc::interceptor::Slot::NackGenerator,
            rtc::interceptor::NackGeneratorBuilder::new()
                .with_interval(Duration::from_millis(20))
                // Each missing packet is asked for a few times, not forever: after an outage
                // hundreds are missing, and unlimited NACKs every 20 ms turned into a
                // retransmission storm (150 Mbit/s) that drowned the keyframe request.
                .with_max_nacks_per_packet(4)
                .build(),
        );
    defaults::configure_simulcast_extension_headers(media).map_err(rtc_err)?;
    let registry = defaults::configure_twcc_receiver_only(registry, media).map_err(rtc_err)?;
    Ok(defaults::configure_rtcp_reports(registry))
}

/// Video packets in sequence order (or the news that some were lost), into access units.
#[allow(clippy::too_many_arguments)]
async fn video_packets(
    shared: &Shared,
    track: &dyn TrackRemote,
    ssrc: u32,
    screen: bool,
    ready: Vec<reorder::Out<rtc::rtp::Packet>>,
    depacketizer: &mut Depacketize,
    au: &mut BytesMut,
    assembly: &mut FrameAssembly,
) {
    for out in ready {
        let pkt = match out {
            reorder::Out::Packet(pkt) => Some(pkt),
            reorder::Out::Lost(lost) => {
                // A frame with a hole cannot be decoded, and neither can the frames that
                // reference it: drop them until a keyframe, and ask for one.
                au.clear();
                assembly.lost();
                shared.emit(PeerEvent::VideoLoss {
                    lost_packets: u32::try_from(lost).unwrap_or(u32::MAX),
                });
                None
            }
        };
        // Ask for a keyframe after a loss, and again while none has come.
        if assembly.needs_keyframe_request(Instant::now()) {
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            };
            match track.write_rtcp(vec![Box::new(pli)]).await {
                Ok(()) => tracing::debug!(ssrc, "keyframe requested after loss"),
                Err(e) => tracing::debug!("keyframe request after loss not sent: {e}"),
            }
        }
        let Some(pkt) = pkt else { continue };
        let Some(codec) = depacketizer.codec() else {
            continue;
        };
        if let Ok(payload) = depacketizer.depacketize(&pkt.payload) {
            // A frame larger than any real one (a sender that never sets the marker bit):
            // dropped, and decoding waits for a keyframe.
            if au.len() + payload.len() > MAX_FRAME_BYTES {
                au.clear();
                assembly.lost();
                continue;
            }
            au.extend_from_slice(&payload);
        }
        if pkt.header.marker && !au.is_empty() {
            let frame = au.split().freeze();
            if assembly.frame_complete(codec.is_keyframe(&frame)) {
                let rtp_timestamp = pkt.header.timestamp;
                shared.emit(if screen {
                    PeerEvent::Screen {
                        codec,
                        access_unit: frame,
                        rtp_timestamp,
                    }
                } else {
                    PeerEvent::Video {
                        codec,
                        access_unit: frame,
                        rtp_timestamp,
                    }
                });
            }
        }
    }
}

/// Loss state of the video frame assembler: after lost packets, frames are dropped until a
/// keyframe (packets arrive here in order, from [`reorder::Reorder`]).
#[derive(Debug, Default)]
struct FrameAssembly {
    /// A packet was lost: frames are dropped until a keyframe.
    broken: bool,
    /// When a keyframe was last asked for while broken.
    last_request: Option<Instant>,
}

/// How often a keyframe is asked for again while none arrives (the request or the keyframe
/// itself may be lost).
const KEYFRAME_REQUEST_REPEAT: Duration = Duration::from_millis(500);

impl FrameAssembly {
    /// Packets were lost before the next one.
    fn lost(&mut self) {
        self.broken = true;
    }

    /// Whether to ask for a keyframe now: at once after a loss, then every
    /// [`KEYFRAME_REQUEST_REPEAT`] until one arrives.
    fn needs_keyframe_request(&mut self, now: Instant) -> bool {
        if !self.broken {
            self.last_request = None;
            return false;
        }
        if self
            .last_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_REPEAT)
        {
            return false;
        }
        self.last_request = Some(now);
        true
    }

    /// A frame ended: whether it can be passed to the decoder.
    fn frame_complete(&mut self, keyframe: bool) -> bool {
        if keyframe {
            self.broken = false;
        }
        !self.broken
    }
}

/// The largest video frame assembled (a 4K keyframe at a high bitrate is well below it).
const MAX_FRAME_BYTES: usize = 4 << 20;

/// The depacketizer of one received video track.
enum Depacketize {
    H264(H264Packet),
    Vp8(Vp8Packet),
    /// A codec we do not have: its packets are dropped.
    None,
}

impl Depacketize {
    fn new(codec: Option<VideoCodec>) -> Self {
        match codec {
            Some(VideoCodec::H264) => Self::H264(H264Packet::default()),
            Some(VideoCodec::Vp8) => Self::Vp8(Vp8Packet::default()),
            None => Self::None,
        }
    }

    fn codec(&self) -> Option<VideoCodec> {
        match self {
            Self::H264(_) => Some(VideoCodec::H264),
            Self::Vp8(_) => Some(VideoCodec::Vp8),
            Self::None => None,
        }
    }

    fn depacketize(&mut self, payload: &Bytes) -> Result<Bytes, RtcError> {
        match self {
            Self::H264(p) => p.depacketize(payload).map_err(rtc_err),
            Self::Vp8(p) => p.depacketize(payload).map_err(rtc_err),
            Self::None => Err(RtcError::NoSharedCodec),
        }
    }
}

/// Whether an Annex-B access unit holds an IDR slice (NAL type 5).
fn has_idr(au: &[u8]) -> bool {
    au.windows(4)
        .any(|w| matches!(w, [0, 0, 1, nal] if nal & 0x1f == 5))
}

/// A peer connection to one remote participant.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    polite: bool,
    video: video::VideoSend,
    audio: Arc<TrackLocalStaticSample>,
    /// The screen share: a second video track, negotiated from the start and silent until
    /// something is shared (no renegotiation to start or stop).
    screen: video::VideoSend,
    /// The codec last reported in [`PeerEvent::SendVideoAs`].
    sending_as: Mutex<Option<VideoCodec>>,
    /// A negotiation completed: webrtc-rs has bound the senders' interceptors to the codec
    /// their tracks declared, and a new declaration would no longer reach them.
    bound: AtomicBool,
    /// The send route per track, looked up after each negotiation.
    video_route: Mutex<Option<CachedRoute>>,
    audio_route: Mutex<Option<CachedRoute>>,
    screen_route: Mutex<Option<CachedRoute>>,
    senders: Vec<Arc<dyn webrtc::rtp_transceiver::RtpSender>>,
    /// Serialises offers and applied descriptions: webrtc-rs's calls are async, and an offer
    /// half made when the remote's offer is applied would otherwise fail on a stale state.
    negotiating: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("polite", &self.polite)
            .finish_non_exhaustive()
    }
}

/// How one of our streams goes out: the payload type the remote gave the codec, our SSRC,
/// and for video the codec the negotiation chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Route {
    pt: PayloadType,
    ssrc: u32,
    codec: Option<VideoCodec>,
}

/// A send route as the negotiation of `generation` left it, `None` when the remote has no
/// codec of ours for it.
type CachedRoute = (u64, Option<Route>);

/// One of the streams we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outgoing {
    Video,
    Audio,
    Screen,
}

/// The track id of the screen share (a remote track with this id is a screen, not a camera).
pub const SCREEN_TRACK: &str = "screen";

/// Our audio track (Opus; webrtc-rs packetizes it).
fn audio_track() -> Result<Arc<TrackLocalStaticSample>, RtcError> {
    let encoding = RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(rand::random::<u32>()),
            ..Default::default()
        },
        codec: opus_codec(),
        ..Default::default()
    };
    let track = MediaStreamTrack::new(
        "liveloop".to_owned(),
        "audio".to_owned(),
        "audio".to_owned(),
        RtpCodecKind::Audio,
        vec![encoding],
    );
    Ok(Arc::new(
        TrackLocalStaticSample::new(Instant::now(), track).map_err(rtc_err)?,
    ))
}

/// The codecs, interceptors and settings of every peer, with `mdns` as the mDNS mode.
async fn build_connection(
    options: &PeerOptions,
    shared: &Arc<Shared>,
    mdns: MulticastDnsMode,
) -> Result<impl PeerConnection + use<>, RtcError> {
    let mut media = MediaEngine::default();
    media
        .register_codec(
            RTCRtpCodecParameters {
                rtp_codec: opus_codec(),
                payload_type: 111,
            },
            RtpCodecKind::Audio,
        )
        .map_err(rtc_err)?;
    for codec in VideoCodec::PREFERENCE {
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: codec.rtp_codec(),
                    payload_type: codec.payload_type(),
                },
                RtpCodecKind::Video,
            )
            .map_err(rtc_err)?;
    }
    let registry = default_interceptors(&mut media)?.with(
        rtc::interceptor::Slot::from(14_000),
        keyframe::KeyframeRequests::default(),
    );
    let settings = SettingEngineBuilder::new()
        .with_ice_connection_attempts(Some(Duration::from_millis(20)), None)
        .with_multicast_dns_mode(mdns)
        .build();
    let ice_servers = options
        .ice_servers
        .iter()
        .map(|s| RTCIceServer {
            urls: s.urls.clone(),
            username: s.username.clone(),
            credential: s.credential.clone(),
        })
        .collect();
    let config = RTCConfigurationBuilder::new()
        .with_ice_servers(ice_servers)
        .build();
    let udp = if options.udp_addrs.is_empty() {
        vec!["0.0.0.0:0".to_owned()]
    } else {
        options.udp_addrs.clone()
    };
    // The builder's future is large (20 kB); box it rather than grow every caller's.
    Box::pin(
        PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(settings)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler(shared.clone())))
            .with_udp_addrs(udp)
            .build(),
    )
    .await
    .map_err(rtc_err)
}

impl Peer {
    /// Builds a peer with H.264 and Opus send tracks; events go to `events`. The impolite side
    /// also creates the chat channel (the polite side receives it).
    ///
    /// # Errors
    /// When webrtc-rs refuses the configuration or cannot bind sockets.
    pub async fn new(
        options: PeerOptions,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<Self, RtcError> {
        let shared = Arc::new(Shared {
            events,
            negotiation: Mutex::new(Negotiation {
                stable: true,
                ..Negotiation::default()
            }),
            chat: Mutex::new(None),
            remote_video: Mutex::new(None),
            remote_screen: Mutex::new(None),
            closed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            video_refused: AtomicBool::new(false),
            held_candidates: Mutex::new(None),
        });
        // mDNS (resolving a browser's `.local` candidates) is optional: where its multicast
        // group cannot be joined (a network with no default route or no multicast, ENODEV),
        // the peer is built without it and gathers plain host candidates.
        let pc = match build_connection(&options, &shared, MulticastDnsMode::QueryOnly).await {
            Ok(pc) => pc,
            Err(e) => {
                tracing::warn!(
                    "peer connection with mDNS failed ({e}); building it without mDNS \
                     (remote .local candidates will not resolve)"
                );
                build_connection(&options, &shared, MulticastDnsMode::Disabled).await?
            }
        };
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let video = video::VideoSend::new("video", "liveloop");
        let audio = audio_track()?;
        // Audio first: a peer that rejects our video (no codec in common) still takes the
        // first section, and Firefox, answering a BUNDLE whose first section it rejected,
        // gathers no candidates at all.
        let audio_sender = pc
            .add_track(audio.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(rtc_err)?;
        let video_sender = pc
            .add_track(video.track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(rtc_err)?;
        // The screen share is a stream of its own, so browsers show it apart from the camera.
        let screen = video::VideoSend::new(SCREEN_TRACK, "liveloop-screen");
        let screen_sender = pc
            .add_track(screen.track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(rtc_err)?;
        // A track's codec would make it the only one offered: offer every video codec of
        // ours, H.264 first.
        let ours: Vec<RTCRtpCodecParameters> = VideoCodec::PREFERENCE
            .into_iter()
            .map(|c| RTCRtpCodecParameters {
                rtp_codec: c.rtp_codec(),
                payload_type: c.payload_type(),
            })
            .collect();
        for transceiver in pc.get_transceivers().await {
            if let Ok(Some(sender)) = transceiver.sender().await
                && (sender.id() == video_sender.id() || sender.id() == screen_sender.id())
            {
                transceiver
                    .set_codec_preferences(ours.clone())
                    .await
                    .map_err(rtc_err)?;
            }
        }
        // Keyframe requests about our video arrive as RTCP events on its local track.
        for (track, event) in [
            (video.track.clone(), PeerEvent::KeyframeRequested),
            (screen.track.clone(), PeerEvent::ScreenKeyframeRequested),
        ] {
            let shared = shared.clone();
            tokio::spawn(async move {
                while let Some(ev) = track.poll().await {
                    if let TrackLocalEvent::OnRtcpPacket(packets) = ev
                        && packets.iter().any(|p| {
                            let any = p.as_any();
                            any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                        })
                    {
                        tracing::debug!(?event, "keyframe requested by the remote");
                        shared.emit(event.clone());
                    }
                }
                tracing::debug!("local track events ended");
            });
        }
        if !options.polite {
            let dc = pc
                .create_data_channel("chat", None)
                .await
                .map_err(rtc_err)?;
            shared.watch_chat(dc);
        }
        Ok(Self {
            pc,
            shared,
            polite: options.polite,
            video,
            audio,
            screen,
            sending_as: Mutex::new(None),
            bound: AtomicBool::new(false),
            video_route: Mutex::new(None),
            audio_route: Mutex::new(None),
            screen_route: Mutex::new(None),
            senders: vec![video_sender, audio_sender, screen_sender],
            negotiating: tokio::sync::Mutex::new(()),
        })
    }

    /// Creates and sends an offer (the caller of a call, or to renegotiate).
    ///
    /// # Errors
    /// On a WebRTC error.
    pub async fn start_offer(&self) -> Result<(), RtcError> {
        let _turn = self.negotiating.lock().await;
        lock(&self.shared.negotiation).making_offer = true;
        self.shared.hold_candidates();
        let result = async {
            // After an answer that rejected our video, describe it as rejected again.
            let offer = self.describe(|| self.pc.create_offer(None)).await?;
            self.pc
                .set_local_description(offer)
                .await
                .map_err(rtc_err)?;
            // Signaling state is tracked here, not from the state-change callback, which can
            // arrive after the remote offer of a glare does.
            lock(&self.shared.negotiation).stable = false;
            self.emit_local_description().await
        }
        .await;
        lock(&self.shared.negotiation).making_offer = false;
        self.shared.release_candidates();
        result
    }

    async fn emit_local_description(&self) -> Result<(), RtcError> {
        let desc = self
            .pc
            .local_description()
            .await
            .ok_or(RtcError::NotReady("a description"))?;
        let json = serde_json::to_value(&desc).map_err(rtc_err)?;
        self.shared.emit(PeerEvent::LocalDescription(json));
        Ok(())
    }

    /// A remote description (`{type, sdp}`), applied with perfect negotiation: on an offer
    /// collision the impolite side ignores the remote offer and the polite side rolls back.
    ///
    /// # Errors
    /// For a malformed description or a WebRTC error.
    pub async fn handle_description(&self, json: &serde_json::Value) -> Result<(), RtcError> {
        let desc: RTCSessionDescription = serde_json::from_value(json.clone())
            .map_err(|e| RtcError::InvalidSignal(e.to_string()))?;
        let is_offer = desc.sdp_type == RTCSdpType::Offer;
        let _turn = self.negotiating.lock().await;
        let collision = {
            let mut n = lock(&self.shared.negotiation);
            let collision = is_offer && (n.making_offer || !n.stable);
            n.ignore_offer = !self.polite && collision;
            if n.ignore_offer {
                return Ok(());
            }
            collision
        };
        if collision {
            let rollback = RTCSessionDescription::rollback(None).map_err(rtc_err)?;
            self.pc
                .set_local_description(rollback)
                .await
                .map_err(rtc_err)?;
        }
        self.pc
            .set_remote_description(desc)
            .await
            .map_err(rtc_err)?;
        self.negotiated();
        let pending = {
            let mut n = lock(&self.shared.negotiation);
            n.remote_set = true;
            // An applied answer completes our offer; an applied offer awaits our answer.
            n.stable = !is_offer;
            std::mem::take(&mut n.pending)
        };
        for c in pending {
            self.pc.add_ice_candidate(c).await.map_err(rtc_err)?;
        }
        if !is_offer
            && !self.shared.video_refused.load(Ordering::Acquire)
            && let Err(RtcError::NoSharedCodec) = self.route(Outgoing::Video).await
        {
            // The answer rejected our video section (or kept no codec of ours in it).
            self.refuse_video().await?;
        }
        self.settle_video(is_offer).await?;
        if !is_offer {
            self.bound.store(true, Ordering::Release);
        }
        if is_offer {
            self.shared.hold_candidates();
            let answered = self.answer().await;
            self.shared.release_candidates();
            answered?;
        }
        Ok(())
    }

    /// Creates, applies and sends our answer to the applied remote offer.
    async fn answer(&self) -> Result<(), RtcError> {
        // An offer without a video codec of ours (VP9 or AV1 only): answer its audio and
        // data channel, reject its video.
        let answer = self.describe(|| self.pc.create_answer(None)).await?;
        self.pc
            .set_local_description(answer)
            .await
            .map_err(rtc_err)?;
        self.negotiated();
        self.bound.store(true, Ordering::Release);
        lock(&self.shared.negotiation).stable = true;
        self.emit_local_description().await?;
        Ok(())
    }

    /// A remote ICE candidate (`RTCIceCandidateInit` JSON); queued until the remote description
    /// is set. Candidates for an offer this side ignored are dropped.
    ///
    /// # Errors
    /// For a malformed candidate or a WebRTC error.
    pub async fn add_candidate(&self, json: &serde_json::Value) -> Result<(), RtcError> {
        if json.is_null() {
            return Ok(()); // end of candidates
        }
        let init: RTCIceCandidateInit = serde_json::from_value(json.clone())
            .map_err(|e| RtcError::InvalidSignal(e.to_string()))?;
        {
            let mut n = lock(&self.shared.negotiation);
            if !n.remote_set {
                n.pending.push(init);
                return Ok(());
            }
            if n.ignore_offer {
                return Ok(());
            }
        }
        self.pc.add_ice_candidate(init).await.map_err(rtc_err)
    }

    /// The route cache and sender of one of our streams.
    fn outgoing(
        &self,
        kind: Outgoing,
    ) -> (
        &Mutex<Option<CachedRoute>>,
        Option<&Arc<dyn webrtc::rtp_transceiver::RtpSender>>,
    ) {
        match kind {
            Outgoing::Video => (&self.video_route, self.senders.first()),
            Outgoing::Audio => (&self.audio_route, self.senders.get(1)),
            Outgoing::Screen => (&self.screen_route, self.senders.get(2)),
        }
    }

    /// The negotiated payload type, our SSRC and (video) the codec for one stream. Looked up
    /// again after every applied description (the remote numbers codecs as it likes, and may
    /// renumber them in a renegotiation), never before the first: what a sender reports then
    /// is our own numbering, which the remote may not share. Video goes as the first codec
    /// of ours the negotiation kept, in [`VideoCodec::PREFERENCE`] order.
    async fn route(&self, kind: Outgoing) -> Result<Route, RtcError> {
        let (slot, sender) = self.outgoing(kind);
        let generation = self.shared.generation.load(Ordering::Acquire);
        if let Some((g, route)) = *lock(slot)
            && g == generation
        {
            return route.ok_or(RtcError::NoSharedCodec);
        }
        if !lock(&self.shared.negotiation).remote_set {
            return Err(RtcError::NotReady("media before negotiation"));
        }
        let refused = kind != Outgoing::Audio && self.shared.video_refused.load(Ordering::Acquire);
        let route = if refused {
            None
        } else {
            let sender = sender.ok_or(RtcError::NotReady("media"))?;
            let params = sender.get_parameters().await.map_err(rtc_err)?;
            let pt_of = |mime: &str| {
                params
                    .rtp_parameters
                    .codecs
                    .iter()
                    .find(|c| c.rtp_codec.mime_type.eq_ignore_ascii_case(mime))
                    .map(|c| c.payload_type)
            };
            match kind {
                Outgoing::Audio => {
                    let ssrc = self.audio.ssrcs().await.first().copied();
                    pt_of(MIME_TYPE_OPUS).zip(ssrc).map(|(pt, ssrc)| Route {
                        pt,
                        ssrc,
                        codec: None,
                    })
                }
                Outgoing::Video | Outgoing::Screen => {
                    let ssrc = if kind == Outgoing::Video {
                        self.video.ssrc
                    } else {
                        self.screen.ssrc
                    };
                    VideoCodec::PREFERENCE.into_iter().find_map(|codec| {
                        pt_of(codec.mime()).map(|pt| Route {
                            pt,
                            ssrc,
                            codec: Some(codec),
                        })
                    })
                }
            }
        };
        // A description applied meanwhile makes this lookup stale: use it once, keep nothing.
        if self.shared.generation.load(Ordering::Acquire) == generation {
            *lock(slot) = Some((generation, route));
        }
        route.ok_or(RtcError::NoSharedCodec)
    }

    /// After a remote description was applied: settles which codec our video goes out as.
    /// Before our first answer the senders' tracks declare that codec (webrtc-rs binds
    /// retransmissions and sender reports to it when the answer is set) and our answer lists
    /// H.264 first, so that a remote that has both sends us H.264. The codec is reported to
    /// the application when it changes.
    async fn settle_video(&self, answering: bool) -> Result<(), RtcError> {
        let codec = match self.route(Outgoing::Video).await {
            Ok(Route {
                codec: Some(codec), ..
            }) => codec,
            Ok(_) | Err(RtcError::NoSharedCodec) => return Ok(()),
            Err(e) => return Err(e),
        };
        if answering && !self.bound.load(Ordering::Acquire) {
            for (send, sender) in [
                (&self.video, self.senders.first()),
                (&self.screen, self.senders.get(2)),
            ] {
                if let Some(sender) = sender {
                    send.declare(sender, codec).await?;
                }
            }
        }
        if answering {
            self.prefer_h264().await;
        }
        let changed = lock(&self.sending_as).replace(codec) != Some(codec);
        if changed {
            self.shared.emit(PeerEvent::SendVideoAs(codec));
        }
        Ok(())
    }

    /// Orders the negotiated video codecs of the answer to come H.264 first (the remote
    /// sends with the first codec of our answer). Best effort: the call works either way.
    async fn prefer_h264(&self) {
        for transceiver in self.pc.get_transceivers().await {
            let Ok(Some(sender)) = transceiver.sender().await else {
                continue;
            };
            if ![self.senders.first(), self.senders.get(2)]
                .into_iter()
                .flatten()
                .any(|s| s.id() == sender.id())
            {
                continue;
            }
            let Ok(params) = sender.get_parameters().await else {
                continue;
            };
            let mut codecs = params.rtp_parameters.codecs;
            if codecs.is_empty() {
                continue;
            }
            // A stable sort: H.264 entries first, everything else in the remote's order.
            codecs.sort_by_key(|c| {
                VideoCodec::from_mime(&c.rtp_codec.mime_type) != Some(VideoCodec::H264)
            });
            if let Err(e) = transceiver.set_codec_preferences(codecs).await {
                tracing::debug!("codec order not changed: {e}");
            }
        }
    }

    /// A description was applied: routes are looked up again.
    fn negotiated(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Stops sending video (camera and screen) after a remote offered or answered no video
    /// codec of ours, so that this and every later description rejects those sections
    /// (webrtc-rs refuses to describe a sender it has no codec for). Audio and chat go on.
    async fn refuse_video(&self) -> Result<(), RtcError> {
        if self.shared.video_refused.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        for sender in [self.senders.first(), self.senders.get(2)]
            .into_iter()
            .flatten()
        {
            self.pc.remove_track(sender).await.map_err(rtc_err)?;
        }
        self.negotiated();
        self.shared.emit(PeerEvent::NoVideoCodec);
        Ok(())
    }

    /// Makes an offer or answer with `make`. When webrtc-rs refuses because our video has no
    /// codec in common with the remote ("RTPSender created with no codecs"), video is
    /// refused ([`Peer::refuse_video`]) and the description made again.
    async fn describe<F, Fut>(&self, make: F) -> Result<RTCSessionDescription, RtcError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = webrtc::error::Result<RTCSessionDescription>>,
    {
        match make().await {
            Err(rtc::shared::error::Error::ErrSenderWithNoCodecs) => {
                self.refuse_video().await?;
                make().await.map_err(rtc_err)
            }
            other => other.map_err(rtc_err),
        }
    }

    /// Sends one frame of camera or screen video.
    async fn send_frame(
        &self,
        kind: Outgoing,
        codec: VideoCodec,
        frame: Bytes,
        duration: Duration,
    ) -> Result<(), RtcError> {
        let route = self.route(kind).await?;
        if route.codec != Some(codec) {
            return Err(RtcError::OtherCodec(route.codec.unwrap_or(codec)));
        }
        let send = if kind == Outgoing::Screen {
            &self.screen
        } else {
            &self.video
        };
        let samples = (duration.as_secs_f64() * 90_000.0) as u32;
        for packet in send.packetize(codec, route.pt, &frame, samples)? {
            send.track.write_rtp(packet).await.map_err(rtc_err)?;
        }
        Ok(())
    }

    /// Sends one frame of the screen share (`codec` as [`PeerEvent::SendVideoAs`] said)
    /// lasting `duration`.
    ///
    /// # Errors
    /// Before negotiation, for a frame of another codec, or on a WebRTC error.
    pub async fn send_screen(
        &self,
        codec: VideoCodec,
        frame: Bytes,
        duration: Duration,
    ) -> Result<(), RtcError> {
        self.send_frame(Outgoing::Screen, codec, frame, duration)
            .await
    }

    /// Sends one camera frame (an H.264 access unit in Annex-B, or a VP8 frame) lasting
    /// `duration`.
    ///
    /// # Errors
    /// Before negotiation, for a frame of another codec than the negotiated one
    /// ([`RtcError::OtherCodec`]), or on a WebRTC error.
    pub async fn send_video(
        &self,
        codec: VideoCodec,
        frame: Bytes,
        duration: Duration,
    ) -> Result<(), RtcError> {
        self.send_frame(Outgoing::Video, codec, frame, duration)
            .await
    }

    /// Sends one Opus packet lasting `duration`.
    ///
    /// # Errors
    /// Before negotiation, or on a WebRTC error.
    pub async fn send_audio(&self, packet: Bytes, duration: Duration) -> Result<(), RtcError> {
        let route = self.route(Outgoing::Audio).await?;
        let sample = Sample {
            data: packet,
            duration,
            ..Sample::new(Instant::now())
        };
        self.audio
            .sample_writer(route.ssrc, route.pt)
            .write_sample(&sample)
            .await
            .map_err(rtc_err)
    }

    /// Sends a chat or metadata message on the data channel.
    ///
    /// # Errors
    /// [`RtcError::NotReady`] before the channel opens.
    pub async fn send_chat(&self, text: &str) -> Result<(), RtcError> {
        let dc = lock(&self.shared.chat)
            .clone()
            .ok_or(RtcError::NotReady("chat"))?;
        dc.send_text(text).await.map_err(rtc_err)
    }

    /// Asks the remote sender for a keyframe (PLI), after loss or when a decoder starts.
    ///
    /// # Errors
    /// Before remote video arrived, or on a WebRTC error.
    pub async fn request_keyframe(&self) -> Result<(), RtcError> {
        self.request_keyframe_of(false).await
    }

    /// Asks for a keyframe of the remote's screen share.
    ///
    /// # Errors
    /// Before its screen track arrived, or on a WebRTC error.
    pub async fn request_screen_keyframe(&self) -> Result<(), RtcError> {
        self.request_keyframe_of(true).await
    }

    async fn request_keyframe_of(&self, screen: bool) -> Result<(), RtcError> {
        let slot = if screen {
            &self.shared.remote_screen
        } else {
            &self.shared.remote_video
        };
        let (track, ssrc) = lock(slot)
            .clone()
            .ok_or(RtcError::NotReady("a keyframe request"))?;
        track
            .write_rtcp(vec![Box::new(PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc: ssrc,
            })])
            .await
            .map_err(rtc_err)
    }

    /// Restarts ICE (new credentials, fresh candidates) and sends a new offer: what the
    /// impolite side does when the connection failed.
    ///
    /// # Errors
    /// On a WebRTC error.
    pub async fn restart_ice(&self) -> Result<(), RtcError> {
        self.pc.restart_ice().await.map_err(rtc_err)?;
        self.start_offer().await
    }

    /// The connection's counters now.
    pub async fn stats(&self) -> PeerStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = PeerStats::default();
        if let Some(pair) = report
            .candidate_pairs()
            .find(|p| p.nominated)
            .or_else(|| report.candidate_pairs().max_by_key(|p| p.bytes_received))
        {
            stats.rtt_ms = pair.current_round_trip_time * 1000.0;
            stats.bytes_sent = pair.bytes_sent;
            stats.bytes_received = pair.bytes_received;
        }
        for inbound in report.inbound_rtp_streams() {
            let received = &inbound.received_rtp_stream_stats;
            stats.packets_received += received.packets_received;
            stats.packets_lost += received.packets_lost;
            // webrtc-rs reports the receiver report's jitter as is: in RTP timestamp units.
            if received.rtp_stream_stats.kind == RtpCodecKind::Video {
                stats.video_jitter_ms = received.jitter / 90.0;
            } else {
                stats.audio_jitter_ms = received.jitter / 48.0;
            }
            stats.nacks_sent += inbound.nack_count;
            stats.plis_sent += inbound.pli_count;
        }
        stats
    }

    /// Closes the connection; every internal task ends.
    ///
    /// # Errors
    /// On a WebRTC error.
    pub async fn close(&self) -> Result<(), RtcError> {
        self.shared.closed.store(true, Ordering::Relaxed);
        self.pc.close().await.map_err(rtc_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembly_drops_frames_after_loss_until_a_keyframe() {
        let mut a = FrameAssembly::default();
        let t = Instant::now();
        assert!(a.frame_complete(false));
        assert!(!a.needs_keyframe_request(t));
        // Packets lost: this frame and the next delta frame are dropped.
        a.lost();
        assert!(a.needs_keyframe_request(t));
        assert!(!a.needs_keyframe_request(t + Duration::from_millis(100)));
        // No keyframe yet: asked again.
        assert!(a.needs_keyframe_request(t + KEYFRAME_REQUEST_REPEAT));
        assert!(!a.frame_complete(false));
        assert!(!a.frame_complete(false));
        assert!(a.frame_complete(true));
        assert!(a.frame_complete(false));
    }

    #[test]
    fn idr_detection() {
        assert!(has_idr(&[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 9]));
        assert!(!has_idr(&[0, 0, 0, 1, 0x41, 1, 2, 3]));
        assert!(!has_idr(&[]));
    }
}
