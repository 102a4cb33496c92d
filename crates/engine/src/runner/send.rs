//! The send rate: every 200 ms the session reads each connected peer's send-side estimate
//! (`liveloop-rtc`'s controller), lets `core::layers` put the peers whose path cannot carry
//! the main camera layer on the low one, runs `core::send_rate` for each layer on the lowest
//! estimate among its peers (the encoders are shared, so a layer must fit its slowest path),
//! and hands the results to the media threads through `MediaFlags::send` and
//! `MediaFlags::low`. The loss the peers report is read once a second.

use std::sync::atomic::Ordering;

use liveloop_core::layers::Layer;
use liveloop_core::send_rate::{Allocation, Content, HEADROOM, Limit, SendConfig, SendRate};

use super::Runner;
use crate::stats::{LayerReport, SendReport};

impl Runner {
    /// The connected peers' estimates (`None`: no feedback from that one yet).
    fn estimates(&self) -> Vec<(String, Option<u32>)> {
        self.members
            .iter()
            .filter(|(id, _)| self.membership.is_connected(id))
            .map(|(id, m)| (id.clone(), m.peer.send_estimate_bps()))
            .collect()
    }

    pub(super) fn update_send_rate(&mut self) {
        let estimates = self.estimates();
        self.layers.update(self.epoch.elapsed(), &estimates);
        let lowest = |layer: Layer| {
            estimates
                .iter()
                .filter(|(id, _)| self.layers.layer(id) == layer)
                .filter_map(|(_, e)| *e)
                .min()
        };
        let (estimate, low_estimate) = (lowest(Layer::Main), lowest(Layer::Low));
        let mut split = false;
        for (id, _) in &estimates {
            let layer = self.layers.layer(id);
            split |= layer == Layer::Low
                && self
                    .members
                    .get(id)
                    .is_some_and(|m| *m.layer.borrow() == Layer::Main);
            self.set_layer(id, layer);
        }
        let pixels = self.flags.send.source_pixels.load(Ordering::Relaxed);
        let fps = self.flags.send.source_fps_milli.load(Ordering::Relaxed) as f32 / 1000.0;
        let fps = if fps > 0.0 { fps } else { 30.0 };
        if split && let Some(main) = estimate {
            // The slow path no longer holds the main layer down: it fits the others now.
            self.send_rate.refit_up(main, pixels, fps);
        }
        let low = self.update_low_layer(low_estimate, pixels, fps);
        // The screen share goes to everyone: it fits the slowest path.
        let slowest = estimate.into_iter().chain(low_estimate).min();
        // Before any feedback the pacer holds each connection to the controller's start, so
        // the encoders aim at that, not at the configured rate.
        let aim = estimate.or(Some(liveloop_rtc::START_BITRATE_BPS));
        let a = self
            .send_rate
            .update(self.epoch.elapsed(), aim, self.send_loss, pixels, fps);
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
                slowest.map(|_| (f64::from(screen_bps) / HEADROOM) as u32),
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
        // One Opus stream goes to everyone: a tiny path on the low layer lowers it too.
        if let Some(low) = low {
            camera.audio_bps = camera.audio_bps.min(low.audio_bps);
            camera.audio_loss_percent = camera.audio_loss_percent.max(low.audio_loss_percent);
        }
        self.flags.send.set(&camera);
        self.send_allocation = Some((estimate, a));
    }

    /// The low layer's own policy, on the lowest estimate among the peers that get it. Its
    /// audio is the main layer's (one Opus stream for everyone): only the video follows it.
    fn update_low_layer(
        &mut self,
        estimate: Option<u32>,
        pixels: u32,
        fps: f32,
    ) -> Option<Allocation> {
        let Some(estimate) = estimate else {
            // A later split starts afresh, from the estimate it is given then.
            self.low_allocation = None;
            return None;
        };
        if self.low_allocation.is_none() {
            // A new split: the layer starts at the size its path fits, not at the top.
            self.low_rate = SendRate::fitted(self.send_config, estimate, pixels, fps);
        }
        let a = self.low_rate.update(
            self.epoch.elapsed(),
            Some(estimate),
            self.send_loss,
            pixels,
            fps,
        );
        if self.low_allocation.is_none_or(|(_, last)| last != a) {
            tracing::debug!(estimate, ?a, "low layer send rate");
        }
        self.flags.low.set(&a);
        self.low_allocation = Some((Some(estimate), a));
        Some(a)
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
        let low = self.low_allocation.map(|(e, low)| LayerReport {
            estimate_kbps: e.map_or(0.0, |e| f64::from(e) / 1000.0),
            video_target_kbps: f64::from(low.video_bps) / 1000.0,
            width: self.flags.low.sent_width.load(Ordering::Relaxed),
            height: self.flags.low.sent_height.load(Ordering::Relaxed),
            frame_divider: low.frame_divider,
            peers: self
                .members
                .keys()
                .filter(|id| self.layers.layer(id) == Layer::Low)
                .count(),
        });
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
            low,
        })
    }
}
