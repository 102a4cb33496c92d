//! Lip sync, sans-IO: RTCP sender reports tie each stream's RTP timestamps to the sender's wall
//! clock; comparing how far behind that clock audio is heard and video is decoded tells how long
//! to hold video so both show the same moment, and, when video runs later than audio, how
//! long audio waits for it ([`AudioHold`]).

use std::collections::VecDeque;
use std::time::Duration;

/// The most video is ever held for sync (beyond this, the audio path is broken, not late).
pub const MAX_VIDEO_HOLD: Duration = Duration::from_millis(300);

/// One stream's RTP clock mapped to the sender's wall clock (from one sender report).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockMap {
    /// Sender wall-clock time of `rtp`, in microseconds since the NTP epoch.
    sender_us: i64,
    rtp: u32,
    clock_rate: u32,
}

impl ClockMap {
    /// From a sender report's NTP time (32.32 fixed point) and RTP timestamp.
    #[must_use]
    pub fn from_sender_report(ntp_time: u64, rtp: u32, clock_rate: u32) -> Self {
        let secs = (ntp_time >> 32) as i64;
        let frac = (ntp_time & 0xffff_ffff) as i64;
        Self {
            sender_us: secs * 1_000_000 + ((frac * 1_000_000) >> 32),
            rtp,
            clock_rate: clock_rate.max(1),
        }
    }

    /// When (sender wall clock, µs) the media with timestamp `rtp` was captured. Timestamps
    /// within half the 32-bit range of the report's are placed before or after it.
    #[must_use]
    pub fn sender_time_us(&self, rtp: u32) -> i64 {
        let ticks = i64::from(rtp.wrapping_sub(self.rtp) as i32);
        self.sender_us + ticks * 1_000_000 / i64::from(self.clock_rate)
    }
}

/// How long to hold a decoded video frame: `audio_lag_us` is how far audio playout runs behind
/// the sender's clock (local time heard − sender capture time), `video_lag_us` the same for this
/// frame as decoded. Video that would run ahead of the audio waits for it; video that is late
/// is shown at once (audio is not delayed further for it).
#[must_use]
pub fn video_hold(audio_lag_us: i64, video_lag_us: i64) -> Duration {
    let ahead = audio_lag_us.saturating_sub(video_lag_us);
    Duration::from_micros(ahead.max(0) as u64).min(MAX_VIDEO_HOLD)
}

/// How far audio may run ahead of video before audio is held back for it. Audio ahead of
/// video by up to 40 ms is not noticed (EBU R37 puts the limit of audio leading at 40 ms, of
/// lagging at 60 ms): audio is not made later than it has to be, so a call keeps its low audio
/// latency while lips stay within that bound.
pub const AUDIO_LEAD_ALLOWED: Duration = Duration::from_millis(20);
/// The most audio is ever held back for late video (video later than this is a broken or
/// starved video path, and audio matters more).
pub const MAX_AUDIO_HOLD: Duration = Duration::from_millis(200);
/// Over how long the video's lateness is judged (its median).
const HOLD_WINDOW: Duration = Duration::from_secs(1);
/// Samples kept at most (a frame each; 30 fps fills a second with 30).
const MAX_HOLD_SAMPLES: usize = 128;
/// How often the hold may change, by how much at most, and the change too small to make.
const HOLD_UPDATE: Duration = Duration::from_millis(200);
const HOLD_STEP: Duration = Duration::from_millis(20);
const HOLD_DEADBAND: Duration = Duration::from_millis(5);

/// How long audio playout waits for video that runs later than it (the other half of lip sync:
/// [`video_hold`] makes early video wait for audio). Fed with each decoded frame's lateness
/// behind the audio as it would play without the hold; the hold follows the median of the last
/// second beyond [`AUDIO_LEAD_ALLOWED`], in steps of at most 20 ms five times a second (each
/// step stretches or shortens the audio by that much once), and falls back to zero a second
/// after the last frame (camera off: audio need not wait for anything).
#[derive(Debug, Default)]
pub struct AudioHold {
    /// (when, µs video runs behind the unheld audio).
    samples: VecDeque<(Duration, i64)>,
    current: Duration,
    last_update: Option<Duration>,
}

impl AudioHold {
    /// A frame was decoded at `now`, `video_behind_us` later than its audio plays without the
    /// hold (negative: video is earlier, and waits in [`video_hold`]).
    pub fn observe(&mut self, now: Duration, video_behind_us: i64) {
        self.samples.push_back((now, video_behind_us));
        if self.samples.len() > MAX_HOLD_SAMPLES {
            self.samples.pop_front();
        }
    }

