//! What we send, given what the path can carry: the send-side bandwidth estimate (GCC, from
//! the congestion controller in `liveloop-rtc`) is shared out between audio and video, audio
//! first, and the video's bitrate decides its resolution and frame rate.
//!
//! - **Audio first.** Opus keeps its configured rate unless the estimate is tiny; then it goes
//!   down to [`AUDIO_FLOOR_BPS`]. Its in-band FEC is told the loss the remote reports.
//! - **Video gets the rest**, with headroom ([`HEADROOM`]): the pacer sends at the estimate, so
//!   an encoder aiming at all of it would keep the pacer's queue full (latency), and
//!   retransmissions need room too. It never exceeds the configured bitrate.
//! - **Resolution follows the bits per pixel.** Bitrate first: while each pixel gets at least
//!   [`MIN_BITS_PER_PIXEL`] the picture keeps its size. Below that for [`DOWN_AFTER`] the
//!   resolution steps down the ladder (full, ¾, ½, ¼ of each side: 720p → 540p → 360p → 180p),
//!   and at the bottom the frame rate halves. Back up one step only when the next step up
//!   would get [`UP_BITS_PER_PIXEL`] (a margin above the floor) for [`UP_AFTER`], and never
//!   within [`UP_AFTER`] of a step down, so the picture does not oscillate.
//! - **Screen share** keeps its resolution (text must stay readable) and lowers its frame
//!   rate instead ([`Content::Screen`]).
//!
//! Sans-IO: time is an input.

use std::time::Duration;

/// The share of the estimate the encoders aim at; the rest is headroom.
pub const HEADROOM: f64 = 0.85;
/// The lowest Opus bitrate, for links that cannot carry more.
pub const AUDIO_FLOOR_BPS: u32 = 24_000;
/// Below this estimate audio drops to [`AUDIO_FLOOR_BPS`].
pub const TINY_LINK_BPS: u32 = 150_000;
/// Opus's FEC is never told to expect less loss than this (a clean link's reports say 0, and
/// the first lost packet should find redundancy already there).
pub const MIN_EXPECTED_LOSS_PERCENT: u8 = 5;
/// Video is never asked for less than this.
pub const MIN_VIDEO_BPS: u32 = 60_000;
/// The bits per pixel (per frame) under which the picture is too coarse at its size.
pub const MIN_BITS_PER_PIXEL: f64 = 0.03;
/// What a step up must leave each pixel, so that it does not fall straight back.
pub const UP_BITS_PER_PIXEL: f64 = 0.045;
/// How long the bitrate must stay too low before the resolution steps down.
pub const DOWN_AFTER: Duration = Duration::from_millis(600);
/// How long the bitrate must allow a step up before it is taken (and the least time after a
/// step down before one).
pub const UP_AFTER: Duration = Duration::from_secs(4);

/// While the estimate is still rising by this much a second (a call's start, capacity that
/// came back), the resolution is not stepped down: the estimate is still finding the path, and
/// a new size costs a keyframe and a visible jump.
pub const RISING: f64 = 1.05;

/// The resolution ladder, as quarters of each side of the source (4: the source's size).
pub const LADDER: [u8; 4] = [4, 3, 2, 1];

/// What is being sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A camera: resolution first, then frame rate.
    Camera,
    /// A screen: frame rate only.
    Screen,
}

/// The configuration of one sender.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SendConfig {
    /// The most the video may use (the user's or the app's setting).
    pub max_video_bps: u32,
    /// Opus's rate when the link allows it.
    pub audio_bps: u32,
    pub content: Content,
}

/// What the encoders should do now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocation {
    pub audio_bps: u32,
    /// Opus's expected loss (0-100), for its in-band FEC.
    pub audio_loss_percent: u8,
    pub video_bps: u32,
    /// The video's size, in quarters of each side of the source ([`LADDER`]).
    pub scale_quarters: u8,
    /// Send every n-th frame of the source (1: all of them).
    pub frame_divider: u8,
    /// What limits the video now.
    pub limited_by: Limit,
}

/// What holds the video below what it was configured for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Nothing: the configured bitrate.
    None,
    /// The estimated bandwidth.
    Bandwidth,
}

