//! Video codecs and our video send streams. A stream (camera or screen) is one RTP stream
//! whose codec follows the negotiation: H.264 where the remote has it, else VP8 (Firefox
//! without OpenH264). The packetizer is ours, so it can change with the codec; the track
//! webrtc-rs binds stays the same object.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_VP8};
use rtc::rtp::packetizer::Packetizer;
use rtc::rtp::sequence::Sequencer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;

use crate::{RtcError, lock, rtc_err};

/// A video codec LiveLoop sends and receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264 constrained baseline, packetization mode 1: what LiveLoop prefers (hardware
    /// decoders everywhere, the better encoder here).
    H264,
    /// VP8: every WebRTC browser has it, including those without H.264.
    Vp8,
}

impl VideoCodec {
    /// Our preference, first to last.
    pub const PREFERENCE: [Self; 2] = [Self::H264, Self::Vp8];

    #[must_use]
    pub fn mime(self) -> &'static str {
        match self {
            Self::H264 => MIME_TYPE_H264,
            Self::Vp8 => MIME_TYPE_VP8,
        }
    }

    /// Our own payload type in offers (the remote's numbering wins in its offers).
    pub(crate) fn payload_type(self) -> u8 {
        match self {
            Self::H264 => 102,
            Self::Vp8 => 96,
        }
    }

    pub(crate) fn rtp_codec(self) -> RTCRtpCodec {
        let fmtp = match self {
            Self::H264 => "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f",
            Self::Vp8 => "",
        };
        RTCRtpCodec {
            mime_type: self.mime().to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: fmtp.to_owned(),
            rtcp_feedback: vec![],
        }
    }

    pub(crate) fn from_mime(mime: &str) -> Option<Self> {
        Self::PREFERENCE
            .into_iter()
            .find(|c| c.mime().eq_ignore_ascii_case(mime))
    }

    /// Whether one received frame (H.264 Annex-B access unit or VP8 frame) is a keyframe.
    #[must_use]
    pub fn is_keyframe(self, frame: &[u8]) -> bool {
        match self {
            Self::H264 => crate::receive::has_idr(frame),
            // RFC 6386 9.1: the first bit of the frame tag is 0 for a key frame.
            Self::Vp8 => frame.first().is_some_and(|b| b & 0x01 == 0),
        }
    }
}

/// RTP payloads up to this size (the rest of a 1280-byte IPv6 minimum MTU is headers).
const MTU: usize = 1200;

/// One of our video streams (camera or screen).
pub(crate) struct VideoSend {
    /// The track webrtc-rs bound to the sender (writes go through it).
    pub track: Arc<TrackLocalStaticRTP>,
    id: &'static str,
    stream: &'static str,
    pub ssrc: u32,
    sequencer: Box<dyn Sequencer>,
    /// The codec the sender's track declares (what webrtc-rs binds its interceptors to).
    declared: Mutex<VideoCodec>,
    packetizer: Mutex<Option<(VideoCodec, Box<dyn Packetizer>)>>,
}

impl std::fmt::Debug for VideoSend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoSend")
            .field("id", &self.id)
            .field("ssrc", &self.ssrc)
            .finish_non_exhaustive()
    }
}

fn media_track(id: &str, stream: &str, ssrc: u32, codec: VideoCodec) -> MediaStreamTrack {
    let encoding = RTCRtpEncodingParameters {
        rtp_coding_parameters: RTCRtpCodingParameters {
            ssrc: Some(ssrc),
            ..Default::default()
        },
        codec: codec.rtp_codec(),
        ..Default::default()
    };
    MediaStreamTrack::new(
        stream.to_owned(),
        id.to_owned(),
        id.to_owned(),
        RtpCodecKind::Video,
        vec![encoding],
    )
}

