//! Who is speaking: the loudest participant over the last [`WINDOW`], when louder than a
//! whisper, as Meet and Zoom highlight the active speaker. Sans-IO: fed each participant's
//! played-out audio and the time, it reports changes.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long loudness is summed before the speaker is judged.
pub const WINDOW: Duration = Duration::from_millis(300);
/// The quietest window that counts as speech: the sum of the frames' mean squares, each
/// weighted by its length in 20 ms units (so the playout's 10 ms ticks count as half), about
/// −40 dBFS held over 300 ms.
pub const THRESHOLD: f32 = 15.0 * 1e-4;
/// Samples in 20 ms at 48 kHz: the unit frames are weighted in.
const UNIT: f32 = 960.0;

/// The active-speaker judge of one call.
#[derive(Debug, Clone, Default)]
pub struct ActiveSpeaker {
    loudness: BTreeMap<String, f32>,
    window_start: Option<Duration>,
    speaking: Option<String>,
}

impl ActiveSpeaker {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Who is speaking now, as last judged.
    #[must_use]
    pub fn speaking(&self) -> Option<&str> {
        self.speaking.as_deref()
    }

    /// `pcm` of participant `id` was played at `now`. Returns the new active speaker (or
    /// `Some(None)`: nobody) when a window ended and the answer changed.
    pub fn observe(&mut self, id: &str, pcm: &[f32], now: Duration) -> Option<Option<String>> {
        let energy = pcm.iter().map(|s| s * s).sum::<f32>() / UNIT;
        *self.loudness.entry(id.to_owned()).or_default() += energy;
        let start = *self.window_start.get_or_insert(now);
        if now.saturating_sub(start) < WINDOW {
            return None;
        }
        self.window_start = Some(now);
        let loudest = std::mem::take(&mut self.loudness)
            .into_iter()
            .filter(|(_, e)| *e > THRESHOLD)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id);
        if loudest == self.speaking {
            return None;
        }
        self.speaking.clone_from(&loudest);
        Some(loudest)
    }

    /// A participant left: if it was speaking, nobody is now (returned as a change).
    pub fn left(&mut self, id: &str) -> Option<Option<String>> {
        self.loudness.remove(id);
        if self.speaking.as_deref() == Some(id) {
            self.speaking = None;
            return Some(None);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn tone(amplitude: f32) -> Vec<f32> {
        (0..960)
            .map(|i| amplitude * (i as f32 * 0.06).sin())
            .collect()
    }

    /// Feeds 20 ms frames of each (id, amplitude) for `frames` ticks from `t`; the changes.
    fn run(
        s: &mut ActiveSpeaker,
        t: &mut Duration,
        who: &[(&str, f32)],
        frames: u32,
    ) -> Vec<Option<String>> {
        let mut changes = Vec::new();
        for _ in 0..frames {
            for (id, a) in who {
                if let Some(c) = s.observe(id, &tone(*a), *t) {
                    changes.push(c);
                }
            }
            *t += FRAME;
        }
        changes
    }

    #[test]
    fn the_loudest_above_a_whisper_speaks_and_silence_is_nobody() {
        let mut s = ActiveSpeaker::new();
        let mut t = Duration::ZERO;
        // Ann talks (−20 dBFS), Bob is near silent: Ann, once, after the first window.
        let c = run(&mut s, &mut t, &[("ann", 0.1), ("bob", 0.001)], 40);
        assert_eq!(c, vec![Some("ann".to_owned())]);
        assert_eq!(s.speaking(), Some("ann"));
        // Bob takes over.
        let c = run(&mut s, &mut t, &[("ann", 0.002), ("bob", 0.2)], 20);
        assert_eq!(c, vec![Some("bob".to_owned())]);
        // Both whisper (−60 dBFS): nobody.
        let c = run(&mut s, &mut t, &[("ann", 0.001), ("bob", 0.001)], 20);
        assert_eq!(c, vec![None]);
    }

    #[test]
    fn a_speaker_who_leaves_is_not_speaking() {
        let mut s = ActiveSpeaker::new();
        let mut t = Duration::ZERO;
        run(&mut s, &mut t, &[("ann", 0.1)], 20);
        assert_eq!(s.left("bob"), None);
        assert_eq!(s.left("ann"), Some(None));
        assert_eq!(s.speaking(), None);
    }
}