    /// How long audio should wait for video at `now`.
    pub fn hold(&mut self, now: Duration) -> Duration {
        while self
            .samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > HOLD_WINDOW)
        {
            self.samples.pop_front();
        }
        if self
            .last_update
            .is_some_and(|at| now.saturating_sub(at) < HOLD_UPDATE)
        {
            return self.current;
        }
        let mut behind: Vec<i64> = self.samples.iter().map(|(_, b)| *b).collect();
        behind.sort_unstable();
        let target = behind
            .get(behind.len() / 2)
            .map_or(Duration::ZERO, |median| {
                Duration::from_micros(median.max(&0).unsigned_abs())
                    .saturating_sub(AUDIO_LEAD_ALLOWED)
                    .min(MAX_AUDIO_HOLD)
            });
        let gap = target.abs_diff(self.current);
        if gap > HOLD_DEADBAND || (target.is_zero() && !self.current.is_zero()) {
            let step = gap.min(HOLD_STEP);
            self.current = if target > self.current {
                self.current + step
            } else {
                self.current - step
            };
        }
        self.last_update = Some(now);
        self.current
    }

    /// The hold now, without updating it.
    #[must_use]
    pub fn current(&self) -> Duration {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_reports_map_timestamps_to_the_sender_clock() {
        // 1000.5 s after the NTP epoch at RTP 90_000, 90 kHz.
        let ntp = (1000u64 << 32) | (1u64 << 31);
        let map = ClockMap::from_sender_report(ntp, 90_000, 90_000);
        assert_eq!(map.sender_time_us(90_000), 1_000_500_000);
        assert_eq!(map.sender_time_us(180_000), 1_001_500_000);
        assert_eq!(map.sender_time_us(0), 999_500_000);
        // Across the 32-bit wrap.
        let map = ClockMap::from_sender_report(ntp, u32::MAX - 479, 48_000);
        assert_eq!(map.sender_time_us(480), 1_000_520_000);
    }

    #[test]
    fn video_waits_for_audio_but_never_long() {
        // Audio heard 60 ms after capture, video decoded 15 ms after: hold video 45 ms.
        assert_eq!(video_hold(60_000, 15_000), Duration::from_millis(45));
        // Video later than audio: show at once.
        assert_eq!(video_hold(20_000, 80_000), Duration::ZERO);
        assert_eq!(video_hold(5_000_000, 0), MAX_VIDEO_HOLD);
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn audio_waits_for_late_video_beyond_the_allowed_lead_in_small_steps() {
        let mut hold = AudioHold::default();
        // Video decoded 70 ms after its audio would play, every 33 ms: audio should wait 50 ms.
        let mut steps = Vec::new();
        for i in 0..60u32 {
            let now = i * 33 * MS;
            hold.observe(now, 70_000);
            steps.push(hold.hold(now));
        }
        assert_eq!(steps.first(), Some(&(20 * MS)), "one step at a time");
        assert!(
            steps
                .windows(2)
                .all(|w| w[1].saturating_sub(w[0]) <= 20 * MS),
            "{steps:?}"
        );
        assert_eq!(hold.current(), 50 * MS);
        // Video within the allowed lead: no hold (after stepping back down).
        for i in 60..120u32 {
            let now = i * 33 * MS;
            hold.observe(now, 15_000);
            hold.hold(now);
        }
        assert_eq!(hold.current(), Duration::ZERO);
    }

    #[test]
    fn the_hold_follows_the_median_is_capped_and_ends_without_video() {
        let mut hold = AudioHold::default();
        // A keyframe now and then decodes 400 ms late; the median is 60 ms behind.
        for i in 0..90u32 {
            let now = i * 33 * MS;
            hold.observe(now, if i % 10 == 0 { 400_000 } else { 60_000 });
            hold.hold(now);
        }
        assert_eq!(hold.current(), 40 * MS);
        // A video path seconds late: held at most MAX_AUDIO_HOLD.
        for i in 90..400u32 {
            let now = i * 33 * MS;
            hold.observe(now, 3_000_000);
            hold.hold(now);
        }
        assert_eq!(hold.current(), MAX_AUDIO_HOLD);
        // The camera goes off: the hold winds down to zero.
        let mut now = 400 * 33 * MS;
        for _ in 0..100 {
            now += 50 * MS;
            hold.hold(now);
        }
        assert_eq!(hold.current(), Duration::ZERO);
    }
}
