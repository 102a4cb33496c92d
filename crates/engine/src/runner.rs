//! The session task: one loop owns the signaling session, every peer and the playout clock.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveloop_core::avsync::ClockMap;
use liveloop_core::jitter::{JitterBuffer, Playout};
use liveloop_core::membership::{Failed, Membership, Unlisted};
use liveloop_media::opus::OpusDecoder;
use liveloop_media::{AudioSource, VideoSource};
use liveloop_proto::peer::{MAX_CHAT_CHARS, PeerMessage, PeerState};
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions, VideoCodec};
use liveloop_signal::session::{Outgoing, SessionEvent, Signaling};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::media::{self, DecodeCounters, MediaFlags, ScreenFlags, SyncState, VideoOut};
use crate::stats::{self, CallStats, Snapshot};
use crate::{
    Command, EngineConfig, EngineEvent, EngineHandle, ErrorKind, Media, State, screen_stream_id,
};

/// Samples in one 20 ms frame at 48 kHz.
const FRAME: usize = 960;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Room,
    Random,
}

/// The audio playout state of one participant (one lock: libopus state is not `Sync`).
struct Playback {
    /// Packets with their RTP timestamps (lip sync needs to know what is playing).
    jitter: JitterBuffer<(u32, Bytes)>,
    opus: Option<OpusDecoder>,
}

struct Member {
    peer: Arc<Peer>,
    polite: bool,
    decoder: std::sync::mpsc::Sender<(VideoCodec, u32, Bytes)>,
    /// The decoder of this participant's screen share, started with its first frame.
    screen_decoder: Option<std::sync::mpsc::Sender<(VideoCodec, u32, Bytes)>>,
    /// The codec our video goes to this participant as (from the negotiation), and the two
    /// tasks that feed it camera and screen frames of that codec.
    sending_as: Option<VideoCodec>,
    video_tasks: Vec<JoinHandle<()>>,
    /// What this participant's last state message said about sharing: frames that trail the
    /// end of a share are dropped instead of starting a new decoder.
    screen_on: bool,
    screen_keyframe_needed: Arc<AtomicBool>,
    counters: Arc<DecodeCounters>,
    sync: Arc<SyncState>,
    keyframe_needed: Arc<AtomicBool>,
    video_losses: AtomicU64,
    playback: Mutex<Playback>,
    tasks: Vec<JoinHandle<()>>,
    last: (Instant, Snapshot),
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn start(
    config: EngineConfig,
    session: Box<dyn Signaling>,
    session_events: mpsc::Receiver<SessionEvent>,
    media_in: Media,
    mode: Mode,
) -> (EngineHandle, mpsc::Receiver<EngineEvent>) {
    let (commands, command_rx) = mpsc::channel(64);
    let (events, event_rx) = mpsc::channel(4096);
    let flags = Arc::new(MediaFlags::default());
    flags.keyframe.request_all();
    flags
        .camera_on
        .store(media_in.video.is_some(), Ordering::Relaxed);
    flags
        .muted
        .store(media_in.audio.is_none(), Ordering::Relaxed);
    let (screen_ended_tx, screen_ended_rx) = mpsc::unbounded_channel();
    let (video_swap, video_swap_rx) = std::sync::mpsc::channel();
    let (audio_swap, audio_swap_rx) = std::sync::mpsc::channel();
    let has_video = media_in.video.is_some();
    let encoded = media::start_video(
        media_in.video,
        video_swap_rx,
        config.bitrate_bps,
        config.local_preview.clone(),
        config.stamp_outgoing,
        flags.clone(),
        events.clone(),
    );
    let encoded_audio = media::start_audio(
        media_in.audio,
        audio_swap_rx,
        flags.clone(),
        events.clone(),
        config.local_audio.clone(),
    );
    let runner = Runner {
        config,
        mode,
        me: String::new(),
        ready: false,
        searching: mode == Mode::Random,
        reconnecting: false,
        session,
        events,
        members: BTreeMap::new(),
        membership: Membership::new(),
        encoded,
        encoded_audio,
        flags,
        video_swap,
        audio_swap,
        has_video,
        state: State::Idle,
        epoch: Instant::now(),
        screen: None,
        screen_generation: 0,
        encoded_screen: VideoOut::new(),
        screen_ended: screen_ended_tx,
    };
    tokio::spawn(runner.run(session_events, command_rx, screen_ended_rx));
    (EngineHandle { commands }, event_rx)
}

struct Runner {
    config: EngineConfig,
    mode: Mode,
    me: String,
    ready: bool,
    /// Random chat: queued for a partner.
    searching: bool,
    reconnecting: bool,
    session: Box<dyn Signaling>,
    events: mpsc::Sender<EngineEvent>,
    members: BTreeMap<String, Member>,
    /// Who is present, absent or gone, and their grace timers.
    membership: Membership,
    encoded: VideoOut,
    encoded_audio: broadcast::Sender<Bytes>,
    flags: Arc<MediaFlags>,
    video_swap: std::sync::mpsc::Sender<Box<dyn VideoSource>>,
    audio_swap: std::sync::mpsc::Sender<Box<dyn AudioSource>>,
    has_video: bool,
    state: State,
    epoch: Instant,
    /// Our screen share in progress, and which one it is (a share that ended by itself
    /// reports its generation, so a late report never ends a newer share).
    screen: Option<Arc<ScreenFlags>>,
    screen_generation: u64,
    encoded_screen: VideoOut,
    screen_ended: mpsc::UnboundedSender<(u64, String)>,
}

impl Runner {
    async fn emit(&mut self, event: EngineEvent) {
        let _ = self.events.send(event).await;
    }

