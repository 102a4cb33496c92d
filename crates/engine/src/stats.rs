//! Call figures, per participant, as the stats panel and the CLI's JSON lines show them.

use std::time::Duration;

use liveloop_core::jitter::JitterStats;
use liveloop_rtc::PeerStats;
use serde::Serialize;

/// One participant's figures over the last interval (rates) and since the call began (totals).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PeerReport {
    pub id: String,
    /// ICE round-trip time (STUN on the selected pair).
    pub rtt_ms: f64,
    /// The call runs through our TURN relay.
    pub relayed: bool,
    /// Packets lost over the interval, in percent of those expected.
    pub loss_percent: f64,
    pub audio_jitter_ms: f64,
    pub video_jitter_ms: f64,
    pub rx_kbps: f64,
    pub tx_kbps: f64,
    /// Decoded video frames per second over the interval.
    pub fps: f64,
    pub frames_decoded: u64,
    pub video_losses: u64,
    /// What the audio jitter buffer holds packets for now.
    pub audio_delay_ms: f64,
    pub audio_concealed: u64,
    pub audio_lost: u64,
    pub nacks_sent: u32,
    pub plis_sent: u32,
    /// The send-side bandwidth estimate of this peer's connection (0: no feedback yet).
    pub send_estimate_kbps: f64,
    /// The camera layer this peer gets: `main`, or `low` while its path cannot carry the
    /// main one.
    pub layer: &'static str,
    /// How far audio playout trailed video decoding for the last frame (ms; positive: video
    /// was held that long to match the audio), from the RTCP sender reports.
    pub av_offset_ms: f64,
}

/// Everyone's figures at one moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CallStats {
    pub peers: Vec<PeerReport>,
    /// What we send, and why (absent before the first call).
    pub send: Option<SendReport>,
}

/// The send side: what the path is estimated to carry and what the encoders aim at.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SendReport {
    /// The lowest send-side estimate among the peers (0: no feedback yet).
    pub estimate_kbps: f64,
    pub video_target_kbps: f64,
    pub audio_target_kbps: f64,
    /// The size of the video we send now.
    pub width: u32,
    pub height: u32,
    /// Every n-th camera frame is sent (1: all).
    pub frame_divider: u8,
    /// What holds the video below its configured bitrate: `none` or `bandwidth`.
    pub limited_by: &'static str,
    /// The low camera layer, while some peer's path cannot carry the main one
    /// (`core::layers`); the figures above are the main layer's.
    pub low: Option<LayerReport>,
}

/// The low camera layer (mesh rooms with a slow member).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LayerReport {
    /// The lowest estimate among the peers that get it.
    pub estimate_kbps: f64,
    pub video_target_kbps: f64,
    pub width: u32,
    pub height: u32,
    pub frame_divider: u8,
    /// How many peers get it.
    pub peers: usize,
}

/// The previous snapshot of one participant, for rates.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Snapshot {
    pub peer: PeerStats,
    pub frames: u64,
}

/// Builds a report from the snapshot before and now, `elapsed` apart.
pub(crate) fn report(
    id: &str,
    before: Snapshot,
    now: Snapshot,
    elapsed: Duration,
    jitter: JitterStats,
    video_losses: u64,
) -> PeerReport {
    let secs = elapsed.as_secs_f64().max(1e-3);
    let kbps = |a: u64, b: u64| b.saturating_sub(a) as f64 * 8.0 / 1000.0 / secs;
    let received = now
        .peer
        .packets_received
        .saturating_sub(before.peer.packets_received) as f64;
    let lost = (now.peer.packets_lost - before.peer.packets_lost).max(0) as f64;
    PeerReport {
        id: id.to_owned(),
        rtt_ms: now.peer.rtt_ms,
        relayed: now.peer.relayed,
        loss_percent: if received + lost > 0.0 {
            100.0 * lost / (received + lost)
        } else {
            0.0
        },
        audio_jitter_ms: now.peer.audio_jitter_ms,
        video_jitter_ms: now.peer.video_jitter_ms,
        rx_kbps: kbps(before.peer.bytes_received, now.peer.bytes_received),
        tx_kbps: kbps(before.peer.bytes_sent, now.peer.bytes_sent),
        fps: now.frames.saturating_sub(before.frames) as f64 / secs,
        frames_decoded: now.frames,
        video_losses,
        audio_delay_ms: jitter.target.as_secs_f64() * 1000.0,
        audio_concealed: jitter.concealed,
        audio_lost: jitter.lost,
        nacks_sent: now.peer.nacks_sent,
        plis_sent: now.peer.plis_sent,
        send_estimate_kbps: f64::from(now.peer.send_estimate_bps) / 1000.0,
        layer: "main",
        av_offset_ms: 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_differences() {
        let before = Snapshot {
            peer: PeerStats {
                bytes_received: 1_000,
                bytes_sent: 0,
                packets_received: 100,
                packets_lost: 0,
                ..PeerStats::default()
            },
            frames: 10,
        };
        let now = Snapshot {
            peer: PeerStats {
                bytes_received: 126_000,
                bytes_sent: 250_000,
                packets_received: 195,
                packets_lost: 5,
                rtt_ms: 0.4,
                ..PeerStats::default()
            },
            frames: 40,
        };
        let r = report(
            "a",
            before,
            now,
            Duration::from_secs(1),
            JitterStats::default(),
            2,
        );
        assert!((r.rx_kbps - 1000.0).abs() < 1e-9);
        assert!((r.tx_kbps - 2000.0).abs() < 1e-9);
        assert!((r.loss_percent - 5.0).abs() < 1e-9);
        assert!((r.fps - 30.0).abs() < 1e-9);
        assert_eq!(r.frames_decoded, 40);
        assert_eq!(r.video_losses, 2);
    }
}
