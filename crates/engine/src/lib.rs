#![doc = include_str!("../README.md")]

pub mod echo;
mod media;
pub mod meter;
mod netwatch;
pub mod recording;
mod runner;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use liveloop_media::synthetic::Stamp;
use liveloop_media::{AudioSource, VideoFrame, VideoSource};
pub use liveloop_signal::matchmaking::Matchmaker;
use liveloop_signal::session::{RandomSession, RoomSession, Signaling};
use tokio::sync::mpsc;

pub use liveloop_rtc::IceServer;
pub use media::now_ms32;
pub use stats::{CallStats, PeerReport};

/// Errors the engine reports to its caller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error("signaling: {0}")]
    Signal(#[from] liveloop_signal::SignalError),
    #[error("the engine has stopped")]
    Stopped,
}

/// How to take part in calls.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Display name sent to the others.
    pub name: String,
    /// Avatar as a data URL (the matchmaking dialect's `userImage`), or empty.
    pub image: String,
    pub bitrate_bps: u32,
    /// Local UDP addresses for ICE (`127.0.0.1:0` in tests; empty: every interface).
    pub udp_addrs: Vec<String>,
    /// STUN and TURN servers.
    pub ice_servers: Vec<liveloop_rtc::IceServer>,
    /// Relay candidates only (the TURN servers'): the other side never learns our addresses.
    pub relay_only: bool,
    /// How often [`EngineEvent::Stats`] is reported; `None`: never.
    pub stats_interval: Option<Duration>,
    /// Sees every captured frame before it is encoded (the self-view).
    pub local_preview: Option<FrameTap>,
    /// Hears every 20 ms of our own microphone that is sent (nothing while muted): the
    /// recorder's own voice.
    pub local_audio: Option<AudioTap>,
    /// Writes a frame-number and capture-time stamp into every frame sent (the synthetic
    /// camera's marks), so a frame that comes back (an echo peer) tells its round trip.
    pub stamp_outgoing: bool,
    /// The microphone's echo cancellation, noise suppression and gain
    /// (`liveloop_media::processing`). Off here until the synthetic test sources are checked
    /// against it (issue 19); changed in a call with [`Command::SetAudioProcessing`].
    pub audio_processing: liveloop_media::processing::ProcessingSettings,
}

/// A callback that sees frames on a media thread; it must return quickly.
#[derive(Clone)]
pub struct FrameTap(pub Arc<dyn Fn(&VideoFrame) + Send + Sync>);

impl std::fmt::Debug for FrameTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FrameTap")
    }
}

/// A callback that hears 20 ms of 48 kHz mono audio on a media thread; it must return quickly.
#[derive(Clone)]
pub struct AudioTap(pub Arc<AudioTapFn>);

/// What an [`AudioTap`] calls.
pub type AudioTapFn = dyn Fn(&[f32]) + Send + Sync;

impl std::fmt::Debug for AudioTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AudioTap")
    }
}

/// Whether private mode (relay candidates only) holds for a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Privacy {
    /// Not asked for: every kind of candidate.
    Off,
    /// Relay candidates only: the other side never learns this computer's addresses.
    On,
    /// Asked for, but the servers offer no TURN relay, so it cannot hold.
    Unavailable,
}

impl Privacy {
    /// What private mode comes to with `servers`.
    #[must_use]
    pub fn of(wanted: bool, servers: &[liveloop_rtc::IceServer]) -> Self {
        match (wanted, servers.iter().any(liveloop_rtc::IceServer::is_turn)) {
            (false, _) => Self::Off,
            (true, true) => Self::On,
            (true, false) => Self::Unavailable,
        }
    }

    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::On => "on",
            Self::Unavailable => "unavailable",
        }
    }
}

/// The ICE servers of a signaling server's configuration (`RTC_CONFIG_JSON`, or what its
/// `/api/rtc-config` answered), and whether it asks for relay candidates only
/// (`iceTransportPolicy: "relay"`).
#[must_use]
pub fn ice_servers_of(
    config: &liveloop_proto::rtc_config::RtcConfig,
) -> (Vec<liveloop_rtc::IceServer>, bool) {
    let relay_only = config.ice_transport_policy.as_deref() == Some("relay");
    let servers = config
        .ice_servers
        .iter()
        .map(|s| liveloop_rtc::IceServer {
            urls: s.urls.as_slice().to_vec(),
            username: s.username.clone().unwrap_or_default(),
            credential: s.credential.clone().unwrap_or_default(),
        })
        .collect();
    (servers, relay_only)
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            name: "Guest".into(),
            image: String::new(),
            bitrate_bps: 1_500_000,
            udp_addrs: Vec::new(),
            ice_servers: Vec::new(),
            relay_only: false,
            stats_interval: Some(Duration::from_secs(1)),
            local_preview: None,
            local_audio: None,
            stamp_outgoing: false,
            audio_processing: liveloop_media::processing::ProcessingSettings::OFF,
        }
    }
}