/// The policy of one sender (shared encoders: the estimate it is given is the one it must fit).
#[derive(Debug, Clone)]
pub struct SendRate {
    config: SendConfig,
    /// The rung of [`LADDER`] (or, for a screen, the frame-rate step) in use.
    step: usize,
    /// Since when the bitrate has been too low for the current step.
    low_since: Option<Duration>,
    /// Since when the bitrate has allowed the step above.
    high_since: Option<Duration>,
    last_down: Option<Duration>,
    /// (when, estimate) a second or so ago, for the trend.
    trend_from: Option<(Duration, u32)>,
    rising: bool,
}

/// The frame-rate dividers of a screen share (and of a camera at the ladder's bottom).
const FPS_DIVIDERS: [u8; 3] = [1, 2, 3];

impl SendRate {
    #[must_use]
    pub fn new(config: SendConfig) -> Self {
        Self {
            config,
            step: 0,
            low_since: None,
            high_since: None,
            last_down: None,
            trend_from: None,
            rising: false,
        }
    }

    /// A policy for a sender started mid-call, whose path's estimate is known already (a mesh's
    /// second layer): it starts at the step that fits `estimate_bps` rather than at the top,
    /// so its first frames are not a full-size keyframe squeezed into a small bitrate.
    #[must_use]
    pub fn fitted(
        config: SendConfig,
        estimate_bps: u32,
        source_pixels: u32,
        source_fps: f32,
    ) -> Self {
        let mut policy = Self::new(config);
        let (_, video_bps) = policy.rates(estimate_bps);
        let last = policy.steps() - 1;
        policy.step = (0..last)
            .find(|&s| {
                policy.bits_per_pixel(s, video_bps, source_pixels, source_fps) >= MIN_BITS_PER_PIXEL
            })
            .unwrap_or(last);
        policy
    }

    /// The estimate this policy must fit went up by a decision, not by the network (a slow
    /// peer of a mesh moved to the low layer): step up straight to the size that fits now,
    /// rather than one step per [`UP_AFTER`] (never down: that stays the usual rule's).
    pub fn refit_up(&mut self, estimate_bps: u32, source_pixels: u32, source_fps: f32) {
        let (_, video_bps) = self.rates(estimate_bps);
        if let Some(step) = (0..self.step).find(|&s| {
            self.bits_per_pixel(s, video_bps, source_pixels, source_fps) >= MIN_BITS_PER_PIXEL
        }) {
            self.step = step;
            self.low_since = None;
            self.high_since = None;
        }
    }

    /// Opus's and the video's bitrates for an estimate: audio first, video the rest with
    /// headroom, within its bounds.
    fn rates(&self, estimate: u32) -> (u32, u32) {
        let audio_bps = if estimate < TINY_LINK_BPS {
            AUDIO_FLOOR_BPS.min(self.config.audio_bps)
        } else {
            self.config.audio_bps
        };
        let budget = (f64::from(estimate) * HEADROOM) as u32;
        let video_bps = budget
            .saturating_sub(audio_bps)
            .clamp(MIN_VIDEO_BPS, self.config.max_video_bps.max(MIN_VIDEO_BPS));
        (audio_bps, video_bps)
    }

    /// The number of steps (resolutions, then frame rates at the smallest one).
    fn steps(&self) -> usize {
        match self.config.content {
            Content::Camera => LADDER.len() + FPS_DIVIDERS.len() - 1,
            Content::Screen => FPS_DIVIDERS.len(),
        }
    }

    /// `(scale in quarters, frame divider)` of a step.
    fn shape(&self, step: usize) -> (u8, u8) {
        let ladder = match self.config.content {
            Content::Camera => &LADDER[..],
            Content::Screen => &LADDER[..1],
        };
        let last = ladder.len() - 1;
        let scale = ladder.get(step.min(last)).copied().unwrap_or(4);
        let divider = FPS_DIVIDERS
            .get(step.saturating_sub(last))
            .copied()
            .unwrap_or(1);
        (scale, divider)
    }

    /// Bits per pixel per frame of `video_bps` at a step, for a `pixels`-pixel source at `fps`.
    fn bits_per_pixel(&self, step: usize, video_bps: u32, pixels: u32, fps: f32) -> f64 {
        let (scale, divider) = self.shape(step);
        let side = f64::from(scale) / 4.0;
        let pixels = f64::from(pixels.max(1)) * side * side;
        let fps = (f64::from(fps.max(1.0)) / f64::from(divider)).max(1.0);
        f64::from(video_bps) / (pixels * fps)
    }

