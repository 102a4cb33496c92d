#![doc = include_str!("../README.md")]

mod bwe;
mod certs;
mod connection;
mod events;
#[cfg(test)]
#[allow(dead_code)]
mod fuzz_support;
mod handler;
mod keyframe;
mod negotiation;
mod pacer;
mod receive;
pub mod reorder;
mod runtime;
mod send;
mod stats;
mod turn_bridge;
mod types;
mod video;

pub use certs::warm_up;
pub use connection::{MAX_BITRATE_BPS, MIN_BITRATE_BPS, START_BITRATE_BPS};
pub use negotiation::dtls_fingerprint;
pub use stats::PeerStats;
pub use types::{ConnectionState, IceServer, PeerEvent, PeerOptions, RtcError};
pub use video::VideoCodec;

/// The most text a remote ICE candidate may carry (its `candidate`, `sdpMid` and
/// `usernameFragment` together): a real one is under 200 bytes, and the queue of candidates
/// waiting for the remote description then holds at most 128 × 2 KiB.
pub const MAX_CANDIDATE_BYTES: usize = 2048;

/// Bytes our data channel may hold that the remote has not yet acknowledged. Past it,
/// [`Peer::send_chat`] refuses with [`RtcError::SendBufferFull`] rather than queue without
/// limit behind a remote that reads slowly or not at all (chat and state messages are a few
/// hundred bytes; this is thousands of them).
pub const DATA_CHANNEL_SEND_LIMIT: usize = 1 << 20;

use send::{CachedRoute, Outgoing};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp_transceiver::rtp_sender::RTCRtpCodecParameters;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, RTCIceCandidateInit, RTCSdpType, RTCSessionDescription,
};

use connection::{audio_track, build_connection};
use types::rtc_err;

struct Shared {
    /// Control, chat and media events, each in a bounded queue of its own (`events.rs`).
    events: events::Queues,
    negotiation: Mutex<negotiation::Negotiation<RTCIceCandidateInit>>,
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
    /// The send-side bandwidth estimate, as the interceptor chain last reported it.
    send_estimate: keyframe::SendEstimate,
    /// Bounds the driver's sleeps while the connection is being set up or a TURN relay may
    /// carry our packets (`runtime.rs`).
    relay_pump: runtime::RelayPump,
    /// A TURN server is configured: the pump stays on after setup until a direct pair is
    /// known to be picked (`stats.rs`).
    turn_configured: bool,
    /// DTLS is done (the connection was connected once): after an ICE restart, ICE's
    /// connected state ends the setup.
    dtls_done: AtomicBool,
}

/// Local candidates held back at most while our description is set (a host has a few
/// candidates per interface; this bounds a pathological one).
const MAX_HELD_CANDIDATES: usize = 256;

