//! "You are muted": speech on the microphone while muted, as Meet and Zoom point it out.
//! Sans-IO: fed each processed capture frame's voice activity, whether the microphone is
//! muted, and the time, it says when to show the hint.
//!
//! The hint comes after [`HOLD`] of speech (voiced frames with gaps of at most [`GAP`]: a
//! cough or a door is shorter), at most once per [`REPEAT`] while the mute lasts; muting again
//! starts afresh.

use std::time::Duration;

/// How long someone must speak while muted before the hint shows.
pub const HOLD: Duration = Duration::from_millis(500);
/// The longest pause inside one stretch of speech.
pub const GAP: Duration = Duration::from_millis(300);
/// The hint is not shown again within this time during one mute.
pub const REPEAT: Duration = Duration::from_secs(15);
/// A frame is voiced when the VAD's speech probability is at least this…
pub const PROBABILITY: f32 = 0.8;
/// …and it is louder than this (dBFS): the VAD also hears distant voices.
pub const LEVEL_DBFS: f32 = -50.0;

/// The muted-speech judge of one microphone.
#[derive(Debug, Clone, Default)]
pub struct MutedSpeech {
    was_muted: bool,
    speech_since: Option<Duration>,
    last_voiced: Option<Duration>,
    last_hint: Option<Duration>,
}

impl MutedSpeech {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A frame captured at `now`, with its speech `probability` and level; `true` when the
    /// hint should show now.
    pub fn observe(
        &mut self,
        now: Duration,
        muted: bool,
        probability: f32,
        level_dbfs: f32,
    ) -> bool {
        if muted != self.was_muted {
            self.was_muted = muted;
            self.speech_since = None;
            self.last_voiced = None;
            self.last_hint = None;
        }
        if !muted {
            return false;
        }
        let voiced = probability >= PROBABILITY && level_dbfs >= LEVEL_DBFS;
        if voiced {
            if self.last_voiced.is_none_or(|t| now.saturating_sub(t) > GAP) {
                self.speech_since = Some(now);
            }
            self.last_voiced = Some(now);
        } else if self
            .last_voiced
            .is_some_and(|t| now.saturating_sub(t) > GAP)
        {
            self.speech_since = None;
        }
        let long_enough = self
            .speech_since
            .is_some_and(|s| now.saturating_sub(s) >= HOLD);
        let quiet_since_hint = self
            .last_hint
            .is_none_or(|t| now.saturating_sub(t) >= REPEAT);
        if voiced && long_enough && quiet_since_hint {
            self.last_hint = Some(now);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    /// Feeds `frames` frames from `t` (voiced or not); the times the hint showed.
    fn run(
        m: &mut MutedSpeech,
        t: &mut Duration,
        frames: u32,
        muted: bool,
        voiced: bool,
    ) -> Vec<Duration> {
        let mut hints = Vec::new();
        for _ in 0..frames {
            let (p, level) = if voiced { (0.95, -25.0) } else { (0.05, -70.0) };
            if m.observe(*t, muted, p, level) {
                hints.push(*t);
            }
            *t += FRAME;
        }
        hints
    }

    #[test]
    fn half_a_second_of_speech_while_muted_shows_the_hint_once() {
        let (mut m, mut t) = (MutedSpeech::new(), Duration::ZERO);
        assert!(run(&mut m, &mut t, 50, true, false).is_empty(), "silence");
        let hints = run(&mut m, &mut t, 100, true, true);
        assert_eq!(
            hints,
            vec![Duration::from_millis(1500)],
            "after 500 ms of speech"
        );
        // Talking on, or again after a pause, within REPEAT: no second hint.
        assert!(run(&mut m, &mut t, 50, true, false).is_empty());
        assert!(run(&mut m, &mut t, 100, true, true).is_empty());
        // Past REPEAT, speech shows it again.
        run(&mut m, &mut t, 600, true, false);
        assert_eq!(run(&mut m, &mut t, 50, true, true).len(), 1);
    }

    #[test]
    fn unmuted_speech_short_sounds_and_quiet_voices_show_nothing() {
        let (mut m, mut t) = (MutedSpeech::new(), Duration::ZERO);
        assert!(run(&mut m, &mut t, 200, false, true).is_empty(), "unmuted");
        // Bursts of 200 ms with 400 ms pauses never make one stretch of 500 ms.
        for _ in 0..10 {
            assert!(run(&mut m, &mut t, 10, true, true).is_empty());
            run(&mut m, &mut t, 20, true, false);
        }
        // A distant voice: the VAD is sure but it is quiet.
        for _ in 0..100 {
            assert!(!m.observe(t, true, 0.99, -60.0));
            t += FRAME;
        }
    }

    #[test]
    fn short_pauses_keep_one_stretch_and_muting_again_starts_afresh() {
        let (mut m, mut t) = (MutedSpeech::new(), Duration::ZERO);
        // 300 ms, a 200 ms pause, 300 ms: one stretch of 800 ms.
        assert!(run(&mut m, &mut t, 15, true, true).is_empty());
        run(&mut m, &mut t, 10, true, false);
        assert_eq!(run(&mut m, &mut t, 15, true, true).len(), 1);
        // Unmute, mute again: the hint may show at once on speech.
        run(&mut m, &mut t, 5, false, true);
        assert_eq!(run(&mut m, &mut t, 30, true, true).len(), 1);
    }
}
