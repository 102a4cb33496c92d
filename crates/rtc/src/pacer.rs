//! The send pacer, audio first: it releases our RTP at the congestion controller's rate (the
//! estimate times [`crate::bwe::PACING_FACTOR`]) so that a keyframe does not burst into a
//! small bottleneck queue, and it never holds audio.
//!
//! webrtc-rs's `PacerInterceptor` keeps one first-in, first-out queue for every stream, so an
//! Opus packet written just after a keyframe waited behind all of it: at 1 Mbit/s a 40 kB
//! keyframe is 130 ms at the pacing rate, a hole in the speech the jitter buffer has to cover.
//! Here audio packets (the local streams bound with an `audio/` codec) leave at once and are
//! charged to the budget, so the video behind them waits instead; video is released in order,
//! when the budget allows. RTCP passes unpaced, as upstream.
//!
//! Retransmissions (a video packet whose sequence number the stream has already sent: we
//! negotiate no RTX, so NACK answers carry the original numbers) have a budget of their own,
//! [`RETRANSMIT_SHARE`] of the estimate; past it they are dropped (and counted). Without it,
//! a receiver behind an overloaded link asked for each lost packet again and the answers
//! filled the pacer's whole rate (2.5 times the estimate): three senders into a 500 kbit/s
//! member sent 290 kbit/s each where the estimate said 100, its link lost 55% for 30 s, and
//! each loss was asked for again (the harness's capped mesh). The encoders aim at 85% of the
//! estimate with audio, so retransmissions within the rest keep the average at the estimate.
//!
//! Sans-IO: the chain hands in packets and the time; released packets leave with the release
//! instant as their send time (the congestion controller's send history reads it, so time
//! spent here is not charged to the network).

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Pacer, Packet, StreamInfo, TaggedPacket};
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;

/// What our streams' pacer may hold: video packets waiting for budget, about 2 s at 1 Mbit/s
/// (a 1080p screen keyframe fits). It paces at 2.5 times the estimate and the encoders aim
/// below the estimate, so the queue is a keyframe at most; past it a new packet is refused
/// (and counted) rather than an older one evicted, which would put a hole in the middle of a
/// frame.
pub const PACER_QUEUE_PACKETS: usize = 256;

/// The share of the estimate that retransmissions may take, on average.
pub const RETRANSMIT_SHARE: f64 = 0.25;
/// The retransmissions that may go at once, whatever the rate (a few holes after a burst of
/// loss), in bits: eight full packets.
const RETRANSMIT_BURST_BITS: f64 = 8.0 * 1200.0 * 8.0;
/// Our video streams whose highest sequence number is remembered: as many as we send, and
/// never more than this (the map is cleared past it; the next packet of each is then taken
/// for new).
const MAX_STREAMS: usize = 64;

/// An audio-first pacer for one peer connection (the `Pacer` slot of the interceptor chain).
pub struct AudioFirstPacer {
    bucket: Pacer,
    /// Our audio streams' SSRCs (bound by the chain; as many as we send audio streams).
    audio: HashSet<u32>,
    video: VecDeque<TaggedPacket>,
    dropped: u64,
    /// The highest sequence number each video stream has sent, to tell retransmissions.
    highest: HashMap<u32, u16>,
    /// What retransmissions may still send (bits), refilled at their share of the estimate.
    retransmit_tokens: f64,
    retransmit_refilled: Option<Instant>,
    retransmissions_dropped: u64,
    /// Released (or unpaced) packets on their way to the next interceptor.
    out: VecDeque<TaggedPacket>,
    /// Inbound packets on their way up.
    read: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for AudioFirstPacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioFirstPacer")
            .field("rate_bps", &self.bucket.target_bitrate())
            .field("audio_streams", &self.audio.len())
            .field("queued", &self.video.len())
            .field("dropped", &self.dropped)
            .field("retransmissions_dropped", &self.retransmissions_dropped)
            .finish_non_exhaustive()
    }
}

impl AudioFirstPacer {
    /// A pacer at `bits_per_second` until the congestion controller says otherwise.
    #[must_use]
    pub fn new(bits_per_second: f64) -> Self {
        Self {
            bucket: Pacer::new(bits_per_second),
            audio: HashSet::new(),
            video: VecDeque::new(),
            dropped: 0,
            highest: HashMap::new(),
            retransmit_tokens: RETRANSMIT_BURST_BITS,
            retransmit_refilled: None,
            retransmissions_dropped: 0,
            out: VecDeque::new(),
            read: VecDeque::new(),
        }
    }

