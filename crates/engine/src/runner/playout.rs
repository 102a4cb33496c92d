//! Audio playout on a thread of its own, paced by the speaker: every 10 ms the speaker takes,
//! 10 ms from every connected participant (jitter buffer, Opus decoding or concealment; a
//! 20 ms packet plays over two ticks), the mix written to the speaker's wait-free ring, the
//! active speaker judged, and the lip-sync clocks updated. With no speaker (tests, the CLI) a
//! steady 10 ms schedule stands in for the device. Also the stats tick, which stays on the
//! session loop.

use liveloop_media::audio::{SpeakerFeed, soft_limit};

#[allow(clippy::wildcard_imports)]
use super::*;

/// Samples in one 10 ms tick at 48 kHz.
pub(super) const FRAME: usize = 480;
const TICK: Duration = Duration::from_millis(10);
/// The speaker is topped up while it has less than this queued (20 ms): its device buffer
/// takes 20 ms at a time (`Speaker::open`), so 20–30 ms stay queued.
const SPEAKER_QUEUE: usize = 960;
/// How often the speaker ring is looked at (polled: its reader, the device callback, must not
/// make a system call to wake us).
const POLL: Duration = Duration::from_millis(2);
/// Behind the schedule by more than this (a stalled machine), the clock starts again from now
/// rather than playing the missed frames in a burst.
const MAX_LATE: Duration = Duration::from_millis(100);

/// One participant as the playout sees it.
pub(super) struct Slot {
    pub(super) playback: Mutex<Playback>,
    pub(super) sync: Arc<SyncState>,
    /// Connected (the session loop keeps this in step with `core::membership`): only
    /// connected participants are played.
    pub(super) connected: AtomicBool,
}

/// The participants the playout plays, shared with the session loop, which adds and removes
/// them. Locked once per frame, briefly.
pub(super) type Roster = Arc<Mutex<BTreeMap<String, Arc<Slot>>>>;

/// The running playout thread; dropping it stops the thread.
pub(super) struct PlayoutThread {
    stop: Arc<AtomicBool>,
}

impl Drop for PlayoutThread {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// What paces the playout.
enum Pacer {
    /// The speaker: a tick is made whenever less than [`SPEAKER_QUEUE`] is queued for it.
    Device(SpeakerFeed),
    /// No speaker: a tick every 10 ms on a schedule that does not drift.
    Clock { next: Instant },
}

impl Pacer {
    /// Waits until the next frame is due; `false` once the thread is to stop.
    fn wait(&mut self, stop: &AtomicBool) -> bool {
        loop {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            match self {
                Self::Device(feed) if feed.is_closed() => {
                    tracing::warn!("the speaker went away; playout goes on without it");
                    *self = Self::Clock {
                        next: Instant::now(),
                    };
                }
                Self::Device(feed) => {
                    if feed.queued() < SPEAKER_QUEUE {
                        return true;
                    }
                    std::thread::sleep(POLL);
                }
                Self::Clock { next } => {
                    let now = Instant::now();
                    if now >= *next {
                        *next = if now > *next + MAX_LATE {
                            now + TICK
                        } else {
                            *next + TICK
                        };
                        return true;
                    }
                    std::thread::sleep((*next - now).min(POLL * 5));
                }
            }
        }
    }

