//! The driver's public types: errors, options, connection states and the events a peer
//! reports.

use bytes::Bytes;

use crate::video::VideoCodec;

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
    /// The data channel holds [`crate::DATA_CHANNEL_SEND_LIMIT`] bytes the remote has not
    /// acknowledged: the message was not sent.
    #[error("the other side is not keeping up with messages; this one was not sent")]
    SendBufferFull,
}

pub(crate) fn rtc_err(e: impl std::fmt::Display) -> RtcError {
    RtcError::WebRtc(e.to_string())
}

/// One ICE server (STUN or TURN).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IceServer {
    pub urls: Vec<String>,
    pub username: String,
    pub credential: String,
}

impl IceServer {
    /// Whether any of its URLs is a TURN relay (`turn:` or `turns:`).
    #[must_use]
    pub fn is_turn(&self) -> bool {
        self.urls
            .iter()
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }
}

/// How to build a peer.
#[derive(Debug, Clone, Default)]
pub struct PeerOptions {
    pub ice_servers: Vec<IceServer>,
    /// The polite side yields on offer collisions (perfect negotiation).
    pub polite: bool,
    /// Addresses to gather host candidates on; empty means `0.0.0.0:0` (every interface).
    pub udp_addrs: Vec<String>,
    /// Relay candidates only (`iceTransportPolicy: "relay"`): the other side never learns
    /// this computer's addresses, only the TURN server's.
    pub relay_only: bool,
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