impl Shared {
    /// The connection is set up: the driver's sleeps are unbounded again, unless a TURN relay
    /// may carry the call (then `stats.rs` decides once a pair is picked).
    fn end_setup(&self) {
        if !self.turn_configured {
            self.relay_pump.set(false);
        }
    }

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

/// The options with every TURN server over TCP or TLS replaced by a loopback bridge to it
/// (`turn_bridge.rs`), and the bridges. A bridge that cannot start leaves its URL out (and
/// says so): the other servers still work.
async fn bridge_stream_turn(
    mut options: PeerOptions,
) -> (PeerOptions, Vec<turn_bridge::TurnBridge>) {
    let mut bridges = Vec::new();
    for server in &mut options.ice_servers {
        let mut urls = Vec::with_capacity(server.urls.len());
        for url in &server.urls {
            let Some(stream) = turn_bridge::StreamServer::from_url(url) else {
                urls.push(url.clone());
                continue;
            };
            match turn_bridge::TurnBridge::start(stream).await {
                Ok(bridge) => {
                    urls.push(format!("turn:{}?transport=udp", bridge.local));
                    bridges.push(bridge);
                }
                Err(e) => tracing::warn!("{url}: cannot start the TURN bridge: {e}"),
            }
        }
        server.urls = urls;
    }
    (options, bridges)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Queues an event for the owner: media and chat are dropped (and counted) when their
    /// queues are full; control events have a queue of their own (`events.rs`).
    fn emit(&self, event: PeerEvent) {
        let _ = self.events.push(event);
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

/// A peer connection to one remote participant.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    shared: Arc<Shared>,
    /// TURN over TCP and TLS, which webrtc-rs reaches through these (`turn_bridge.rs`).
    _turn_bridges: Vec<turn_bridge::TurnBridge>,
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

/// The track id of the screen share (a remote track with this id is a screen, not a camera).
pub const SCREEN_TRACK: &str = "screen";

impl Peer {
    /// Builds a peer with H.264 and Opus send tracks; events go to `events`, which is written
    /// to with backpressure (control first, then chat, then media; media and chat that find
    /// their own bounded queue full are dropped, control never waits behind them). The
    /// impolite side also creates the chat channel (the polite side receives it).
    ///
    /// # Errors
    /// When webrtc-rs refuses the configuration or cannot bind sockets.
    pub async fn new(
        options: PeerOptions,
        events: mpsc::Sender<PeerEvent>,
    ) -> Result<Self, RtcError> {
        let shared = Arc::new(Shared {
            events: events::Queues::start(events),
            negotiation: Mutex::new(negotiation::Negotiation::new(options.polite)),
            chat: Mutex::new(None),
            remote_video: Mutex::new(None),
            remote_screen: Mutex::new(None),
            closed: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            video_refused: AtomicBool::new(false),
            held_candidates: Mutex::new(None),
            send_estimate: keyframe::SendEstimate::default(),
            relay_pump: runtime::RelayPump::default(),
            turn_configured: options.ice_servers.iter().any(IceServer::is_turn),
            dtls_done: AtomicBool::new(false),
        });
        // Bounded sleeps from the start: the setup's ICE checks and DTLS flights must not wait
        // for the driver's next wake-up (`runtime.rs`); off once connected, unless a relay may
        // carry the call.
        shared.relay_pump.set(true);
        let (options, turn_bridges) = bridge_stream_turn(options).await;
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
            _turn_bridges: turn_bridges,
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
        lock(&self.shared.negotiation).offer_started();
        self.shared.hold_candidates();
        let result = async {
            // After an answer that rejected our video, describe it as rejected again.
            let offer = self.describe(|| self.pc.create_offer(None)).await?;
            self.pc
                .set_local_description(offer)
                .await
                .map_err(rtc_err)?;
            lock(&self.shared.negotiation).offer_set();
            self.emit_local_description().await
        }
        .await;
        lock(&self.shared.negotiation).offer_ended();
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
        let decision = lock(&self.shared.negotiation).remote(is_offer);
        let negotiation::Remote::Apply { rollback } = decision else {
            return Ok(()); // an offer that collided with ours, and ours wins
        };
        if rollback {
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
        let pending = lock(&self.shared.negotiation).remote_applied(is_offer);
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
        lock(&self.shared.negotiation).answered();
        self.emit_local_description().await?;
        Ok(())
    }

    /// A remote ICE candidate (`RTCIceCandidateInit` JSON); queued until the remote description
    /// is set (at most 128; past it, dropped and counted). Candidates for an offer this side
    /// ignored are dropped. One over [`MAX_CANDIDATE_BYTES`] is refused.
    ///
    /// # Errors
    /// For a malformed candidate or a WebRTC error.
    pub async fn add_candidate(&self, json: &serde_json::Value) -> Result<(), RtcError> {
        if json.is_null() {
            return Ok(()); // end of candidates
        }
        let init: RTCIceCandidateInit = serde_json::from_value(json.clone())
            .map_err(|e| RtcError::InvalidSignal(e.to_string()))?;
        let bytes = init.candidate.len()
            + init.sdp_mid.as_ref().map_or(0, String::len)
            + init.username_fragment.as_ref().map_or(0, String::len);
        if bytes > MAX_CANDIDATE_BYTES {
            return Err(RtcError::InvalidSignal(format!(
                "a candidate of {bytes} bytes (at most {MAX_CANDIDATE_BYTES})"
            )));
        }
        let action = lock(&self.shared.negotiation).candidate(init);
        match action {
            negotiation::Candidate::Add(init) => {
                self.pc.add_ice_candidate(init).await.map_err(rtc_err)
            }
            negotiation::Candidate::Queued => Ok(()),
            negotiation::Candidate::Dropped => {
                let dropped = lock(&self.shared.negotiation).dropped();
                tracing::debug!(
                    dropped,
                    "remote candidate dropped (ignored offer, or queue full)"
                );
                Ok(())
            }
        }
    }

    /// A description was applied: routes are looked up again.
    fn negotiated(&self) {
        self.shared.generation.fetch_add(1, Ordering::AcqRel);
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

    /// Sends a chat or metadata message on the data channel. Never waits for the remote.
    ///
    /// # Errors
    /// [`RtcError::NotReady`] before the channel opens; [`RtcError::SendBufferFull`] while
    /// [`DATA_CHANNEL_SEND_LIMIT`] bytes wait for the remote's acknowledgement (the message
    /// is not sent).
    pub async fn send_chat(&self, text: &str) -> Result<(), RtcError> {
        let dc = lock(&self.shared.chat)
            .clone()
            .ok_or(RtcError::NotReady("chat"))?;
        dc.try_send_text(text).await.map_err(|e| match e {
            rtc::shared::error::Error::ErrSendBufferFull => RtcError::SendBufferFull,
            e => rtc_err(e),
        })
    }

    /// What the congestion controller estimates this connection can carry from us, in bits
    /// per second, once feedback has come (`None` before). Audio and video share it.
    #[must_use]
    pub fn send_estimate_bps(&self) -> Option<u32> {
        self.shared.send_estimate.get()
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
        // The new checks are setup too (`runtime.rs`).
        if !self.shared.closed.load(Ordering::Relaxed) {
            self.shared.relay_pump.set(true);
        }
        self.pc.restart_ice().await.map_err(rtc_err)?;
        self.start_offer().await
    }

    /// Closes the connection; every internal task ends.
    ///
    /// # Errors
    /// On a WebRTC error.
    pub async fn close(&self) -> Result<(), RtcError> {
        self.shared.closed.store(true, Ordering::Relaxed);
        // Unbounded again, so that webrtc-rs's wait for its driver to release the TURN
        // allocations is not cut short (`runtime.rs`).
        self.shared.relay_pump.set(false);
        self.pc.close().await.map_err(rtc_err)
    }
}
