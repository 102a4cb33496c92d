#![doc = include_str!("../README.md")]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use liveloop_media::synthetic::read_stamp;
use liveloop_media::{AudioSource, VideoFrame, VideoSource};
use liveloop_proto::rooms::RelayKind;
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions};
use liveloop_signal::rooms::{RoomClient, SignalEvent};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

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
    pub bitrate_bps: u32,
    /// Local UDP addresses for ICE (`127.0.0.1:0` in tests; empty: every interface).
    pub udp_addrs: Vec<String>,
}

/// What the application can ask for.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    SendChat(String),
    SetMuted(bool),
    SetCamera(bool),
    Leave,
}

/// The engine's states (seed 001's `roomState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Connecting,
    Joined,
    Calling,
    Reconnecting,
}

/// What the engine reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EngineEvent {
    State(State),
    /// We are in the room as `id`.
    Joined {
        id: String,
    },
    /// A member's peer connection is up.
    PeerConnected {
        id: String,
    },
    PeerLeft {
        id: String,
    },
    /// A member's name, mute and camera state, from its data channel.
    PeerState {
        id: String,
        name: String,
        muted: bool,
        camera_off: bool,
    },
    Chat {
        from: String,
        text: String,
    },
    /// A decoded video frame from `from` (its stamp, when the sender is the synthetic camera).
    FrameDecoded {
        from: String,
        width: u32,
        height: u32,
        stamp: Option<u32>,
    },
    /// Decoded audio from `from`: 48 kHz mono, one packet's worth (the app plays it).
    AudioDecoded {
        from: String,
        pcm: Vec<f32>,
    },
    Error(String),
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

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// One encoded access unit, shared by every peer.
type Encoded = Bytes;

/// The capture-and-encode thread: pulls frames at the source's rate, encodes once for all peers.
fn start_video(
    mut source: Box<dyn VideoSource>,
    bitrate_bps: u32,
    keyframe: Arc<AtomicBool>,
    camera_on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> broadcast::Sender<Encoded> {
    let (tx, _) = broadcast::channel(8);
    let out = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("video-encode".into())
        .spawn(move || {
            let fps = source.format().fps.max(1.0);
            let mut encoder = match H264Encoder::new(H264Config { bitrate_bps, fps }) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "no video encoder");
                    return;
                }
            };
            let period = Duration::from_secs_f32(1.0 / fps);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // Camera off: nothing is captured or sent; the others learn it from our state.
                if !camera_on.load(Ordering::Relaxed) || out.receiver_count() == 0 {
                    continue;
                }
                let frame = match source.next_frame(now_us()) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "video source failed");
                        continue;
                    }
                };
                if keyframe.swap(false, Ordering::Relaxed) {
                    encoder.request_keyframe();
                }
                match encoder.encode(&frame) {
                    Ok(au) => {
                        let _ = out.send(Bytes::from(au.data));
                    }
                    Err(e) => tracing::warn!(error = %e, "encode failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the video thread");
    }
    tx
}

