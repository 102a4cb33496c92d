//! The send-side estimator in webrtc-rs's congestion-control slot: `liveloop_core::bwe`
//! (sans-IO, our own; see its docs for why not webrtc-rs's `Gcc`), fed with the TWCC reports
//! the chain resolves. Departures are `Instant`s of our clock, which the core takes as
//! durations since the connection was built.
//!
//! What the chain reads as the target (`target_bitrate`) is what the pacer paces at: the
//! estimate times [`PACING_FACTOR`], as libwebrtc does, so that the pacer smooths a keyframe's
//! burst without holding the average back (the encoders aim below the estimate) and audio
//! never waits long behind video in its first-in, first-out queue. The estimate itself goes
//! to the application through [`SendEstimate`].

use std::time::{Duration, Instant};

use liveloop_core::bwe::{Estimator, Report};
use rtc::interceptor::{BandwidthEstimator, PacketReport};

use crate::keyframe::SendEstimate;

/// The pacer's rate over the estimate (libwebrtc's `kDefaultPaceMultiplier`).
pub const PACING_FACTOR: f64 = 2.5;

pub(crate) struct QueueDelayEstimator {
    epoch: Instant,
    core: Estimator,
    reports: Vec<Report>,
    estimate: SendEstimate,
}

impl QueueDelayEstimator {
    pub(crate) fn new(start: u32, min: u32, max: u32, estimate: SendEstimate) -> Self {
        Self {
            epoch: Instant::now(),
            core: Estimator::new(start, min, max),
            reports: Vec::new(),
            estimate,
        }
    }

    fn since(&self, t: Instant) -> Duration {
        t.saturating_duration_since(self.epoch)
    }
}

impl BandwidthEstimator for QueueDelayEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        self.reports.clear();
        for r in reports {
            let departure = self.since(r.departure);
            self.reports.push(Report {
                departure,
                arrival: r.arrival.filter(|_| r.arrived),
                size: r.size,
            });
        }
        let now = self.since(now);
        let reports = std::mem::take(&mut self.reports);
        self.core.on_reports(now, &reports);
        self.reports = reports;
        self.estimate.set(f64::from(self.core.target_bps()));
    }

    fn target_bitrate(&self) -> f64 {
        f64::from(self.core.target_bps()) * PACING_FACTOR
    }
}