    /// The allocation at `now` for the `estimate_bps` the path carries (`None`: no feedback
    /// yet, the configured rates), the loss the remote reports (0-1) and the source's size and
    /// frame rate.
    pub fn update(
        &mut self,
        now: Duration,
        estimate_bps: Option<u32>,
        loss: f64,
        source_pixels: u32,
        source_fps: f32,
    ) -> Allocation {
        let audio_loss_percent =
            ((loss.clamp(0.0, 1.0) * 100.0).round() as u8).max(MIN_EXPECTED_LOSS_PERCENT);
        let Some(estimate) = estimate_bps else {
            let (scale_quarters, frame_divider) = self.shape(self.step);
            return Allocation {
                audio_bps: self.config.audio_bps,
                audio_loss_percent,
                video_bps: self.config.max_video_bps,
                scale_quarters,
                frame_divider,
                limited_by: Limit::None,
            };
        };
        // The trend over about a second.
        match self.trend_from {
            Some((at, from)) if now.saturating_sub(at) >= Duration::from_secs(1) => {
                self.rising = f64::from(estimate) >= f64::from(from) * RISING;
                self.trend_from = Some((now, estimate));
            }
            Some(_) => {}
            None => {
                self.trend_from = Some((now, estimate));
                self.rising = true;
            }
        }
        let (audio_bps, video_bps) = self.rates(estimate);
        let limited_by = if video_bps < self.config.max_video_bps {
            Limit::Bandwidth
        } else {
            Limit::None
        };

        // Down: too few bits per pixel at this step, for long enough.
        let here = self.bits_per_pixel(self.step, video_bps, source_pixels, source_fps);
        if here < MIN_BITS_PER_PIXEL && self.step + 1 < self.steps() && !self.rising {
            let since = *self.low_since.get_or_insert(now);
            if now.saturating_sub(since) >= DOWN_AFTER {
                // Straight to the step that fits (each new size costs a keyframe: a link that
                // fell from 3 Mbit/s to 600 kbit/s should not pay three of them at 720p, 540p
                // and 360p on its way to 180p).
                let last = self.steps() - 1;
                self.step = (self.step + 1..last)
                    .find(|&s| {
                        self.bits_per_pixel(s, video_bps, source_pixels, source_fps)
                            >= MIN_BITS_PER_PIXEL
                    })
                    .unwrap_or(last);
                self.low_since = None;
                self.high_since = None;
                self.last_down = Some(now);
            }
        } else {
            self.low_since = None;
        }
        // Up: the step above would have a margin, for long enough, and not just after a
        // step down.
        if self.step > 0 {
            let above = self.bits_per_pixel(self.step - 1, video_bps, source_pixels, source_fps);
            let settled = self
                .last_down
                .is_none_or(|t| now.saturating_sub(t) >= UP_AFTER);
            if above >= UP_BITS_PER_PIXEL {
                let since = *self.high_since.get_or_insert(now);
                if now.saturating_sub(since) >= UP_AFTER && settled {
                    self.step -= 1;
                    self.high_since = None;
                }
            } else {
                self.high_since = None;
            }
        }
        let (scale_quarters, frame_divider) = self.shape(self.step);
        Allocation {
            audio_bps,
            audio_loss_percent,
            video_bps,
            scale_quarters,
            frame_divider,
            limited_by,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HD: u32 = 1280 * 720;

    fn camera() -> SendRate {
        SendRate::new(SendConfig {
            max_video_bps: 1_500_000,
            audio_bps: 48_000,
            content: Content::Camera,
        })
    }

    /// Runs the policy every 200 ms for `secs` at `estimate`, from `t`; the last allocation.
    fn run(p: &mut SendRate, t: &mut Duration, secs: f64, estimate: u32) -> Allocation {
        let mut last = None;
        let end = *t + Duration::from_secs_f64(secs);
        while *t < end {
            last = Some(p.update(*t, Some(estimate), 0.0, HD, 30.0));
            *t += Duration::from_millis(200);
        }
        last.unwrap()
    }

    #[test]
    fn without_feedback_the_configured_rates() {
        let a = camera().update(Duration::ZERO, None, 0.0, HD, 30.0);
        assert_eq!(
            (a.video_bps, a.audio_bps, a.scale_quarters, a.frame_divider),
            (1_500_000, 48_000, 4, 1)
        );
        assert_eq!(a.limited_by, Limit::None);
    }

    #[test]
    fn audio_first_then_video_with_headroom_and_never_over_the_setting() {
        let mut p = camera();
        let a = p.update(Duration::ZERO, Some(1_000_000), 0.0, HD, 30.0);
        assert_eq!(
            a.audio_bps, 48_000,
            "audio keeps its rate on a 1 Mbit/s link"
        );
        assert_eq!(a.video_bps, 850_000 - 48_000);
        assert_eq!(a.limited_by, Limit::Bandwidth);
        let a = p.update(Duration::ZERO, Some(5_000_000), 0.0, HD, 30.0);
        assert_eq!((a.video_bps, a.limited_by), (1_500_000, Limit::None));
        // A tiny link: audio goes down to its floor, video keeps a trickle.
        let a = p.update(Duration::ZERO, Some(100_000), 0.0, HD, 30.0);
        assert_eq!(a.audio_bps, AUDIO_FLOOR_BPS);
        assert_eq!(a.video_bps, 85_000 - AUDIO_FLOOR_BPS);
        let a = p.update(Duration::ZERO, Some(50_000), 0.0, HD, 30.0);
        assert_eq!(a.video_bps, MIN_VIDEO_BPS, "never less than a trickle");
    }

    #[test]
    fn loss_reaches_opus_as_a_percentage() {
        let a = camera().update(Duration::ZERO, Some(2_000_000), 0.073, HD, 30.0);
        assert_eq!(a.audio_loss_percent, 7);
        let a = camera().update(Duration::ZERO, Some(2_000_000), 0.02, HD, 30.0);
        assert_eq!(a.audio_loss_percent, MIN_EXPECTED_LOSS_PERCENT);
    }

    #[test]
    fn the_resolution_steps_down_the_ladder_as_the_bitrate_falls() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        // 1.5 Mbit/s at 720p30 is 0.054 bits per pixel: full size.
        assert_eq!(run(&mut p, &mut t, 3.0, 2_000_000).scale_quarters, 4);
        // 1 Mbit/s (802 kbit/s for video): 0.029 at 720p, too low; 540p gets 0.052.
        let a = run(&mut p, &mut t, 3.0, 1_000_000);
        assert_eq!((a.scale_quarters, a.frame_divider), (3, 1));
        // 500 kbit/s (377 for video): 0.024 at 540p; 360p gets 0.055.
        let a = run(&mut p, &mut t, 3.0, 500_000);
        assert_eq!((a.scale_quarters, a.frame_divider), (2, 1));
        // 320 kbit/s (224 for video): 360p still gets 0.032.
        let a = run(&mut p, &mut t, 3.0, 320_000);
        assert_eq!((a.scale_quarters, a.frame_divider), (2, 1));
        // 150 kbit/s: 180p, at the full frame rate.
        let a = run(&mut p, &mut t, 3.0, 150_000);
        assert_eq!((a.scale_quarters, a.frame_divider), (1, 1));
    }

    #[test]
    fn a_rising_estimate_keeps_the_size() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        // A call's start: 600 kbit/s growing by a quarter a second, as the estimator does.
        let mut estimate = 600_000.0f64;
        for _ in 0..25 {
            let a = p.update(t, Some(estimate as u32), 0.0, HD, 30.0);
            assert_eq!(
                a.scale_quarters, 4,
                "stepped down at {estimate:.0} while rising"
            );
            t += Duration::from_millis(200);
            estimate *= 1.25f64.powf(0.2);
        }
    }