    async fn error(&mut self, kind: ErrorKind, message: String) {
        self.emit(EngineEvent::Error { kind, message }).await;
    }

    /// Reports the state when it changed.
    async fn update_state(&mut self) {
        let state = if self.reconnecting {
            State::Reconnecting
        } else if self.membership.any_connected() {
            State::Calling
        } else if !self.ready || (self.mode == Mode::Random && self.searching) {
            State::Connecting
        } else {
            State::Joined
        };
        if state != self.state {
            self.state = state;
            self.emit(EngineEvent::State(state)).await;
        }
    }

    fn state_message(&self) -> String {
        PeerMessage::State(PeerState {
            name: self.config.name.clone(),
            muted: self.flags.muted.load(Ordering::Relaxed),
            camera_off: !self.flags.camera_on.load(Ordering::Relaxed),
            screen: self.screen.is_some(),
        })
        .to_json()
    }

    async fn broadcast_state(&self) {
        let text = self.state_message();
        for m in self.members.values() {
            let _ = m.peer.send_chat(&text).await;
        }
    }

    async fn run(
        mut self,
        mut session: mpsc::Receiver<SessionEvent>,
        mut commands: mpsc::Receiver<Command>,
        mut screen_ended: mpsc::UnboundedReceiver<(u64, String)>,
    ) {
        let (peer_tx, mut peer_rx) = mpsc::channel::<(String, PeerEvent)>(4096);
        let mut playout = tokio::time::interval(Duration::from_millis(20));
        let mut stats = tokio::time::interval(
            self.config
                .stats_interval
                .unwrap_or(Duration::from_secs(3600)),
        );
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        self.update_state().await;
        loop {
            tokio::select! {
                ev = session.recv() => match ev {
                    Some(ev) => self.on_session(ev, &peer_tx).await,
                    None => break,
                },
                ev = peer_rx.recv() => if let Some((from, ev)) = ev {
                    self.on_peer(&from, ev).await;
                },
                cmd = commands.recv() => match cmd {
                    Some(Command::Leave) | None => break,
                    Some(cmd) => self.on_command(cmd).await,
                },
                _ = playout.tick() => self.play_out().await,
                _ = stats.tick(), if self.config.stats_interval.is_some() => self.report_stats().await,
                _ = housekeeping.tick() => self.expire_absent().await,
                Some((generation, reason)) = screen_ended.recv() => {
                    if generation == self.screen_generation && self.screen.take().is_some() {
                        self.broadcast_state().await;
                        self.emit(EngineEvent::ScreenShare { sharing: false, reason: Some(reason) })
                            .await;
                    }
                }
            }
        }
        self.flags.stop.store(true, Ordering::Relaxed);
        if let Some(screen) = self.screen.take() {
            screen.stop.store(true, Ordering::Relaxed);
        }
        let bye = PeerMessage::Bye.to_json();
        for m in self.members.values() {
            let _ = m.peer.send_chat(&bye).await;
        }
        if !self.members.is_empty() {
            // Let the goodbyes leave before the connections close.
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id).await;
        }
        self.session.close().await;
        self.ready = false;
        self.state = State::Idle;
        self.emit(EngineEvent::State(State::Idle)).await;
    }