/// What the application can ask for.
#[non_exhaustive]
pub enum Command {
    SendChat(String),
    SetMuted(bool),
    SetCamera(bool),
    /// Switch the microphone's echo cancellation, noise suppression and gain; takes effect
    /// at the next 20 ms frame (the echo canceller learns again within about a second).
    SetAudioProcessing(liveloop_media::processing::ProcessingSettings),
    /// Use another camera (or file); the others get a keyframe from it at once.
    SetVideoSource(Box<dyn VideoSource>),
    /// Use another microphone (or file).
    SetAudioSource(Box<dyn AudioSource>),
    /// Share this screen or window (a `liveloop_media::device::screen::ScreenSource`, or any
    /// source) as a second video stream beside the camera, replacing any share in progress.
    ShareScreen(Box<dyn VideoSource>),
    /// Stop sharing.
    StopScreenShare,
    /// Hang up on one participant (`Some`) or on everyone (`None`), staying in the room. In
    /// random chat, the same as [`Command::Stop`].
    HangUp(Option<String>),
    /// Random chat: leave this partner for a new one.
    Next,
    /// Random chat: end the call (the partner is told) and stop searching.
    Stop,
    /// Leave the room or the matchmaker; the engine ends with [`State::Idle`].
    Leave,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::SendChat(t) => write!(f, "SendChat({t:?})"),
            Self::SetMuted(m) => write!(f, "SetMuted({m})"),
            Self::SetCamera(c) => write!(f, "SetCamera({c})"),
            Self::SetAudioProcessing(p) => write!(f, "SetAudioProcessing({p:?})"),
            Self::SetVideoSource(s) => write!(f, "SetVideoSource({:?})", s.format()),
            Self::SetAudioSource(_) => f.write_str("SetAudioSource"),
            Self::ShareScreen(s) => write!(f, "ShareScreen({:?})", s.format()),
            Self::StopScreenShare => f.write_str("StopScreenShare"),
            Self::HangUp(who) => write!(f, "HangUp({who:?})"),
            Self::Next => f.write_str("Next"),
            Self::Stop => f.write_str("Stop"),
            Self::Leave => f.write_str("Leave"),
        }
    }
}

/// The engine's states (seed 001's `roomState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    /// Signing in, or (random chat) waiting for a partner.
    Connecting,
    /// In the room (or connected to the matchmaker) with no call up.
    Joined,
    /// At least one peer connection is up.
    Calling,
    Reconnecting,
}

impl State {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::Connecting => "connecting",
            Self::Joined => "joined",
            Self::Calling => "calling",
            Self::Reconnecting => "reconnecting",
        }
    }
}

/// What kind of trouble an [`EngineEvent::Error`] reports, for the UI to pick its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A camera or microphone is missing or failed.
    NoDevice,
    /// The signaling server cannot be reached (the engine keeps retrying).
    ServerUnreachable,
    RoomFull,
    /// A participant's connection failed for good.
    PeerGone,
    /// The server refused a message, or a participant sent one we could not use.
    Signaling,
    /// An encoder or decoder failed.
    Media,
    /// A participant has no video codec in common with us: audio and chat only.
    NoVideoCodec,
}

impl ErrorKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::NoDevice => "no_device",
            Self::ServerUnreachable => "server_unreachable",
            Self::RoomFull => "room_full",
            Self::PeerGone => "peer_gone",
            Self::Signaling => "signaling",
            Self::Media => "media",
            Self::NoVideoCodec => "no_video_codec",
        }
    }
}