    /// Video packets waiting now (the chain owns the pacer: only its tests can ask).
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.video.len()
    }

    /// Video packets refused because the queue was full.
    #[cfg(test)]
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Retransmissions refused for want of budget.
    #[cfg(test)]
    pub fn retransmissions_dropped(&self) -> u64 {
        self.retransmissions_dropped
    }

    /// Whether a video packet numbered `seq` on `ssrc` is a retransmission (its stream has sent
    /// that number or a later one); remembers the number otherwise.
    fn is_retransmission(&mut self, ssrc: u32, seq: u16) -> bool {
        if let Some(highest) = self.highest.get_mut(&ssrc) {
            // Serial-number arithmetic: up to half the number space ahead is newer.
            let ahead = seq.wrapping_sub(*highest);
            if ahead == 0 || ahead > u16::MAX / 2 {
                return true;
            }
            *highest = seq;
            return false;
        }
        if self.highest.len() >= MAX_STREAMS {
            self.highest.clear();
        }
        self.highest.insert(ssrc, seq);
        false
    }

    /// Takes `bits` from the retransmission budget at `now`, if it has them.
    fn retransmit_allowed(&mut self, bits: f64, now: Instant) -> bool {
        let estimate = self.bucket.target_bitrate() / crate::bwe::PACING_FACTOR;
        let rate = estimate * RETRANSMIT_SHARE;
        let depth = (rate / 4.0).max(RETRANSMIT_BURST_BITS);
        if let Some(last) = self.retransmit_refilled {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.retransmit_tokens = (self.retransmit_tokens + elapsed * rate).min(depth);
        }
        self.retransmit_refilled = Some(now);
        if self.retransmit_tokens >= bits {
            self.retransmit_tokens -= bits;
            true
        } else {
            false
        }
    }

    fn bits(packet: &TaggedPacket) -> f64 {
        match &packet.message.packet {
            Packet::Rtp(rtp) => (rtp.marshal_size() * 8) as f64,
            _ => 0.0,
        }
    }

    /// Releases the video the budget allows at `now`.
    fn release(&mut self, now: Instant) {
        self.bucket.refill(now);
        while let Some(head) = self.video.front() {
            let bits = Self::bits(head);
            if !self.bucket.can_release(bits) {
                break;
            }
            let Some(mut packet) = self.video.pop_front() else {
                break;
            };
            self.bucket.consume(bits);
            packet.now = now;
            self.out.push_back(packet);
        }
    }
}

impl rtc::sansio::Protocol<TaggedPacket, TaggedPacket, ()> for AudioFirstPacer {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        // The controller's new rate rides on inbound feedback (it sits wire-ward of us).
        if let Some(Attribute::TargetBitrateChanged { bits_per_second }) =
            msg.message.get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
        {
            self.bucket.set_target_bitrate(*bits_per_second);
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        // RTCP (and anything else that is not RTP) is control traffic: not paced.
        let Packet::Rtp(rtp) = &msg.message.packet else {
            self.out.push_back(msg);
            return Ok(());
        };
        let (ssrc, seq) = (rtp.header.ssrc, rtp.header.sequence_number);
        let now = msg.now;
        if self.audio.contains(&ssrc) {
            // Audio never waits: it goes now and its bits are taken from what video may send.
            self.bucket.refill(now);
            self.bucket.consume(Self::bits(&msg));
            self.out.push_back(msg);
            return Ok(());
        }
        if self.is_retransmission(ssrc, seq) && !self.retransmit_allowed(Self::bits(&msg), now) {
            self.retransmissions_dropped += 1;
            return Ok(());
        }
        if self.video.len() >= PACER_QUEUE_PACKETS {
            self.dropped += 1;
            return Ok(());
        }
        self.video.push_back(msg);
        self.release(now);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.out.pop_front()
    }

    fn handle_timeout(&mut self, now: Instant) -> Result<(), Error> {
        self.release(now);
        Ok(())
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        let head = self.video.front()?;
        self.bucket.releasable_at(Self::bits(head))
    }
}

