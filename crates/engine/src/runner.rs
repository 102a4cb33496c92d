//! The session task: one loop owns the signaling session and every peer; the audio playout
//! runs on a thread of its own (`playout`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use liveloop_core::avsync::ClockMap;
use liveloop_core::jitter::{JitterBuffer, Playout};
use liveloop_core::layers::{Layer, Layers};
use liveloop_core::membership::{Failed, Membership, Unlisted};
use liveloop_core::send_rate::{Allocation, Content, SendConfig, SendRate};
use liveloop_core::speaker::ActiveSpeaker;
use liveloop_media::opus::OpusDecoder;
use liveloop_media::{AudioSource, VideoSource};
use liveloop_proto::peer::{MAX_CHAT_CHARS, PeerMessage, PeerState};
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions, VideoCodec};
use liveloop_signal::session::{Outgoing, SessionEvent, Signaling};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;

use crate::media::{self, CameraOut, DecodeCounters, MediaFlags, ScreenFlags, SyncState, VideoOut};
use crate::stats::{self, CallStats, Snapshot};
mod commands;
mod members;
mod peer_events;
mod playout;
mod send;

use members::{Member, Playback};
use playout::{PlayoutThread, Roster, Slot};

use crate::{
    Command, EngineConfig, EngineEvent, EngineHandle, ErrorKind, Media, State, screen_stream_id,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Room,
    Random,
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
    flags.request_all_keyframes();
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
    let roster = Roster::default();
    let (speaking, speaking_rx) = tokio::sync::watch::channel(None);
    let epoch = Instant::now();
    flags
        .processing
        .store(config.audio_processing.bits(), Ordering::Relaxed);
    let (reference, reference_tap) = liveloop_media::processing::echo_reference();
    // Nothing plays aloud without a speaker, so there is no echo to cancel: the echo
    // canceller gets no reference (one would cancel a near end that resembles the far end,
    // such as two clients playing the same recording).
    let reference_tap = media_in.speaker.is_some().then_some(reference_tap);
    let playout = playout::start_playout(
        roster.clone(),
        epoch,
        media_in.speaker,
        events.clone(),
        speaking,
        reference,
    );
    let encoded_audio = media::start_audio(
        media_in.audio,
        audio_swap_rx,
        flags.clone(),
        events.clone(),
        config.local_audio.clone(),
        reference_tap,
    );
    let send_config = SendConfig {
        max_video_bps: config.bitrate_bps,
        audio_bps: u32::try_from(liveloop_media::opus::OpusConfig::default().bitrate_bps)
            .unwrap_or(48_000),
        content: Content::Camera,
    };
    let send_rate = SendRate::new(send_config);
    // The estimate that carries the main layer at its configured rate.
    let full_bps = (f64::from(send_config.max_video_bps + send_config.audio_bps)
        / liveloop_core::send_rate::HEADROOM) as u32;
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
        roster,
        _playout: playout,
        encoded,
        encoded_audio,
        flags,
        video_swap,
        audio_swap,
        has_video,
        state: State::Idle,
        epoch,
        screen: None,
        screen_generation: 0,
        encoded_screen: VideoOut::new(),
        screen_ended: screen_ended_tx,
        send_rate,
        layers: Layers::new(full_bps),
        low_rate: SendRate::new(send_config),
        send_config,
        low_allocation: None,
        screen_rate: None,
        send_loss: 0.0,
        send_allocation: None,
    };
    tokio::spawn(runner.run(session_events, command_rx, screen_ended_rx, speaking_rx));
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
    /// The participants the playout thread plays.
    roster: Roster,
    /// Plays out while the session runs (`runner::playout`).
    _playout: PlayoutThread,
    encoded: CameraOut,
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
    /// What we send, given the peers' estimates (`runner::send`).
    send_rate: SendRate,
    /// Who gets the low camera layer, and that layer's own policy and last allocation (from
    /// the low peers' lowest estimate).
    layers: Layers<String>,
    low_rate: SendRate,
    send_config: SendConfig,
    low_allocation: Option<(Option<u32>, Allocation)>,
    /// The screen share's own policy (frame rate only), while one runs.
    screen_rate: Option<SendRate>,
    /// The largest loss the peers report for what we send (0 to 1).
    send_loss: f64,
    /// The last estimate and allocation.
    send_allocation: Option<(Option<u32>, Allocation)>,
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
        self.sync_roster();
        if state != self.state {
            self.state = state;
            self.emit(EngineEvent::State(state)).await;
        }
    }

    /// Whether a description from `id` with this DTLS fingerprint comes from another peer
    /// connection than the call we have with `id`.
    fn is_another_peer(&self, id: &str, fingerprint: Option<&str>) -> bool {
        let known = self.members.get(id).and_then(|m| m.fingerprint.as_deref());
        matches!((known, fingerprint), (Some(a), Some(b)) if a != b)
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
        mut speaking: tokio::sync::watch::Receiver<Option<String>>,
    ) {
        let (peer_tx, mut peer_rx) = mpsc::channel::<(String, PeerEvent)>(4096);
        // Decoders that lost their way ask for a keyframe through a flag, looked at here.
        let mut keyframes = tokio::time::interval(Duration::from_millis(20));
        keyframes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut stats = tokio::time::interval(
            self.config
                .stats_interval
                .unwrap_or(Duration::from_secs(3600)),
        );
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut housekeeping = tokio::time::interval(Duration::from_secs(1));
        let mut network = crate::netwatch::start();
        let mut send_rate = tokio::time::interval(Duration::from_millis(200));
        send_rate.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
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
                _ = keyframes.tick() => self.request_keyframes(),
                Ok(()) = speaking.changed() => {
                    let id = speaking.borrow_and_update().clone();
                    self.emit(EngineEvent::Speaking { id }).await;
                }
                _ = stats.tick(), if self.config.stats_interval.is_some() => self.report_stats().await,
                _ = housekeeping.tick() => {
                    self.expire_absent().await;
                    self.update_send_loss().await;
                }
                _ = send_rate.tick() => self.update_send_rate(),
                Some(_) = network.recv() => self.on_network_change().await,
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
                let fingerprint = liveloop_rtc::dtls_fingerprint(&payload);
                if self.is_another_peer(&from, fingerprint.as_deref()) {
                    // The same id from another peer connection (it restarted, or someone else
                    // has the id now): that call is over, and this is a new one.
                    tracing::info!(%from, "another DTLS fingerprint: a new call");
                    let polite = self.members.get(&from).is_some_and(|m| m.polite);
                    self.remove_member(&from).await;
                    self.emit(EngineEvent::PeerLeft { id: from.clone() }).await;
                    if !is_offer {
                        // An answer to an offer it never had: call it afresh.
                        self.emit(EngineEvent::PeerJoined {
                            id: from.clone(),
                            name: None,
                        })
                        .await;
                        self.add_member(from, polite, !polite, peer_tx).await;
                        self.update_state().await;
                        return;
                    }
                }
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
                } else if let Some(m) = self.members.get_mut(&from)
                    && m.fingerprint.is_none()
                {
                    m.fingerprint = fingerprint;
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
                    let message = if self.mode == Mode::Random {
                        "lost the matchmaking server; looking for a partner again once connected"
                            .to_owned()
                    } else {
                        format!(
                            "lost the signaling server; calls go on, retrying every {} s at most",
                            delay.as_secs().max(1)
                        )
                    };
                    self.error(ErrorKind::ServerUnreachable, message).await;
                }
            }
            SessionEvent::Matchmaker { url } => {
                self.emit(EngineEvent::Matchmaker { url }).await;
            }
            _ => {}
        }
        self.update_state().await;
    }
}