    #[test]
    fn a_short_dip_changes_only_the_bitrate() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        run(&mut p, &mut t, 2.0, 2_000_000);
        let a = run(&mut p, &mut t, 0.4, 700_000);
        assert_eq!(a.scale_quarters, 4, "400 ms below the floor is not enough");
        assert!(a.video_bps < 700_000);
        assert_eq!(run(&mut p, &mut t, 2.0, 2_000_000).scale_quarters, 4);
    }

    #[test]
    fn back_up_only_after_the_capacity_has_stayed_and_without_oscillating() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        run(&mut p, &mut t, 2.0, 2_000_000);
        assert_eq!(run(&mut p, &mut t, 2.0, 700_000).scale_quarters, 3);
        // The capacity returns: not at once...
        assert_eq!(run(&mut p, &mut t, 2.0, 3_000_000).scale_quarters, 3);
        // ...but after UP_AFTER of it.
        assert_eq!(run(&mut p, &mut t, 3.0, 3_000_000).scale_quarters, 4);
        // An estimate that sits between the two thresholds moves nothing, either way.
        let mut changes = 0;
        let mut last = 4;
        for i in 0..200 {
            // 1.25 and 1.31 Mbit/s: 720p has 0.037 to 0.039 bits per pixel, between the
            // floor (0.03) and what a step up needs (0.045).
            let estimate = if i % 2 == 0 { 1_250_000 } else { 1_310_000 };
            let a = p.update(t, Some(estimate), 0.0, HD, 30.0);
            if a.scale_quarters != last {
                changes += 1;
                last = a.scale_quarters;
            }
            t += Duration::from_millis(200);
        }
        assert_eq!(changes, 0, "no oscillation between the thresholds");
    }

    #[test]
    fn a_deep_drop_goes_straight_to_the_size_that_fits() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        let a = run(&mut p, &mut t, 10.0, 3_000_000);
        assert_eq!(a.scale_quarters, 4);
        // 3 Mbit/s to 250 kbit/s: one step, to 320x180 (0.035 bits per pixel there), not
        // 960x540 first.
        let mut sizes = Vec::new();
        let end = t + Duration::from_secs(2);
        while t < end {
            let a = p.update(t, Some(250_000), 0.0, HD, 30.0);
            if sizes.last() != Some(&a.scale_quarters) {
                sizes.push(a.scale_quarters);
            }
            t += Duration::from_millis(200);
        }
        assert_eq!(sizes, vec![4, 1]);
    }

    #[test]
    fn a_screen_keeps_its_size_and_lowers_its_frame_rate() {
        let mut p = SendRate::new(SendConfig {
            max_video_bps: 2_500_000,
            audio_bps: 48_000,
            content: Content::Screen,
        });
        let mut t = Duration::ZERO;
        let mut last = None;
        for _ in 0..30 {
            last = Some(p.update(t, Some(400_000), 0.0, 1920 * 1080, 15.0));
            t += Duration::from_millis(200);
        }
        let a = last.unwrap();
        assert_eq!(a.scale_quarters, 4, "text stays readable");
        assert!(a.frame_divider > 1, "{a:?}");
    }

    #[test]
    fn a_layer_started_mid_call_starts_at_the_size_that_fits() {
        // 130 kbit/s: 61 kbit/s of video, which fits only a quarter of each side at 720p.
        let mut p = SendRate::fitted(
            SendConfig {
                max_video_bps: 1_500_000,
                audio_bps: 48_000,
                content: Content::Camera,
            },
            130_000,
            HD,
            30.0,
        );
        let first = p.update(Duration::ZERO, Some(130_000), 0.0, HD, 30.0);
        assert_eq!((first.scale_quarters, first.frame_divider), (1, 1));
        // A started policy begins at the top.
        let mut fresh = camera();
        let top = fresh.update(Duration::ZERO, Some(130_000), 0.0, HD, 30.0);
        assert_eq!(top.scale_quarters, 4);
        // And a large estimate fits the full size.
        let mut wide = SendRate::fitted(fresh.config, 3_000_000, HD, 30.0);
        assert_eq!(
            wide.update(Duration::ZERO, Some(3_000_000), 0.0, HD, 30.0)
                .scale_quarters,
            4
        );
    }

    #[test]
    fn a_refit_steps_up_at_once_and_never_down() {
        let mut p = camera();
        let mut t = Duration::ZERO;
        // A slow peer's 250 kbit/s took the picture to 180p.
        for _ in 0..20 {
            p.update(t, Some(250_000), 0.0, HD, 30.0);
            t += Duration::from_millis(200);
        }
        assert_eq!(p.update(t, Some(250_000), 0.0, HD, 30.0).scale_quarters, 1);
        // It moved to the low layer; the others carry 1 Mbit/s: 540p fits, at once.
        p.refit_up(1_000_000, HD, 30.0);
        assert_eq!(
            p.update(t, Some(1_000_000), 0.0, HD, 30.0).scale_quarters,
            3
        );
        // A refit for less does not step down.
        p.refit_up(100_000, HD, 30.0);
        assert_eq!(
            p.update(t, Some(1_000_000), 0.0, HD, 30.0).scale_quarters,
            3
        );
    }
}