/// The capture-and-encode thread for audio: 20 ms Opus frames; while muted nothing is sent.
fn start_audio(
    mut source: Box<dyn AudioSource>,
    muted: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> broadcast::Sender<Encoded> {
    let (tx, _) = broadcast::channel(16);
    let out = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("audio-encode".into())
        .spawn(move || {
            let mut encoder = match OpusEncoder::new(OpusConfig::default()) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(error = %e, "no audio encoder");
                    return;
                }
            };
            let mut frame = vec![0.0f32; encoder.frame_len()];
            let period = Duration::from_millis(20);
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                next += period;
                if let Some(wait) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                // Capture goes on while muted (a live microphone must be drained); nothing is sent.
                if let Err(e) = source.read(&mut frame) {
                    tracing::warn!(error = %e, "audio source failed");
                    continue;
                }
                if muted.load(Ordering::Relaxed) || out.receiver_count() == 0 {
                    continue;
                }
                match encoder.encode(&frame) {
                    Ok(packet) => {
                        let _ = out.send(Bytes::from(packet));
                    }
                    Err(e) => tracing::warn!(error = %e, "Opus encode failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the audio thread");
    }
    tx
}

/// A decoder thread for one remote member.
fn start_decoder(
    from: String,
    events: mpsc::Sender<EngineEvent>,
) -> std::sync::mpsc::Sender<Bytes> {
    let (tx, rx) = std::sync::mpsc::channel::<Bytes>();
    let spawned = std::thread::Builder::new()
        .name(format!("decode-{from}"))
        .spawn(move || {
            let Ok(mut decoder) = H264Decoder::new() else {
                return;
            };
            while let Ok(au) = rx.recv() {
                if let Ok(Some(frame)) = decoder.decode(&au) {
                    let stamp = read_stamp(&frame).map(|s| s.number);
                    let VideoFrame { width, height, .. } = frame;
                    if events
                        .blocking_send(EngineEvent::FrameDecoded {
                            from: from.clone(),
                            width,
                            height,
                            stamp,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a decoder thread");
    }
    tx
}

struct Member {
    peer: Arc<Peer>,
    decoder: std::sync::mpsc::Sender<Bytes>,
    /// Behind a mutex only to make `Member` `Sync` (libopus state is not); one task uses it.
    audio: Option<std::sync::Mutex<OpusDecoder>>,
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
    let (client, signal_events) = RoomClient::start(ws_url, room, id.clone())?;
    let (commands, command_rx) = mpsc::channel(64);
    let (events, event_rx) = mpsc::channel(4096);
    let keyframe = Arc::new(AtomicBool::new(true));
    let camera_on = Arc::new(AtomicBool::new(true));
    let stop = Arc::new(AtomicBool::new(false));
    let encoded = start_video(
        video,
        config.bitrate_bps,
        keyframe.clone(),
        camera_on.clone(),
        stop.clone(),
    );
    let muted = Arc::new(AtomicBool::new(false));
    let encoded_audio = start_audio(audio, muted.clone(), stop.clone());
    let run = Runner {
        config,
        me: id,
        client,
        events,
        members: HashMap::new(),
        encoded,
        encoded_audio,
        keyframe,
        camera_on,
        stop,
        muted,
    };
    tokio::spawn(run.run(signal_events, command_rx));
    Ok((EngineHandle { commands }, event_rx))
}

struct Runner {
    config: EngineConfig,
    me: String,
    client: RoomClient,
    events: mpsc::Sender<EngineEvent>,
    members: HashMap<String, Member>,
    encoded: broadcast::Sender<Encoded>,
    encoded_audio: broadcast::Sender<Encoded>,
    keyframe: Arc<AtomicBool>,
    camera_on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    muted: Arc<AtomicBool>,
}

impl Runner {
    async fn emit(&self, event: EngineEvent) {
        let _ = self.events.send(event).await;
    }

    fn state_message(&self) -> String {
        json!({"type": "state", "name": self.config.name, "muted": self.muted.load(Ordering::Relaxed), "cameraOff": !self.camera_on.load(Ordering::Relaxed)}).to_string()
    }

    async fn broadcast_state(&self) {
        let text = self.state_message();
        for m in self.members.values() {
            let _ = m.peer.send_chat(&text).await;
        }
    }

    async fn run(
        mut self,
        mut signal: mpsc::Receiver<SignalEvent>,
        mut commands: mpsc::Receiver<Command>,
    ) {
        let (peer_tx, mut peer_rx) = mpsc::channel::<(String, PeerEvent)>(4096);
        self.emit(EngineEvent::State(State::Connecting)).await;
        loop {
            tokio::select! {
                ev = signal.recv() => match ev {
                    Some(ev) => self.on_signal(ev, &peer_tx).await,
                    None => break,
                },
                ev = peer_rx.recv() => if let Some((from, ev)) = ev {
                    self.on_peer(&from, ev).await;
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Leave) | None => break,
                    Some(cmd) => self.on_command(cmd).await,
                },
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        for (_, m) in self.members.drain() {
            let _ = m.peer.close().await;
        }
        self.client.close().await;
        self.emit(EngineEvent::State(State::Idle)).await;
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SendChat(text) => {
                let msg = json!({"type": "chat", "text": text}).to_string();
                for m in self.members.values() {
                    let _ = m.peer.send_chat(&msg).await;
                }
            }
            Command::SetMuted(muted) => {
                self.muted.store(muted, Ordering::Relaxed);
                self.broadcast_state().await;
            }
            Command::SetCamera(on) => {
                self.camera_on.store(on, Ordering::Relaxed);
                if on {
                    self.keyframe.store(true, Ordering::Relaxed);
                }
                self.broadcast_state().await;
            }
            Command::Leave => {}
        }
    }

    async fn on_signal(&mut self, ev: SignalEvent, peer_tx: &mpsc::Sender<(String, PeerEvent)>) {
        match ev {
            SignalEvent::Joined { id, .. } => {
                self.emit(EngineEvent::Joined { id }).await;
                self.emit(EngineEvent::State(State::Joined)).await;
            }
            SignalEvent::Members(members) => {
                for gone in self
                    .members
                    .keys()
                    .filter(|m| !members.contains(m))
                    .cloned()
                    .collect::<Vec<_>>()
                {
                    if let Some(m) = self.members.remove(&gone) {
                        let _ = m.peer.close().await;
                    }
                    self.emit(EngineEvent::PeerLeft { id: gone }).await;
                }
                let me = self.me.clone();
                for other in members.into_iter().filter(|m| *m != me) {
                    if !self.members.contains_key(&other) {
                        self.add_member(other, peer_tx).await;
                    }
                }
            }
            SignalEvent::Relay {
                kind,
                from,
                payload,
            } => {
                let Some(m) = self.members.get(&from) else {
                    return;
                };
                let result = match (kind, payload) {
                    (RelayKind::Offer | RelayKind::Answer, Some(d)) => {
                        m.peer.handle_description(&d).await
                    }
                    (RelayKind::Candidate, Some(c)) => m.peer.add_candidate(&c).await,
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    self.emit(EngineEvent::Error(format!("signaling from {from}: {e}")))
                        .await;
                }
            }
            SignalEvent::Error { code, message } => {
                self.emit(EngineEvent::Error(format!("{code}: {message}")))
                    .await
            }
            SignalEvent::Reconnecting { .. } => {
                self.emit(EngineEvent::State(State::Reconnecting)).await
            }
            _ => {}
        }
    }

    async fn add_member(&mut self, other: String, peer_tx: &mpsc::Sender<(String, PeerEvent)>) {
        let polite = self.me > other;
        let (tx, mut rx) = mpsc::channel(4096);
        let options = PeerOptions {
            polite,
            udp_addrs: self.config.udp_addrs.clone(),
            ..PeerOptions::default()
        };
        let peer = match Peer::new(options, tx).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.emit(EngineEvent::Error(format!("peer for {other}: {e}")))
                    .await;
                return;
            }
        };
        // Forward this peer's events, tagged, to the runner.
        let (fwd, name) = (peer_tx.clone(), other.clone());
        tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if fwd.send((name.clone(), ev)).await.is_err() {
                    return;
                }
            }
        });
        // Feed it the shared encoder's output once connected.
        let (sender, mut frames) = (peer.clone(), self.encoded.subscribe());
        tokio::spawn(async move {
            loop {
                match frames.recv().await {
                    Ok(au) => {
                        // Before negotiation completes the send fails; those frames are skipped.
                        let _ = sender.send_video(au, Duration::from_micros(33_333)).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let (sender, mut packets) = (peer.clone(), self.encoded_audio.subscribe());
        tokio::spawn(async move {
            loop {
                match packets.recv().await {
                    Ok(p) => {
                        let _ = sender.send_audio(p, Duration::from_millis(20)).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        let decoder = start_decoder(other.clone(), self.events.clone());
        let audio = OpusDecoder::new().ok().map(std::sync::Mutex::new);
        if !polite && let Err(e) = peer.start_offer().await {
            self.emit(EngineEvent::Error(format!("offer to {other}: {e}")))
                .await;
        }
        self.members.insert(
            other,
            Member {
                peer,
                decoder,
                audio,
            },
        );
    }

    async fn on_peer(&mut self, from: &str, ev: PeerEvent) {
        match ev {
            PeerEvent::LocalDescription(d) => {
                let kind = if d.get("type").and_then(Value::as_str) == Some("offer") {
                    RelayKind::Offer
                } else {
                    RelayKind::Answer
                };
                let _ = self.client.relay(kind, from, Some(d)).await;
            }
            PeerEvent::LocalCandidate(c) => {
                let _ = self.client.relay(RelayKind::Candidate, from, Some(c)).await;
            }
            PeerEvent::Connection(ConnectionState::Connected) => {
                // A new receiver needs a keyframe to start decoding the shared stream.
                self.keyframe.store(true, Ordering::Relaxed);
                self.emit(EngineEvent::PeerConnected {
                    id: from.to_owned(),
                })
                .await;
                self.emit(EngineEvent::State(State::Calling)).await;
            }
            PeerEvent::ChatOpen => {
                if let Some(m) = self.members.get(from) {
                    let _ = m.peer.send_chat(&self.state_message()).await;
                }
            }
            PeerEvent::Chat(text) => {
                let Ok(msg) = serde_json::from_str::<Value>(&text) else {
                    return;
                };
                match msg.get("type").and_then(Value::as_str) {
                    Some("chat") => {
                        let text = msg
                            .get("text")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .chars()
                            .take(1000)
                            .collect();
                        self.emit(EngineEvent::Chat {
                            from: from.to_owned(),
                            text,
                        })
                        .await;
                    }
                    Some("state") => {
                        let flag = |k: &str| msg.get(k).and_then(Value::as_bool).unwrap_or(false);
                        let name = msg
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .chars()
                            .take(64)
                            .collect();
                        self.emit(EngineEvent::PeerState {
                            id: from.to_owned(),
                            name,
                            muted: flag("muted"),
                            camera_off: flag("cameraOff"),
                        })
                        .await;
                    }
                    _ => {}
                }
            }
            PeerEvent::Video { access_unit, .. } => {
                if let Some(m) = self.members.get(from) {
                    let _ = m.decoder.send(access_unit);
                }
            }
            PeerEvent::Audio { packet, .. } => {
                let decoded = self
                    .members
                    .get(from)
                    .and_then(|m| m.audio.as_ref())
                    .and_then(|decoder| {
                        let mut pcm = vec![0.0f32; 5760];
                        let mut decoder = decoder
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        let n = decoder.decode(&packet, &mut pcm).ok()?;
                        pcm.truncate(n);
                        Some(pcm)
                    });
                if let Some(pcm) = decoded {
                    self.emit(EngineEvent::AudioDecoded {
                        from: from.to_owned(),
                        pcm,
                    })
                    .await;
                }
            }
            PeerEvent::KeyframeRequested => self.keyframe.store(true, Ordering::Relaxed),
            _ => {}
        }
    }
}
