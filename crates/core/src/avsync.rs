//! Lip sync, sans-IO: RTCP sender reports tie each stream's RTP timestamps to the sender's wall
//! clock; comparing how far behind that clock audio is heard and video is decoded tells how long
//! to hold video so both show the same moment.

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
}