/// What the engine reports.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum EngineEvent {
    State(State),
    /// In the room as `id` (empty for the matchmaker, which names no one).
    Joined {
        id: String,
    },
    /// Random chat: connected again after the matchmaker was lost, to the one at `url`
    /// (another one when the one in use went away), and looking for a partner there.
    Matchmaker {
        url: String,
    },
    /// A participant to call (a room member, or a random-chat partner).
    PeerJoined {
        id: String,
        name: Option<String>,
    },
    /// A participant's peer connection is up.
    PeerConnected {
        id: String,
    },
    /// A participant left or hung up; its call is over.
    PeerLeft {
        id: String,
    },
    /// A participant's name, mute, camera and screen-share state, from its data channel.
    PeerState {
        id: String,
        name: String,
        muted: bool,
        camera_off: bool,
        /// Sharing a screen: its frames arrive from [`screen_stream_id`]`(id)`.
        screen: bool,
    },
    /// Our own screen share started or stopped; `reason` says why it stopped when we did not
    /// ask (the shared window closed, the capture failed).
    ScreenShare {
        sharing: bool,
        reason: Option<String>,
    },
    Chat {
        from: String,
        text: String,
    },
    /// A decoded video frame from `from`, released for display once the audio of the same
    /// moment plays (lip sync), with its stamp when the sender is the synthetic camera, when it
    /// was decoded and when it was released (wall-clock ms, 32 bits like the stamp).
    FrameDecoded {
        from: String,
        frame: Arc<VideoFrame>,
        stamp: Option<Stamp>,
        decoded_ms: u32,
        shown_ms: u32,
    },
    /// 20 ms of `from`'s audio at its playout time (48 kHz mono), after the jitter buffer;
    /// silence when nothing is coming.
    AudioPlayout {
        from: String,
        pcm: Vec<f32>,
    },
    /// The active speaker changed (`None`: nobody is speaking): the loudest participant
    /// over the last 300 ms, above a whisper (`core::speaker`).
    Speaking {
        id: Option<String>,
    },
    /// The microphone's processing now in effect on the capture thread (at the start, and
    /// after each [`Command::SetAudioProcessing`] reached it).
    AudioProcessing(liveloop_media::processing::ProcessingSettings),
    /// Someone speaks into the muted microphone (`core::muted_speech`): time for "You are
    /// muted".
    SpeakingWhileMuted,
    /// This computer's network changed under the call (an address gone, the default route
    /// moved): ICE restarted with `restarted` participants (`core::netwatch`).
    NetworkChanged {
        restarted: usize,
    },
    /// Every participant's call figures.
    Stats(CallStats),
    Error {
        kind: ErrorKind,
        message: String,
    },
}

impl EngineEvent {
    /// The event as one JSON object with an `event` field, as the CLI prints it and the app's
    /// UI receives it. Audio has no JSON form (`None`); a frame gives its size, stamp and
    /// latencies, not its pixels.
    #[must_use]
    pub fn to_json(&self) -> Option<serde_json::Value> {
        use serde_json::json;
        Some(match self {
            Self::State(s) => json!({"event": "state", "state": s.as_str()}),
            Self::Joined { id } => json!({"event": "joined", "id": id}),
            Self::Matchmaker { url } => json!({"event": "matchmaker", "url": url, "moved": true}),
            Self::PeerJoined { id, name } => {
                json!({"event": "peer_joined", "id": id, "name": name})
            }
            Self::PeerConnected { id } => json!({"event": "peer_connected", "id": id}),
            Self::NetworkChanged { restarted } => {
                json!({"event": "network_changed", "restarted": restarted})
            }
            Self::PeerLeft { id } => json!({"event": "peer_left", "id": id}),
            Self::PeerState {
                id,
                name,
                muted,
                camera_off,
                screen,
            } => json!({
                "event": "peer_state", "id": id, "name": name, "muted": muted,
                "cameraOff": camera_off, "screen": screen,
            }),
            Self::ScreenShare { sharing, reason } => {
                json!({"event": "screen_share", "sharing": sharing, "reason": reason})
            }
            Self::Chat { from, text } => json!({"event": "chat", "from": from, "text": text}),
            Self::FrameDecoded {
                from,
                frame,
                stamp,
                decoded_ms,
                shown_ms,
            } => {
                let latency = stamp.map(|s| decoded_ms.wrapping_sub(s.capture_ms));
                let shown = stamp.map(|s| shown_ms.wrapping_sub(s.capture_ms));
                json!({
                    "event": "frame", "from": from, "width": frame.width, "height": frame.height,
                    "stamp": stamp.map(|s| s.number), "latency_ms": latency,
                    "shown_latency_ms": shown, "decoded_ms": decoded_ms,
                })
            }
            Self::Stats(stats) => {
                // When (Unix ms): a log of stats lines can be put on a time line.
                let at_ms = media::now_us() / 1000;
                json!({"event": "stats", "at_ms": at_ms, "peers": stats.peers, "send": stats.send})
            }
            Self::Speaking { id } => json!({"event": "speaking", "id": id}),
            Self::AudioProcessing(p) => json!({
                "event": "audio_processing", "echoCancellation": p.echo_cancellation,
                "noiseSuppression": p.noise_suppression, "autoGain": p.auto_gain,
            }),
            Self::SpeakingWhileMuted => json!({"event": "speaking_while_muted"}),
            Self::Error { kind, message } => {
                json!({"event": "error", "kind": kind.as_str(), "message": message})
            }
            Self::AudioPlayout { .. } => return None,
        })
    }
}

