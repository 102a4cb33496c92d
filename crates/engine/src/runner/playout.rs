//! The 20 ms playout tick (jitter buffers, Opus decoding and concealment, lip-sync clocks)
//! and the stats tick.

#[allow(clippy::wildcard_imports)]
use super::*;

/// Samples in one 20 ms frame at 48 kHz.
pub(super) const FRAME: usize = 960;

impl Runner {
    /// One playout tick: 20 ms from every connected participant, and keyframe requests for
    /// decoders that lost their way.
    pub(super) async fn play_out(&mut self) {
        let now = self.epoch.elapsed();
        let mut speaking = None;
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
            if let Some(change) = self.speaker.observe(id, &pcm, now) {
                speaking = Some(change);
            }
            // Lossy on purpose: a consumer that stalls loses audio, not the call.
            let _ = self.events.try_send(EngineEvent::AudioPlayout {
                from: id.clone(),
                pcm,
            });
        }
        if let Some(id) = speaking {
            self.emit(EngineEvent::Speaking { id }).await;
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
