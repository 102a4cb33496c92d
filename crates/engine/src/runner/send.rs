//! The send rate: every 200 ms the session reads each connected peer's send-side estimate
//! (GCC in `liveloop-rtc`), runs `core::send_rate` on the lowest (the encoders are shared, so
//! they must fit the slowest path; a second, lower layer for it is still to come), and hands
//! the result to the media threads through `MediaFlags::send`. The loss the peers report is
//! read once a second.

use std::sync::atomic::Ordering;

use liveloop_core::send_rate::{Allocation, Content, HEADROOM, Limit, SendConfig, SendRate};

use super::Runner;
use crate::stats::SendReport;

impl Runner {
    /// The lowest estimate among the connected peers (`None`: no feedback from anyone yet).
    fn lowest_estimate(&self) -> Option<u32> {
        self.members
            .iter()
            .filter(|(id, _)| self.membership.is_connected(id))
            .filter_map(|(_, m)| m.peer.send_estimate_bps())
            .min()
    }

    pub(super) fn update_send_rate(&mut self) {
        let estimate = self.lowest_estimate();
        // Before any feedback the pacer holds each connection to the controller's start, so
        // the encoders aim at that, not at the configured rate.
        let aim = estimate.or(Some(liveloop_rtc::START_BITRATE_BPS));
        let send = &self.flags.send;
        let pixels = send.source_pixels.load(Ordering::Relaxed);
        let fps = send.source_fps_milli.load(Ordering::Relaxed) as f32 / 1000.0;
        let a = self.send_rate.update(
            self.epoch.elapsed(),
            aim,
            self.send_loss,
            pixels,
            if fps > 0.0 { fps } else { 30.0 },
        );
        if self.send_allocation.is_none_or(|(_, last)| last != a) {
            tracing::debug!(?estimate, ?a, "send rate");
        }
        // A screen share takes two thirds of the video's share (the presentation is what
        // people look at), up to its own ceiling; the camera gets the rest.
        let mut camera = a;
        if let Some(screen) = &self.screen {
            let screen_bps = (a.video_bps / 3 * 2).min(crate::media::SCREEN_MAX_BPS);
            screen.bitrate_bps.store(screen_bps, Ordering::Relaxed);
            camera.video_bps = a
                .video_bps
                .saturating_sub(screen_bps)
                .max(liveloop_core::send_rate::MIN_VIDEO_BPS);
            // The share keeps its size and lowers its frame rate when its bits per pixel run
            // low: its own policy, given its share (as an estimate: the policy takes its
            // headroom off again, and a share has no audio).
            let policy = self.screen_rate.get_or_insert_with(|| {
                SendRate::new(SendConfig {
                    max_video_bps: crate::media::SCREEN_MAX_BPS,
                    audio_bps: 0,
                    content: Content::Screen,
                })
            });
            let fps = screen.source_fps_milli.load(Ordering::Relaxed) as f32 / 1000.0;
            let share = policy.update(
                self.epoch.elapsed(),
                estimate.map(|_| (f64::from(screen_bps) / HEADROOM) as u32),
                0.0,
                screen.source_pixels.load(Ordering::Relaxed),
                if fps > 0.0 { fps } else { 15.0 },
            );
            screen
                .frame_divider
                .store(share.frame_divider.max(1), Ordering::Relaxed);
        } else {
            self.screen_rate = None;
        }
        send.set(&camera);
        self.send_allocation = Some((estimate, a));
    }

    /// The largest loss any connected peer reports for what we send (0 to 1).
    pub(super) async fn update_send_loss(&mut self) {
        let mut loss: f64 = 0.0;
        for (id, m) in &self.members {
            if self.membership.is_connected(id) {
                loss = loss.max(m.peer.stats().await.remote_loss);
            }
        }
        self.send_loss = loss;
    }

    /// What the stats show of the send side now.
    pub(super) fn send_report(&self) -> Option<SendReport> {
        let (estimate, a): (Option<u32>, Allocation) = self.send_allocation?;
        let send = &self.flags.send;
        let (w, h) = (
            send.sent_width.load(Ordering::Relaxed),
            send.sent_height.load(Ordering::Relaxed),
        );
        Some(SendReport {
            estimate_kbps: estimate.map_or(0.0, |e| f64::from(e) / 1000.0),
            video_target_kbps: f64::from(a.video_bps) / 1000.0,
            audio_target_kbps: f64::from(a.audio_bps) / 1000.0,
            width: w,
            height: h,
            frame_divider: a.frame_divider,
            limited_by: match a.limited_by {
                Limit::None => "none",
                Limit::Bandwidth => "bandwidth",
            },
        })
    }
}