impl Interceptor for AudioFirstPacer {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if info
            .mime_type
            .get(..6)
            .is_some_and(|m| m.eq_ignore_ascii_case("audio/"))
        {
            self.audio.insert(info.ssrc);
        }
    }

    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.audio.remove(&info.ssrc);
    }

    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}

    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use bytes::Bytes;
    use rtc::interceptor::AttributedPacket;
    use rtc::sansio::Protocol as _;
    use rtc::shared::{TransportContext, TransportMessage};

    use super::*;

    const AUDIO: u32 = 1;
    const VIDEO: u32 = 2;

    fn rtp(ssrc: u32, seq: u16, bytes: usize, now: Instant) -> TaggedPacket {
        TransportMessage {
            now,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtp(rtc::rtp::Packet {
                header: rtc::rtp::header::Header {
                    version: 2,
                    ssrc,
                    sequence_number: seq,
                    ..Default::default()
                },
                payload: Bytes::from(vec![0u8; bytes]),
            })),
        }
    }

    fn pacer() -> AudioFirstPacer {
        let mut p = AudioFirstPacer::new(1_000_000.0);
        for (ssrc, mime) in [(AUDIO, "audio/opus"), (VIDEO, "video/H264")] {
            p.bind_local_stream(&StreamInfo {
                ssrc,
                mime_type: mime.into(),
                ..StreamInfo::default()
            });
        }
        p
    }

    fn sent(p: &mut AudioFirstPacer) -> Vec<(u32, u16, Instant)> {
        std::iter::from_fn(|| p.poll_write())
            .map(|m| match m.message.packet {
                Packet::Rtp(r) => (r.header.ssrc, r.header.sequence_number, m.now),
                _ => (0, 0, m.now),
            })
            .collect()
    }

    #[test]
    fn audio_written_behind_a_keyframe_leaves_at_once() {
        let mut p = pacer();
        let t = Instant::now();
        // A 40-packet keyframe (48 kB): the budget lets a few go, the rest wait.
        for seq in 0..40 {
            p.handle_write(rtp(VIDEO, seq, 1200, t)).unwrap();
        }
        let first = sent(&mut p);
        assert!(!first.is_empty() && first.len() < 40, "{}", first.len());
        assert_eq!(p.queued(), 40 - first.len());
        // An Opus packet right behind it goes now, ahead of the queued video.
        p.handle_write(rtp(AUDIO, 7, 120, t)).unwrap();
        assert_eq!(sent(&mut p), vec![(AUDIO, 7, t)]);
        // The video follows at the rate, in order, each stamped with its release.
        let mut now = t;
        let mut video = Vec::new();
        while let Some(at) = p.poll_timeout() {
            assert!(at >= now, "a deadline in the past");
            now = at;
            p.handle_timeout(now).unwrap();
            video.extend(sent(&mut p));
        }
        let seqs: Vec<u16> = video.iter().map(|v| v.1).collect();
        assert_eq!(seqs, (first.len() as u16..40).collect::<Vec<_>>());
        assert!(video.iter().all(|v| v.0 == VIDEO && v.2 > t));
        // 48 kB at 1 Mbit/s is about 0.38 s, less the burst that left at once.
        let took = now - t;
        assert!(
            took > Duration::from_millis(250) && took < Duration::from_millis(450),
            "{took:?}"
        );
    }

    #[test]
    fn the_queue_is_capped_and_refuses_the_newest() {
        let mut p = pacer();
        let t = Instant::now();
        for seq in 0..(PACER_QUEUE_PACKETS as u16 + 100) {
            p.handle_write(rtp(VIDEO, seq, 1200, t)).unwrap();
        }
        let first = sent(&mut p).len();
        assert_eq!(p.queued(), PACER_QUEUE_PACKETS);
        assert_eq!(
            p.dropped(),
            (PACER_QUEUE_PACKETS + 100 - first - PACER_QUEUE_PACKETS) as u64
        );
        // Audio still passes.
        p.handle_write(rtp(AUDIO, 1, 120, t)).unwrap();
        assert_eq!(sent(&mut p).len(), 1);
    }

    #[test]
    fn retransmissions_are_held_to_their_share_of_the_estimate() {
        // 1 Mbit/s pacing is an estimate of 400 kbit/s: retransmissions get 100 kbit/s.
        let mut p = pacer();
        let t = Instant::now();
        for seq in 0..100 {
            p.handle_write(rtp(VIDEO, seq, 1200, t)).unwrap();
        }
        // A receiver asks for every packet again, ten times, over a second.
        let mut now = t;
        for round in 0..10u32 {
            now = t + Duration::from_millis(100) * round;
            for seq in 0..100 {
                p.handle_write(rtp(VIDEO, seq, 1200, now)).unwrap();
            }
        }
        // 1000 asked for; a burst of eight and 100 kbit/s over the 0.9 s went (about 17).
        let dropped = p.retransmissions_dropped();
        assert!((975..=995).contains(&dropped), "{dropped}");
        // New packets are not retransmissions, and the sequence space wraps.
        for seq in (100..=u16::MAX).chain(0..5) {
            p.handle_write(rtp(VIDEO, seq, 10, now)).unwrap();
        }
        assert_eq!(p.retransmissions_dropped(), dropped);
        // Audio is never taken for a retransmission.
        for _ in 0..5 {
            p.handle_write(rtp(AUDIO, 7, 120, now)).unwrap();
        }
        assert_eq!(p.retransmissions_dropped(), dropped);
    }

    #[test]
    fn rtcp_and_unknown_streams_are_not_audio() {
        let mut p = pacer();
        let t = Instant::now();
        p.unbind_local_stream(&StreamInfo {
            ssrc: AUDIO,
            ..StreamInfo::default()
        });
        for seq in 0..40 {
            p.handle_write(rtp(VIDEO, seq, 1200, t)).unwrap();
        }
        let _ = sent(&mut p);
        // No longer audio: it queues behind the video.
        p.handle_write(rtp(AUDIO, 1, 120, t)).unwrap();
        assert!(sent(&mut p).is_empty());
        p.handle_write(TransportMessage {
            now: t,
            transport: TransportContext::default(),
            message: AttributedPacket::new(Packet::Rtcp(Vec::new())),
        })
        .unwrap();
        assert_eq!(sent(&mut p).len(), 1, "RTCP is not paced");
    }
}