impl VideoSend {
    pub fn new(id: &'static str, stream: &'static str) -> Self {
        let ssrc = rand::random::<u32>();
        let codec = VideoCodec::PREFERENCE[0];
        Self {
            track: Arc::new(TrackLocalStaticRTP::new(media_track(
                id, stream, ssrc, codec,
            ))),
            id,
            stream,
            ssrc,
            sequencer: Box::new(rtc::rtp::sequence::new_random_sequencer()),
            declared: Mutex::new(codec),
            packetizer: Mutex::new(None),
        }
    }

    pub fn declared(&self) -> VideoCodec {
        *lock(&self.declared)
    }

    /// Makes the sender's track declare `codec` (same id, stream and SSRC), so that
    /// webrtc-rs binds its interceptors (retransmissions, sender reports) to the codec the
    /// negotiation chose. Only the description changes: writes still go through `track`.
    pub async fn declare(
        &self,
        sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>,
        codec: VideoCodec,
    ) -> Result<(), RtcError> {
        if self.declared() == codec {
            return Ok(());
        }
        let carrier = TrackLocalStaticRTP::new(media_track(self.id, self.stream, self.ssrc, codec));
        sender
            .replace_track(Arc::new(carrier) as Arc<dyn TrackLocal>)
            .await
            .map_err(rtc_err)?;
        *lock(&self.declared) = codec;
        Ok(())
    }

    /// Packetizes one frame of `codec` lasting `samples` (90 kHz) with payload type `pt`.
    pub fn packetize(
        &self,
        codec: VideoCodec,
        pt: u8,
        frame: &Bytes,
        samples: u32,
    ) -> Result<Vec<rtc::rtp::Packet>, RtcError> {
        let mut slot = lock(&self.packetizer);
        if slot.as_ref().is_none_or(|(c, _)| *c != codec) {
            let payloader = codec.rtp_codec().payloader().map_err(rtc_err)?;
            let packetizer = rtc::rtp::packetizer::new_packetizer(
                Instant::now(),
                MTU,
                pt,
                self.ssrc,
                payloader,
                self.sequencer.clone(),
                90_000,
            );
            *slot = Some((codec, Box::new(packetizer)));
        }
        let Some((_, packetizer)) = slot.as_mut() else {
            return Err(RtcError::NotReady("video"));
        };
        let mut packets = packetizer
            .packetize(Instant::now(), frame, samples)
            .map_err(rtc_err)?;
        for p in &mut packets {
            p.header.payload_type = pt;
        }
        Ok(packets)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_of_both_codecs() {
        assert!(VideoCodec::Vp8.is_keyframe(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]));
        assert!(!VideoCodec::Vp8.is_keyframe(&[0x31, 0x02, 0x00]));
        assert!(!VideoCodec::Vp8.is_keyframe(&[]));
        assert!(VideoCodec::H264.is_keyframe(&[0, 0, 0, 1, 0x65, 1]));
    }

    #[test]
    fn codecs_by_mime_in_any_case() {
        assert_eq!(VideoCodec::from_mime("video/vp8"), Some(VideoCodec::Vp8));
        assert_eq!(VideoCodec::from_mime("video/H264"), Some(VideoCodec::H264));
        assert_eq!(VideoCodec::from_mime("video/VP9"), None);
    }

    #[test]
    fn a_codec_change_keeps_the_sequence_going() {
        let send = VideoSend::new("video", "liveloop");
        let frame = Bytes::from(vec![0u8; 3000]);
        let h264 = Bytes::from([&[0u8, 0, 0, 1, 0x65][..], &[7u8; 3000][..]].concat());
        let a = send.packetize(VideoCodec::H264, 102, &h264, 3000).unwrap();
        let b = send.packetize(VideoCodec::Vp8, 96, &frame, 3000).unwrap();
        assert!(a.len() >= 3 && b.len() >= 3);
        let last = a.last().unwrap().header.sequence_number;
        assert_eq!(b[0].header.sequence_number, last.wrapping_add(1));
        assert!(
            b.iter()
                .all(|p| p.header.payload_type == 96 && p.header.ssrc == send.ssrc)
        );
        assert!(b.last().unwrap().header.marker);
    }
}
