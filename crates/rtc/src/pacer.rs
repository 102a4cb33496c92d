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
//! Sans-IO: the chain hands in packets and the time; released packets leave with the release
//! instant as their send time (the congestion controller's send history reads it, so time
//! spent here is not charged to the network).

use std::collections::{HashSet, VecDeque};
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

/// An audio-first pacer for one peer connection (the `Pacer` slot of the interceptor chain).
pub struct AudioFirstPacer {
    bucket: Pacer,
    /// Our audio streams' SSRCs (bound by the chain; as many as we send audio streams).
    audio: HashSet<u32>,
    video: VecDeque<TaggedPacket>,
    dropped: u64,
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
        let ssrc = rtp.header.ssrc;
        let now = msg.now;
        if self.audio.contains(&ssrc) {
            // Audio never waits: it goes now and its bits are taken from what video may send.
            self.bucket.refill(now);
            self.bucket.consume(Self::bits(&msg));
            self.out.push_back(msg);
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
