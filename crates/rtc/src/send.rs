//! Our send path: which payload type, SSRC and codec each stream goes out with (looked up
//! from the negotiation), the codec our video settles on, and the sends themselves.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::media::Sample;
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::rtp_transceiver::PayloadType;
use webrtc::media_stream::Track;
use webrtc::media_stream::track_local::TrackLocal;

use crate::{Peer, PeerEvent, RtcError, VideoCodec, lock, rtc_err};

/// How one of our streams goes out: the payload type the remote gave the codec, our SSRC,
/// and for video the codec the negotiation chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Route {
    pub pt: PayloadType,
    pub ssrc: u32,
    pub codec: Option<VideoCodec>,
}

/// A send route as the negotiation of `generation` left it, `None` when the remote has no
/// codec of ours for it.
pub(crate) type CachedRoute = (u64, Option<Route>);

/// One of the streams we send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outgoing {
    Video,
    Audio,
    Screen,
}

impl Peer {
    /// The route cache and sender of one of our streams.
    pub(crate) fn outgoing(
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
    pub(crate) async fn route(&self, kind: Outgoing) -> Result<Route, RtcError> {
        let (slot, sender) = self.outgoing(kind);
        let generation = self.shared.generation.load(Ordering::Acquire);
        if let Some((g, route)) = *lock(slot)
            && g == generation
        {
            return route.ok_or(RtcError::NoSharedCodec);
        }
        if !lock(&self.shared.negotiation).remote_set() {
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
    pub(crate) async fn settle_video(&self, answering: bool) -> Result<(), RtcError> {
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

    /// Stops sending video (camera and screen) after a remote offered or answered no video
    /// codec of ours, so that this and every later description rejects those sections
    /// (webrtc-rs refuses to describe a sender it has no codec for). Audio and chat go on.
    pub(crate) async fn refuse_video(&self) -> Result<(), RtcError> {
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
}
