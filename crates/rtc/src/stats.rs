//! One connection's counters, read from webrtc-rs's stats report.

use std::time::Instant;

use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::statistics::report::RTCStatsReportEntry;
use webrtc::peer_connection::StatsSelector;

use std::sync::atomic::Ordering;

use rtc::peer_connection::transport::RTCIceCandidateType;

use crate::Peer;

/// A snapshot of one connection's counters (cumulative; rates are the caller's differences).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PeerStats {
    /// Round-trip time of the selected candidate pair (STUN), in milliseconds.
    pub rtt_ms: f64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub packets_received: u64,
    /// Packets lost, as counted by the receiver (all inbound streams).
    pub packets_lost: i64,
    /// Inter-arrival jitter of the inbound audio, in milliseconds.
    pub audio_jitter_ms: f64,
    /// Inter-arrival jitter of the inbound video, in milliseconds.
    pub video_jitter_ms: f64,
    pub nacks_sent: u32,
    pub plis_sent: u32,
    /// The send-side bandwidth estimate, in bits per second (0 before any feedback).
    pub send_estimate_bps: u32,
    /// The largest fraction of our packets the remote reported lost in its latest receiver
    /// reports (0 to 1, over our audio and video streams).
    pub remote_loss: f64,
    /// The connection runs through our TURN relay (the selected pair starts at our relay
    /// candidate).
    pub relayed: bool,
}

impl Peer {
    /// The connection's counters now.
    pub async fn stats(&self) -> PeerStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let mut stats = PeerStats::default();
        if let Some(pair) = report
            .candidate_pairs()
            .find(|p| p.nominated)
            .or_else(|| report.candidate_pairs().max_by_key(|p| p.bytes_received))
        {
            stats.rtt_ms = pair.current_round_trip_time * 1000.0;
            stats.bytes_sent = pair.bytes_sent;
            stats.bytes_received = pair.bytes_received;
            // rtc 0.21.1 names a local candidate's entry `RTCLocalIceCandidate_<id>` and
            // refers to it from the pair by `<id>` alone; either form is taken.
            let local = format!("RTCLocalIceCandidate_{}", pair.local_candidate_id);
            stats.relayed = report.iter().any(|e| {
                matches!(e, RTCStatsReportEntry::LocalCandidate(c)
                    if (c.stats.id == local || c.stats.id == pair.local_candidate_id)
                        && c.candidate_type == RTCIceCandidateType::Relay)
            });
            // A pair is picked: the driver needs bounded sleeps only if it is relayed
            // (`runtime.rs`).
            if self.shared.turn_configured
                && pair.nominated
                && !self.shared.closed.load(Ordering::Relaxed)
            {
                self.shared.relay_pump.set(stats.relayed);
            }
        }
        for inbound in report.inbound_rtp_streams() {
            let received = &inbound.received_rtp_stream_stats;
            stats.packets_received += received.packets_received;
            stats.packets_lost += received.packets_lost;
            // webrtc-rs reports the receiver report's jitter as is: in RTP timestamp units.
            if received.rtp_stream_stats.kind == RtpCodecKind::Video {
                stats.video_jitter_ms = received.jitter / 90.0;
            } else {
                stats.audio_jitter_ms = received.jitter / 48.0;
            }
            stats.nacks_sent += inbound.nack_count;
            stats.plis_sent += inbound.pli_count;
        }
        for entry in report.iter() {
            if let RTCStatsReportEntry::RemoteInboundRtp(remote) = entry {
                stats.remote_loss = stats.remote_loss.max(remote.fraction_lost);
            }
        }
        stats.send_estimate_bps = self.send_estimate_bps().unwrap_or(0);
        stats
    }
}