    fn write(&mut self, mix: &[f32]) {
        if let Self::Device(feed) = self {
            feed.write(mix);
        }
    }
}

/// Starts the playout thread. Speaker changes go to `speaking` (the latest wins); each
/// participant's played frame goes out as [`EngineEvent::AudioPlayout`], lossy on purpose (a
/// consumer that stalls loses audio, not the call).
pub(super) fn start_playout(
    roster: Roster,
    epoch: Instant,
    speaker: Option<SpeakerFeed>,
    events: mpsc::Sender<EngineEvent>,
    speaking: tokio::sync::watch::Sender<Option<String>>,
    mut reference: liveloop_media::processing::ReferenceFeed,
) -> PlayoutThread {
    let stop = Arc::new(AtomicBool::new(false));
    let mut pacer = match speaker {
        Some(feed) => Pacer::Device(feed),
        None => Pacer::Clock {
            next: Instant::now(),
        },
    };
    let thread_stop = stop.clone();
    let spawned = std::thread::Builder::new()
        .name("liveloop-playout".into())
        .spawn(move || {
            let mut judge = ActiveSpeaker::new();
            let mut heard: Vec<String> = Vec::new();
            let mut mix = vec![0.0f32; FRAME];
            while pacer.wait(&thread_stop) {
                let now = epoch.elapsed();
                let slots: Vec<(String, Arc<Slot>)> = lock(&roster)
                    .iter()
                    .map(|(id, s)| (id.clone(), s.clone()))
                    .collect();
                let mut change = None;
                for gone in heard
                    .iter()
                    .filter(|id| !slots.iter().any(|(s, _)| s == *id))
                {
                    change = judge.left(gone).or(change);
                }
                heard.clear();
                mix.fill(0.0);
                for (id, slot) in slots {
                    if !slot.connected.load(Ordering::Relaxed) {
                        continue;
                    }
                    let pcm = play_frame(&slot, now);
                    change = judge.observe(&id, &pcm, now).or(change);
                    for (m, s) in mix.iter_mut().zip(&pcm) {
                        *m += s;
                    }
                    let _ = events.try_send(EngineEvent::AudioPlayout {
                        from: id.clone(),
                        pcm,
                    });
                    heard.push(id);
                }
                soft_limit(&mut mix);
                pacer.write(&mix);
                // The echo canceller's far end: exactly what the speaker was given.
                reference.write(&mix);
                if let Some(now_speaking) = change {
                    speaking.send_replace(now_speaking);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "no playout thread: call audio is not played");
    }
    PlayoutThread { stop }
}

/// One 10 ms tick of one participant, from what was decoded before or from the next step of
/// the jitter buffer (a packet decoded, a loss concealed with FEC from the packet after it
/// when there is one, or silence); and the lip-sync clocks.
fn play_frame(slot: &Slot, now: Duration) -> Vec<f32> {
    let mut playback = lock(&slot.playback);
    let Playback {
        jitter,
        opus,
        pending,
    } = &mut *playback;
    if pending.len() < FRAME {
        // Audio waits for video that runs later than it (lip sync's other half).
        let hold = lock(&slot.sync.audio_hold).hold(Duration::from_micros(media::now_us()));
        jitter.set_minimum_delay(hold);
        let step = jitter.pop(now);
        let frame_len = (jitter.frame().as_micros() as usize * 48 / 1000).max(FRAME);
        if let Playout::Packet((ts, _)) = &step {
            // Held for the target, then played over the ticks the packet lasts.
            let delay = jitter.target_delay() + jitter.frame();
            *lock(&slot.sync.audio_delay) = Some((delay, Instant::now()));
            if let Some(map) = *lock(&slot.sync.audio_map) {
                let lag = media::now_us() as i64 - map.sender_time_us(*ts);
                *lock(&slot.sync.audio_lag) = Some((lag, Instant::now()));
            }
        }
        let mut pcm = vec![0.0f32; frame_len];
        if let Some(opus) = opus.as_mut() {
            let result = match &step {
                Playout::Packet((_, p)) => opus.decode(p, &mut pcm),
                Playout::Lost { next } => {
                    opus.conceal(next.as_ref().map(|(_, p)| p.as_ref()), &mut pcm)
                }
                Playout::Conceal => opus.conceal(None, &mut pcm),
                // Not started or paused: one tick of silence, nothing kept for later.
                Playout::Silence => Ok(FRAME),
            };
            match result {
                Ok(n) => pcm.truncate(n.min(frame_len)),
                Err(_) => pcm.fill(0.0),
            }
        } else {
            pcm.truncate(FRAME);
        }
        pending.extend(pcm);
    }
    let take = pending.len().min(FRAME);
    let mut out: Vec<f32> = pending.drain(..take).collect();
    out.resize(FRAME, 0.0);
    out
}

impl Runner {
    /// Keeps the playout's view of who is connected in step with `core::membership`.
    pub(super) fn sync_roster(&self) {
        for (id, m) in &self.members {
            m.slot
                .connected
                .store(self.membership.is_connected(id), Ordering::Relaxed);
        }
    }

    /// Keyframe requests for decoders that lost their way.
    pub(super) fn request_keyframes(&self) {
        for m in self.members.values() {
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
        }
    }

    pub(super) async fn report_stats(&mut self) {
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
            let jitter = lock(&m.slot.playback).jitter.stats();
            let mut report = stats::report(
                id,
                m.last.1,
                now,
                at.duration_since(m.last.0),
                jitter,
                m.video_losses.load(Ordering::Relaxed),
            );
            report.av_offset_ms = m.sync.av_offset_us.load(Ordering::Relaxed) as f64 / 1000.0;
            if *m.layer.borrow() == Layer::Low {
                report.layer = "low";
            }
            peers.push(report);
            m.last = (at, now);
        }
        if !peers.is_empty() {
            let send = self.send_report();
            self.emit(EngineEvent::Stats(CallStats { peers, send }))
                .await;
        }
    }
}