/// The `from` of a participant's screen-share frames in [`EngineEvent::FrameDecoded`]: its id
/// and `#screen` (`#` never appears in ids), so every consumer keyed by `from` shows it as a
/// tile of its own.
#[must_use]
pub fn screen_stream_id(id: &str) -> String {
    format!("{id}#screen")
}

/// The participant a `from` of [`EngineEvent::FrameDecoded`] belongs to, and whether it is
/// their screen share.
#[must_use]
pub fn split_stream_id(from: &str) -> (&str, bool) {
    match from.strip_suffix("#screen") {
        Some(id) => (id, true),
        None => (from, false),
    }
}

/// The handle the application holds.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    commands: mpsc::Sender<Command>,
}

impl EngineHandle {
    /// # Errors
    /// [`EngineError::Stopped`] after the engine ended.
    pub async fn send(&self, command: Command) -> Result<(), EngineError> {
        self.commands
            .send(command)
            .await
            .map_err(|_| EngineError::Stopped)
    }
}

/// The call's devices: a camera (or file, or `None` for no camera) and a microphone to send
/// from, and a speaker to play everyone on.
#[derive(Default)]
pub struct Media {
    pub video: Option<Box<dyn VideoSource>>,
    pub audio: Option<Box<dyn AudioSource>>,
    /// Where the call's mix plays, and the playout's clock
    /// ([`liveloop_media::device::audio::Speaker::open`]). `None`: a steady 20 ms clock, and
    /// the audio only as [`EngineEvent::AudioPlayout`].
    pub speaker: Option<liveloop_media::audio::SpeakerFeed>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("video", &self.video.as_ref().map(|v| v.format()))
            .field("audio", &self.audio.is_some())
            .field("speaker", &self.speaker.is_some())
            .finish()
    }
}

/// Joins `room` on the room server at `ws_url` as `id`, sending `video` and `audio`.
///
/// # Errors
/// For an invalid room or id.
pub fn join_room(
    config: EngineConfig,
    ws_url: String,
    room: String,
    id: String,
    video: Box<dyn VideoSource>,
    audio: Box<dyn AudioSource>,
) -> Result<(EngineHandle, mpsc::Receiver<EngineEvent>), EngineError> {
    join_room_with(
        config,
        ws_url,
        room,
        id,
        Media {
            video: Some(video),
            audio: Some(audio),
            speaker: None,
        },
    )
}

/// [`join_room`] with optional devices.
///
/// # Errors
/// For an invalid room or id.
pub fn join_room_with(
    config: EngineConfig,
    ws_url: String,
    room: String,
    id: String,
    media: Media,
) -> Result<(EngineHandle, mpsc::Receiver<EngineEvent>), EngineError> {
    // DTLS certificates made while the signaling connects, not when a peer appears.
    liveloop_rtc::warm_up();
    let (session, events) = RoomSession::start(ws_url, room, id)?;
    Ok(runner::start(
        config,
        Box::new(session),
        events,
        media,
        runner::Mode::Room,
    ))
}

/// Connects to a matchmaking server (`http://host:port`, or the first that answers among
/// those a [`Matchmaker::Chosen`] names) and asks for a partner. When that server goes away,
/// the call ends and the search goes on at the server chosen then
/// ([`EngineEvent::Matchmaker`]).
///
/// # Errors
/// When no server can be reached, or the name or image would be refused.
pub async fn random_chat(
    config: EngineConfig,
    matchmaker: impl Into<Matchmaker>,
    media: Media,
) -> Result<(EngineHandle, mpsc::Receiver<EngineEvent>), EngineError> {
    liveloop_rtc::warm_up();
    let (session, events) =
        RandomSession::connect(matchmaker, config.name.clone(), config.image.clone()).await?;
    session.find_partner().await?;
    Ok(runner::start(
        config,
        Box::new(session),
        events,
        media,
        runner::Mode::Random,
    ))
}