    async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::SendChat(text) => {
                let count = text.chars().count();
                if count == 0 || count > MAX_CHAT_CHARS {
                    self.error(
                        ErrorKind::Signaling,
                        "a chat message has 1 to 1000 characters".into(),
                    )
                    .await;
                    return;
                }
                if self.mode == Mode::Random {
                    if let Err(e) = self.session.send_chat(&text).await {
                        self.error(ErrorKind::Signaling, format!("chat: {e}")).await;
                    }
                    return;
                }
                let msg = PeerMessage::Chat { text }.to_json();
                for m in self.members.values() {
                    let _ = m.peer.send_chat(&msg).await;
                }
            }
            Command::SetMuted(muted) => {
                self.flags.muted.store(muted, Ordering::Relaxed);
                self.broadcast_state().await;
            }
            Command::SetCamera(on) => {
                if on && !self.has_video {
                    self.error(ErrorKind::NoDevice, "no camera to turn on".into())
                        .await;
                    return;
                }
                self.flags.camera_on.store(on, Ordering::Relaxed);
                if on {
                    self.flags.keyframe.request_all();
                }
                self.broadcast_state().await;
            }
            Command::SetVideoSource(source) => {
                self.has_video = true;
                let _ = self.video_swap.send(source);
            }
            Command::SetAudioSource(source) => {
                let _ = self.audio_swap.send(source);
            }
            Command::ShareScreen(source) => {
                if let Some(old) = self.screen.take() {
                    old.stop.store(true, Ordering::Relaxed);
                }
                self.screen_generation += 1;
                let flags = Arc::new(ScreenFlags::default());
                flags.keyframe.request_all();
                media::start_screen(
                    source,
                    flags.clone(),
                    self.encoded_screen.clone(),
                    self.screen_ended.clone(),
                    self.screen_generation,
                );
                self.screen = Some(flags);
                self.broadcast_state().await;
                self.emit(EngineEvent::ScreenShare {
                    sharing: true,
                    reason: None,
                })
                .await;
            }
            Command::StopScreenShare => {
                if let Some(old) = self.screen.take() {
                    old.stop.store(true, Ordering::Relaxed);
                    self.broadcast_state().await;
                    self.emit(EngineEvent::ScreenShare {
                        sharing: false,
                        reason: None,
                    })
                    .await;
                }
            }
            Command::HangUp(who) if self.mode == Mode::Room => {
                let ids: Vec<String> = match who {
                    Some(id) => vec![id],
                    None => self.members.keys().cloned().collect(),
                };
                for id in ids {
                    if self.members.contains_key(&id) {
                        let _ = self.session.send(&id, Outgoing::Hangup).await;
                        self.remove_member(&id).await;
                        self.emit(EngineEvent::PeerLeft { id }).await;
                    }
                }
                self.update_state().await;
            }
            Command::HangUp(_) | Command::Stop => {
                if self.mode == Mode::Room {
                    self.error(ErrorKind::Signaling, "Stop is for random chat".into())
                        .await;
                    return;
                }
                if let Err(e) = self.session.end_call().await {
                    self.error(ErrorKind::Signaling, format!("stop: {e}")).await;
                }
                self.searching = false;
                self.drop_all_members().await;
                self.update_state().await;
            }
            Command::Next => {
                if self.mode == Mode::Room {
                    self.error(ErrorKind::Signaling, "Next is for random chat".into())
                        .await;
                    return;
                }
                self.drop_all_members().await;
                self.searching = true;
                if let Err(e) = self.session.find_partner().await {
                    self.error(ErrorKind::Signaling, format!("next: {e}")).await;
                }
                self.update_state().await;
            }
            Command::Leave => {}
        }
    }

    async fn drop_all_members(&mut self) {
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.remove_member(&id).await;
            self.emit(EngineEvent::PeerLeft { id }).await;
        }
    }

    async fn on_session(&mut self, ev: SessionEvent, peer_tx: &mpsc::Sender<(String, PeerEvent)>) {
        match ev {
            SessionEvent::Ready { id } => {
                self.me.clone_from(&id);
                self.ready = true;
                self.reconnecting = false;
                self.emit(EngineEvent::Joined { id }).await;
            }
            SessionEvent::PeerJoined { id, name, polite } => {
                if self.mode == Mode::Random {
                    // A new partner replaces any other (the server ended that call).
                    self.drop_all_members().await;
                    self.searching = false;
                }
                self.emit(EngineEvent::PeerJoined {
                    id: id.clone(),
                    name,
                })
                .await;
                self.add_member(id, polite, !polite, peer_tx).await;
            }
            // A connected participant keeps its call for a grace (`core::membership`).
            SessionEvent::PeerLeft { id }
                if self.mode == Mode::Room
                    && self.membership.unlisted(&id, self.epoch.elapsed()) == Unlisted::Grace => {}
            SessionEvent::PeerLeft { id } | SessionEvent::HungUp { id } => {
                if self.members.contains_key(&id) {
                    self.remove_member(&id).await;
                    self.emit(EngineEvent::PeerLeft { id }).await;
                }
                if self.mode == Mode::Random {
                    // The server queued us again.
                    self.searching = true;
                }
            }
            SessionEvent::Description { from, payload } => {
                let is_offer = payload.get("type").and_then(|t| t.as_str()) == Some("offer");
                if !self.members.contains_key(&from)
                    && is_offer
                    && self.mode == Mode::Room
                    && self.ready
                {
                    // A member calls us again after a hang-up (a browser's callPeer): take the
                    // call, with the politeness both sides derive from the ids. The server
                    // relays only between members of our room.
                    let polite = self.me > from;
                    self.emit(EngineEvent::PeerJoined {
                        id: from.clone(),
                        name: None,
                    })
                    .await;
                    self.add_member(from.clone(), polite, false, peer_tx).await;
                }
                let Some(m) = self.members.get(&from) else {
                    return;
                };
                if let Err(e) = m.peer.handle_description(&payload).await {
                    self.error(
                        ErrorKind::Signaling,
                        format!("description from {from}: {e}"),
                    )
                    .await;
                }
            }
            SessionEvent::Candidate { from, payload } => {
                let Some(m) = self.members.get(&from) else {
                    return;
                };
                if let Err(e) = m.peer.add_candidate(&payload).await {
                    self.error(ErrorKind::Signaling, format!("candidate from {from}: {e}"))
                        .await;
                }
            }
            SessionEvent::Chat { from, text } => {
                self.emit(EngineEvent::Chat { from, text }).await;
            }
            SessionEvent::Error { code, message } => {
                let kind = if code == "room_full" {
                    ErrorKind::RoomFull
                } else {
                    ErrorKind::Signaling
                };
                self.error(kind, format!("{code}: {message}")).await;
            }
            SessionEvent::Reconnecting { attempt, delay } => {
                self.reconnecting = true;
                if attempt == 1 {
                    self.error(
                        ErrorKind::ServerUnreachable,
                        format!(
                            "lost the signaling server; calls go on, retrying every {} s at most",
                            delay.as_secs().max(1)
                        ),
                    )
                    .await;
                }
            }
            _ => {}
        }
        self.update_state().await;
    }

    async fn add_member(
        &mut self,
        other: String,
        polite: bool,
        make_offer: bool,
        peer_tx: &mpsc::Sender<(String, PeerEvent)>,
    ) {
        // Listed again (after a server restart or a reconnect): the call never stopped.
        if !self.membership.join(&other) && self.members.contains_key(&other) {
            return;
        }
        let (tx, mut rx) = mpsc::channel(4096);
        let options = PeerOptions {
            polite,
            udp_addrs: self.config.udp_addrs.clone(),
            ice_servers: self.config.ice_servers.clone(),
        };
        let peer = match Peer::new(options, tx).await {
            Ok(p) => Arc::new(p),
            Err(e) => {
                self.membership.remove(&other);
                self.error(ErrorKind::PeerGone, format!("peer for {other}: {e}"))
                    .await;
                return;
            }
        };
        let mut tasks = Vec::new();
        // Forward this peer's events, tagged, to the loop.
        let (fwd, name) = (peer_tx.clone(), other.clone());
        tasks.push(tokio::spawn(async move {
            while let Some(ev) = rx.recv().await {
                if fwd.send((name.clone(), ev)).await.is_err() {
                    return;
                }
            }
        }));
        // Audio from the shared encoder (sends fail, harmlessly, before negotiation); video
        // once the negotiation said in which codec (`PeerEvent::SendVideoAs`).
        let (sender, mut packets) = (peer.clone(), self.encoded_audio.subscribe());
        tasks.push(tokio::spawn(async move {
            loop {
                match packets.recv().await {
                    Ok(p) => {
                        let _ = sender.send_audio(p, Duration::from_millis(20)).await;
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        }));
        let counters = Arc::new(DecodeCounters::default());
        let keyframe_needed = Arc::new(AtomicBool::new(false));
        let sync = Arc::new(SyncState::default());
        let decoder = media::start_decoder(
            other.clone(),
            self.events.clone(),
            counters.clone(),
            keyframe_needed.clone(),
            sync.clone(),
        );
        if make_offer && let Err(e) = peer.start_offer().await {
            self.error(ErrorKind::Signaling, format!("offer to {other}: {e}"))
                .await;
        }
        self.members.insert(
            other,
            Member {
                peer,
                polite,
                decoder,
                screen_decoder: None,
                sending_as: None,
                video_tasks: Vec::new(),
                screen_on: false,
                screen_keyframe_needed: Arc::new(AtomicBool::new(false)),
                counters,
                sync,
                keyframe_needed,
                video_losses: AtomicU64::new(0),
                playback: Mutex::new(Playback {
                    jitter: JitterBuffer::new(48_000, Duration::from_millis(20)),
                    opus: OpusDecoder::new().ok(),
                }),
                tasks,
                last: (Instant::now(), Snapshot::default()),
            },
        );
    }

    /// Closes a participant's connection and ends every task and thread it had.
    async fn remove_member(&mut self, id: &str) {
        self.membership.remove(id);
        if let Some(m) = self.members.remove(id) {
            for task in m.tasks.iter().chain(&m.video_tasks) {
                task.abort();
            }
            let _ = m.peer.close().await;
            // Dropping `m` drops the decoder's sender: its thread ends.
        }
    }

    async fn on_peer(&mut self, from: &str, ev: PeerEvent) {
        match ev {
            PeerEvent::LocalDescription(d) => {
                let _ = self.session.send(from, Outgoing::Description(d)).await;
            }
            PeerEvent::LocalCandidate(c) => {
                let _ = self.session.send(from, Outgoing::Candidate(c)).await;
            }
            PeerEvent::Connection(ConnectionState::Connected) => {
                self.membership.connected(from);
                // A new receiver needs a keyframe to start decoding the shared streams.
                if let Some(codec) = self.members.get(from).and_then(|m| m.sending_as) {
                    self.flags.keyframe.request(codec);
                    if let Some(screen) = &self.screen {
                        screen.keyframe.request(codec);
                    }
                }
                self.emit(EngineEvent::PeerConnected {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerEvent::Connection(ConnectionState::Disconnected) => {
                // Often a short outage: ICE comes back by itself. An absent participant whose
                // connection stays interrupted is let go by `expire_absent`.
                self.membership.disconnected(from, self.epoch.elapsed());
            }
            PeerEvent::Connection(ConnectionState::Failed | ConnectionState::Closed)
                if self.membership.closed_is_gone(from) =>
            {
                // Gone from the room and now from the network too: the call is over.
                self.remove_member(from).await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerEvent::Connection(ConnectionState::Failed) => self.on_failed(from).await,
            PeerEvent::ChatOpen => {
                if let Some(m) = self.members.get(from) {
                    let _ = m.peer.send_chat(&self.state_message()).await;
                }
            }
            PeerEvent::Chat(text) => self.on_data(from, &text).await,
            PeerEvent::Video {
                codec,
                access_unit,
                rtp_timestamp,
            } => {
                if let Some(m) = self.members.get(from) {
                    let _ = m.decoder.send((codec, rtp_timestamp, access_unit));
                }
            }
            PeerEvent::SendVideoAs(codec) => self.send_video_as(from, codec),
            PeerEvent::Screen {
                codec,
                access_unit,
                rtp_timestamp,
            } => {
                let events = self.events.clone();
                if let Some(m) = self.members.get_mut(from).filter(|m| m.screen_on) {
                    let decoder = m.screen_decoder.get_or_insert_with(|| {
                        media::start_decoder(
                            screen_stream_id(from),
                            events,
                            Arc::new(DecodeCounters::default()),
                            m.screen_keyframe_needed.clone(),
                            Arc::new(SyncState::default()),
                        )
                    });
                    let _ = decoder.send((codec, rtp_timestamp, access_unit));
                }
            }
            PeerEvent::ScreenKeyframeRequested => {
                if let (Some(screen), Some(codec)) = (
                    &self.screen,
                    self.members.get(from).and_then(|m| m.sending_as),
                ) {
                    screen.keyframe.request(codec);
                }
            }
            PeerEvent::SenderReport {
                video,
                ntp_time,
                rtp_timestamp,
            } => {
                if let Some(m) = self.members.get(from) {
                    let (slot, rate) = if video {
                        (&m.sync.video_map, 90_000)
                    } else {
                        (&m.sync.audio_map, 48_000)
                    };
                    *lock(slot) = Some(ClockMap::from_sender_report(ntp_time, rtp_timestamp, rate));
                }
            }
            PeerEvent::Audio {
                packet,
                rtp_timestamp,
                ..
            } => {
                let now = self.epoch.elapsed();
                if let Some(m) = self.members.get(from) {
                    lock(&m.playback)
                        .jitter
                        .push(rtp_timestamp, now, (rtp_timestamp, packet));
                }
            }
            PeerEvent::VideoLoss { .. } => {
                if let Some(m) = self.members.get(from) {
                    m.video_losses.fetch_add(1, Ordering::Relaxed);
                }
            }
            PeerEvent::KeyframeRequested => {
                if let Some(codec) = self.members.get(from).and_then(|m| m.sending_as) {
                    self.flags.keyframe.request(codec);
                }
            }
            PeerEvent::NoVideoCodec => {
                self.error(
                    ErrorKind::NoVideoCodec,
                    format!(
                        "{from} cannot send or receive H.264 or VP8 video (their browser offers \
                         other codecs only); the call goes on with audio and chat"
                    ),
                )
                .await;
            }
            _ => {}
        }
    }

    /// The negotiation with `from` chose `codec` for our video: its camera and screen frames
    /// come from that codec's shared encoders from now on (an encoder runs while some peer
    /// takes its codec), starting with a keyframe.
    fn send_video_as(&mut self, from: &str, codec: VideoCodec) {
        let Some(m) = self.members.get_mut(from) else {
            return;
        };
        if m.sending_as == Some(codec) {
            return;
        }
        for task in m.video_tasks.drain(..) {
            task.abort();
        }
        m.sending_as = Some(codec);
        for screen in [false, true] {
            let out = if screen {
                &self.encoded_screen
            } else {
                &self.encoded
            };
            let (sender, mut frames) = (m.peer.clone(), out.of(codec).subscribe());
            m.video_tasks.push(tokio::spawn(async move {
                loop {
                    match frames.recv().await {
                        Ok(v) => {
                            let _ = if screen {
                                sender.send_screen(codec, v.data, v.duration).await
                            } else {
                                sender.send_video(codec, v.data, v.duration).await
                            };
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => {}
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }));
        }
        self.flags.keyframe.request(codec);
        if let Some(screen) = &self.screen {
            screen.keyframe.request(codec);
        }
    }

    /// A connection failed: the impolite side restarts ICE (the polite side answers the new
    /// offer); after [`MAX_RESTARTS`] the participant is given up on.
    async fn on_failed(&mut self, from: &str) {
        let Some(m) = self.members.get(from) else {
            return;
        };
        let (polite, peer) = (m.polite, m.peer.clone());
        match self.membership.failed(from) {
            Failed::Gone => {
                self.remove_member(from).await;
                self.error(
                    ErrorKind::PeerGone,
                    format!("the connection to {from} failed"),
                )
                .await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
            }
            Failed::Restart if !polite => {
                if let Err(e) = peer.restart_ice().await {
                    self.error(ErrorKind::PeerGone, format!("ICE restart with {from}: {e}"))
                        .await;
                }
            }
            // The polite side waits for the impolite side's new offer.
            Failed::Restart => {}
        }
        self.update_state().await;
    }

    async fn on_data(&mut self, from: &str, text: &str) {
        // Malformed or unknown messages are ignored (liveloop_proto::peer).
        let Some(msg) = PeerMessage::parse(text) else {
            return;
        };
        match msg {
            PeerMessage::Chat { text } => {
                self.emit(EngineEvent::Chat {
                    from: from.to_owned(),
                    text,
                })
                .await;
            }
            PeerMessage::Bye if self.members.contains_key(from) => {
                self.remove_member(from).await;
                self.emit(EngineEvent::PeerLeft {
                    id: from.to_owned(),
                })
                .await;
                self.update_state().await;
            }
            PeerMessage::State(state) => {
                let event = EngineEvent::PeerState {
                    id: from.to_owned(),
                    name: state.name,
                    muted: state.muted,
                    camera_off: state.camera_off,
                    screen: state.screen,
                };
                if let Some(m) = self.members.get_mut(from) {
                    m.screen_on = state.screen;
                    if !m.screen_on {
                        // The share ended: its decoder thread ends with it.
                        m.screen_decoder = None;
                    } else if m.screen_decoder.is_none() {
                        // Frames that came before this message were dropped: start clean.
                        m.screen_keyframe_needed.store(true, Ordering::Relaxed);
                    }
                }
                self.emit(event).await;
            }
            PeerMessage::Bye => {}
        }
    }

    /// One playout tick: 20 ms from every connected participant, and keyframe requests for
    /// decoders that lost their way.
    async fn play_out(&mut self) {
        let now = self.epoch.elapsed();
        for (id, m) in &self.members {
            if m.keyframe_needed.swap(false, Ordering::Relaxed) {
                let peer = m.peer.clone();
                tokio::spawn(async move {
                    let _ = peer.request_keyframe().await;
                });
            }
            if m.screen_keyframe_needed.swap(false, Ordering::Relaxed) {
                let peer = m.peer.clone();
                tokio::spawn(async move {
                    let _ = peer.request_screen_keyframe().await;
                });
            }
            if !self.membership.is_connected(id) {
                continue;
            }
            let mut pcm = vec![0.0f32; FRAME];
            {
                let mut playback = lock(&m.playback);
                let Playback { jitter, opus } = &mut *playback;
                let step = jitter.pop(now);
                if let Playout::Packet((ts, _)) = &step {
                    let delay = jitter.target_delay() + Duration::from_millis(20);
                    *lock(&m.sync.audio_delay) = Some((delay, Instant::now()));
                    if let Some(map) = *lock(&m.sync.audio_map) {
                        let lag = media::now_us() as i64 - map.sender_time_us(*ts);
                        *lock(&m.sync.audio_lag) = Some((lag, Instant::now()));
                    }
                }
                if let Some(opus) = opus.as_mut() {
                    let result = match &step {
                        Playout::Packet((_, p)) => opus.decode(p, &mut pcm),
                        Playout::Lost { next } => {
                            opus.conceal(next.as_ref().map(|(_, p)| p.as_ref()), &mut pcm)
                        }
                        Playout::Conceal => opus.conceal(None, &mut pcm),
                        Playout::Silence => Ok(FRAME),
                    };
                    if result.is_err() {
                        pcm.fill(0.0);
                    }
                }
            }
            pcm.resize(FRAME, 0.0);
            // Lossy on purpose: a consumer that stalls loses audio, not the call.
            let _ = self.events.try_send(EngineEvent::AudioPlayout {
                from: id.clone(),
                pcm,
            });
        }
    }

    /// Participants whose grace ran out (`core::membership`) are let go.
    async fn expire_absent(&mut self) {
        let expired = self.membership.expired(self.epoch.elapsed());
        for id in expired {
            self.remove_member(&id).await;
            self.emit(EngineEvent::PeerLeft { id }).await;
        }
        if !self.members.is_empty() {
            self.update_state().await;
        }
    }

    async fn report_stats(&mut self) {
        let mut peers = Vec::new();
        for (id, m) in &mut self.members {
            if !self.membership.is_connected(id) {
                continue;
            }
            let now = Snapshot {
                peer: m.peer.stats().await,
                frames: m.counters.frames.load(Ordering::Relaxed),
            };
            let at = Instant::now();
            let jitter = lock(&m.playback).jitter.stats();
            let mut report = stats::report(
                id,
                m.last.1,
                now,
                at.duration_since(m.last.0),
                jitter,
                m.video_losses.load(Ordering::Relaxed),
            );
            report.av_offset_ms = m.sync.av_offset_us.load(Ordering::Relaxed) as f64 / 1000.0;
            peers.push(report);
            m.last = (at, now);
        }
        if !peers.is_empty() {
            self.emit(EngineEvent::Stats(CallStats { peers })).await;
        }
    }
}
