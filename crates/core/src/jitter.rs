//! An adaptive audio jitter buffer, sans-IO.
//!
//! Packets go in with their RTP timestamp and arrival time; the playout clock pulls one frame
//! per tick with [`JitterBuffer::pop`]. The buffer holds each packet for a target delay that
//! follows the network's jitter: the spread of `arrival − media time` over the last two
//! seconds, plus a small margin, between 10 and 400 ms. When the queue runs deeper than the
//! target (after a burst), a frame is dropped to catch up; when it runs dry the caller
//! conceals and the timeline waits (a pause — mute, DTX — is not loss).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Where the target delay may go.
pub const MIN_DELAY: Duration = Duration::from_millis(10);
pub const MAX_DELAY: Duration = Duration::from_millis(400);
/// Added to the measured spread.
const MARGIN: Duration = Duration::from_millis(10);
/// How far back the spread is measured.
const WINDOW: Duration = Duration::from_secs(2);
/// After this long with nothing to play, output is silence instead of concealment.
const CONCEAL_LIMIT: Duration = Duration::from_millis(100);
/// Packets held at most (a remote may send timestamps far ahead, which are never played):
/// past it the packet furthest ahead is dropped (`JitterStats::overflow_dropped`). At 20 ms a
/// packet this is 5 s of audio, far more than [`MAX_DELAY`] needs.
pub const MAX_PACKETS: usize = 256;
/// Arrival records kept for the delay estimate (its window is 2 s; a remote sending thousands
/// of packets a second would otherwise make each push scan them all).
pub const MAX_TRANSITS: usize = 512;
/// How far ahead of the playout point a packet may be and still be kept.
pub const MAX_AHEAD: Duration = Duration::from_secs(2);

/// What to play for this tick.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout<T> {
    /// Decode this packet.
    Packet(T),
    /// The packet for this tick was lost (later ones are here): conceal, using the in-band FEC
    /// of `next` when present.
    Lost { next: Option<T> },
    /// Nothing arrived yet (late packet or the start of a pause): conceal, the timeline waits.
    Conceal,
    /// Not started, or paused for a while: play silence.
    Silence,
}

/// The adaptive jitter buffer for one stream of fixed-length frames.
#[derive(Debug)]
pub struct JitterBuffer<T> {
    clock_rate: u32,
    frame_ticks: u64,
    packets: BTreeMap<u64, (Duration, T)>,
    /// Extended timestamp of the next frame to play; `None` until started.
    next: Option<u64>,
    /// Buffering (at the start or after a pause): wait for the target delay before playing.
    buffering: bool,
    last_extended: Option<u64>,
    /// (arrival, arrival − media time) over the last [`WINDOW`].
    transits: VecDeque<(Duration, i64)>,
    dry_since: Option<Duration>,
    /// The smallest `arrival − media time` in the window (µs): the fastest path.
    min_transit: i64,
    /// What the network's jitter asks for (`stats.target` adds the lip-sync minimum to it).
    jitter_target: Duration,
    /// The least delay lip sync asks for (audio waiting for late video).
    minimum: Duration,
    stats: JitterStats,
}

/// Counters for the stats panel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    pub played: u64,
    pub lost: u64,
    pub concealed: u64,
    pub late_dropped: u64,
    pub catch_up_dropped: u64,
    /// Packets dropped because they were more than [`MAX_AHEAD`] ahead of playout, or
    /// because [`MAX_PACKETS`] were held.
    pub overflow_dropped: u64,
    /// The current target delay.
    pub target: Duration,
}

impl<T: Clone> JitterBuffer<T> {
    /// A buffer for `clock_rate` Hz timestamps and frames `frame` long (20 ms Opus: 48 kHz).
    #[must_use]
    pub fn new(clock_rate: u32, frame: Duration) -> Self {
        let frame_ticks = (u128::from(clock_rate) * frame.as_micros() / 1_000_000) as u64;
        Self {
            clock_rate: clock_rate.max(1),
            frame_ticks: frame_ticks.max(1),
            packets: BTreeMap::new(),
            next: None,
            buffering: true,
            last_extended: None,
            transits: VecDeque::new(),
            dry_since: None,
            min_transit: 0,
            jitter_target: MIN_DELAY,
            minimum: Duration::ZERO,
            stats: JitterStats {
                target: MIN_DELAY,
                ..JitterStats::default()
            },
        }
    }

    #[must_use]
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// The delay packets are held for now.
    #[must_use]
    pub fn target_delay(&self) -> Duration {
        self.stats.target
    }

    /// The least delay to hold packets for whatever the jitter (lip sync: audio waiting for
    /// video that runs later). Playout reaches a new target by stretching or skipping a frame
    /// at a time, as it does when the jitter changes.
    pub fn set_minimum_delay(&mut self, minimum: Duration) {
        self.minimum = minimum;
        self.update_target();
    }

    fn update_target(&mut self) {
        self.stats.target = self
            .jitter_target
            .max(self.minimum)
            .clamp(MIN_DELAY, MAX_DELAY);
    }

    /// Unwraps a 32-bit RTP timestamp next to the last one seen.
    fn extend(&mut self, ts: u32) -> u64 {
        let extended = match self.last_extended {
            None => u64::from(ts) + (1 << 32),
            Some(last) => {
                let delta = ts.wrapping_sub(last as u32) as i32;
                last.saturating_add_signed(i64::from(delta))
            }
        };
        if self.last_extended.is_none_or(|l| extended > l) {
            self.last_extended = Some(extended);
        }
        extended
    }

    fn media_time_us(&self, extended: u64) -> i64 {
        (u128::from(extended) * 1_000_000 / u128::from(self.clock_rate)) as i64
    }

    /// A packet arrived at `now`.
    pub fn push(&mut self, rtp_timestamp: u32, now: Duration, payload: T) {
        let before = self.last_extended;
        let extended = self.extend(rtp_timestamp);
        // Far ahead of what plays (a broken or hostile sender): not kept, and not allowed to
        // teach the delay estimate either. Only while playing: after a pause (DTX, a muted
        // sender) timestamps legitimately jump ahead, and the buffer is buffering again then.
        if !self.buffering
            && let Some(next) = self.next
            && extended > next + u64::from(self.clock_rate) * MAX_AHEAD.as_secs()
        {
            self.last_extended = before;
            self.stats.overflow_dropped += 1;
            return;
        }
        let transit = now.as_micros() as i64 - self.media_time_us(extended);
        self.transits.push_back((now, transit));
        if self.transits.len() > MAX_TRANSITS {
            self.transits.pop_front();
        }
        while self
            .transits
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > WINDOW)
        {
            self.transits.pop_front();
        }
        let (lo, hi) = self
            .transits
            .iter()
            .fold((i64::MAX, i64::MIN), |(lo, hi), (_, t)| {
                (lo.min(*t), hi.max(*t))
            });
        let spread = Duration::from_micros(hi.saturating_sub(lo).max(0) as u64);
        self.jitter_target = spread + MARGIN;
        self.update_target();
        self.min_transit = lo;
        // Too late to play: it still taught the estimator how late packets come.
        if self.next.is_some_and(|next| extended < next) {
            self.stats.late_dropped += 1;
            return;
        }
        self.packets.insert(extended, (now, payload));
        if self.packets.len() > MAX_PACKETS {
            self.packets.pop_last();
            self.stats.overflow_dropped += 1;
        }
    }

    /// The frame to play at `now` (call once per frame length).
    pub fn pop(&mut self, now: Duration) -> Playout<T> {
        let out = self.play(now);
        // A packet behind the playout point (a timestamp between two frames') can never play:
        // dropped, or it would hold a place the count cap takes from packets that can.
        while let Some(next) = self.next
            && self
                .packets
                .first_key_value()
                .is_some_and(|(ts, _)| *ts < next)
        {
            self.packets.pop_first();
            self.stats.late_dropped += 1;
        }
        out
    }

    fn play(&mut self, now: Duration) -> Playout<T> {
        if self.buffering {
            // Start (or resume) once the oldest packet has waited the target delay.
            let ready = self
                .packets
                .iter()
                .find(|(ts, _)| self.next.is_none_or(|n| **ts >= n))
                .filter(|(_, (arrived, _))| now.saturating_sub(*arrived) >= self.stats.target)
                .map(|(ts, _)| *ts);
            match ready {
                Some(ts) => {
                    self.buffering = false;
                    self.next = Some(ts);
                }
                None => return Playout::Silence,
            }
        }
        let Some(mut next) = self.next else {
            return Playout::Silence;
        };
        // How far playout runs behind media time, against where the target puts it.
        let offset = now.as_micros() as i64 - self.media_time_us(next);
        let desired = self.min_transit + self.stats.target.as_micros() as i64;
        let frame = self.frame().as_micros() as i64;
        if offset < desired - frame / 2 && self.packets.range(next..).next().is_some() {
            // Playout runs ahead of the target (the target rose: more jitter, or lip sync asks
            // for more): stretch by one frame; what is here waits for the next tick.
            self.stats.concealed += 1;
            return Playout::Conceal;
        }
        if let Some((_, payload)) = self.packets.remove(&next) {
            // Too far behind (after a burst, or once the jitter calmed down): skip a frame.
            if offset > desired + 2 * frame
                && let Some((_, later)) = self.packets.remove(&(next + self.frame_ticks))
            {
                self.stats.catch_up_dropped += 1;
                next += self.frame_ticks;
                self.next = Some(next + self.frame_ticks);
                self.dry_since = None;
                self.stats.played += 1;
                return Playout::Packet(later);
            }
            self.next = Some(next + self.frame_ticks);
            self.dry_since = None;
            self.stats.played += 1;
            return Playout::Packet(payload);
        }
        if self.packets.range(next..).next().is_some() {
            // Later packets are here and this one is overdue: lost.
            self.next = Some(next + self.frame_ticks);
            self.stats.lost += 1;
            let fec = self
                .packets
                .get(&(next + self.frame_ticks))
                .map(|(_, p)| p.clone());
            return Playout::Lost { next: fec };
        }
        // Dry: conceal briefly, then call it a pause and buffer again on resumption.
        let since = *self.dry_since.get_or_insert(now);
        if now.saturating_sub(since) >= CONCEAL_LIMIT {
            // A pause (mute, DTX): the sender's clock may not have run over it, so the transit
            // history no longer describes the path. Start measuring afresh on resumption.
            self.buffering = true;
            self.transits.clear();
            return Playout::Silence;
        }
        self.stats.concealed += 1;
        Playout::Conceal
    }

    /// The frame length this buffer steps by.
    #[must_use]
    pub fn frame(&self) -> Duration {
        Duration::from_micros(self.frame_ticks * 1_000_000 / u64::from(self.clock_rate))
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const FRAME: u32 = 960;

    fn buffer() -> JitterBuffer<u32> {
        JitterBuffer::new(48_000, 20 * MS)
    }

    #[test]
    fn steady_stream_plays_every_packet_in_order_after_the_minimum_delay() {
        let mut jb = buffer();
        let mut played = Vec::new();
        for i in 0..50u32 {
            let now = 20 * MS * i;
            jb.push(1_000 + i * FRAME, now, i);
            if let Playout::Packet(p) = jb.pop(now + 5 * MS) {
                played.push(p);
            }
        }
        assert_eq!(played.first(), Some(&0));
        assert!(played.windows(2).all(|w| w[1] == w[0] + 1), "{played:?}");
        assert_eq!(jb.target_delay(), MIN_DELAY);
        assert_eq!(jb.stats().lost, 0);
    }

    #[test]
    fn a_minimum_delay_stretches_playout_to_it_and_back_without_loss() {
        let mut jb = buffer();
        // (tick, timestamp index played)
        let mut played: Vec<(u32, u32)> = Vec::new();
        for i in 0..300u32 {
            let now = 20 * MS * i;
            if i == 100 {
                jb.set_minimum_delay(80 * MS);
            }
            if i == 200 {
                jb.set_minimum_delay(Duration::ZERO);
            }
            jb.push(1_000 + i * FRAME, now, i);
            if let Playout::Packet(p) = jb.pop(now + 5 * MS) {
                played.push((i, p));
            }
        }
        let lag_at = |tick: u32| {
            played
                .iter()
                .find(|(t, _)| *t == tick)
                .map(|(t, p)| (t - p) * 20)
        };
        // Packets arrive on time: one tick behind before, about 70 ms more with the minimum,
        // and back near the jitter's own floor after it.
        let (before, held, after) = (lag_at(90), lag_at(190), lag_at(290));
        eprintln!("{before:?} {held:?} {after:?}");
        assert_eq!(before, Some(20));
        // 70 ms more than the 10 ms floor, reached in 20 ms frames.
        assert!(held.is_some_and(|l| (80..=100).contains(&l)), "{held:?}");
        assert!(after.is_some_and(|l| l <= 60), "{after:?}");
        assert_eq!(jb.target_delay(), MIN_DELAY);
        assert_eq!(jb.stats().lost, 0);
        assert!(jb.stats().concealed >= 3, "{:?}", jb.stats());
        assert!(jb.stats().catch_up_dropped >= 1, "{:?}", jb.stats());
    }

    #[test]
    fn jitter_raises_the_target_and_nothing_is_lost() {
        let mut jb = buffer();
        let mut played = Vec::new();
        // Every third packet is 60 ms late.
        let mut arrivals: Vec<(Duration, u32)> = (0..150u32)
            .map(|i| {
                let late = if i % 3 == 0 { 60 * MS } else { Duration::ZERO };
                (20 * MS * i + late, i)
            })
            .collect();
        arrivals.sort();
        let mut a = arrivals.into_iter().peekable();
        for tick in 0..200u32 {
            let now = 20 * MS * tick;
            while let Some((at, i)) = a.next_if(|(at, _)| *at <= now) {
                jb.push(i.wrapping_mul(FRAME), at, i);
            }
            if let Playout::Packet(p) = jb.pop(now) {
                played.push(p);
            }
        }
        assert!(jb.target_delay() >= 60 * MS, "{:?}", jb.target_delay());
        // Once adapted (the first seconds may lose a few), every packet plays in order.
        let tail: Vec<u32> = played.iter().copied().filter(|p| *p > 60).collect();
        assert!(tail.windows(2).all(|w| w[1] == w[0] + 1), "{tail:?}");
        assert_eq!(tail.last(), Some(&149));
    }

    #[test]
    fn a_lost_packet_is_reported_with_the_next_for_fec() {
        let mut jb = buffer();
        let mut out = Vec::new();
        for i in 0..10u32 {
            let now = 20 * MS * i;
            if i != 4 {
                jb.push(i * FRAME, now, i);
            }
            out.push(jb.pop(now + 40 * MS));
        }
        assert!(out.contains(&Playout::Lost { next: Some(5) }), "{out:?}");
        assert_eq!(jb.stats().lost, 1);
    }

    #[test]
    fn a_pause_then_resumption_buffers_again_without_dropping() {
        let mut jb = buffer();
        for i in 0..5u32 {
            jb.push(i * FRAME, 20 * MS * i, i);
            let _ = jb.pop(20 * MS * i + 25 * MS);
        }
        // Muted for 2 s: the sender's timestamps do not advance over the gap.
        let mut results = Vec::new();
        for tick in 0..100u32 {
            results.push(jb.pop(Duration::from_millis(125) + 20 * MS * tick));
        }
        assert_eq!(results.last(), Some(&Playout::Silence));
        let resume = Duration::from_secs(3);
        let mut played = Vec::new();
        for k in 0..10u32 {
            let now = resume + 20 * MS * k;
            jb.push((5 + k) * FRAME, now, 5 + k);
            if let Playout::Packet(p) = jb.pop(now + 5 * MS) {
                played.push(p);
            }
        }
        assert_eq!(played.first(), Some(&5), "{played:?}");
        assert_eq!(jb.stats().late_dropped, 0);
        assert_eq!(jb.target_delay(), MIN_DELAY);
    }

    #[test]
    fn timestamps_wrap() {
        let mut jb = buffer();
        let start = u32::MAX - 2 * FRAME + 1;
        let mut played = Vec::new();
        for i in 0..6u32 {
            let now = 20 * MS * i;
            jb.push(start.wrapping_add(i * FRAME), now, i);
            if let Playout::Packet(p) = jb.pop(now + 25 * MS) {
                played.push(p);
            }
        }
        assert_eq!(played, vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn packets_from_the_future_and_floods_stay_bounded_and_the_stream_plays_on() {
        let mut jb = buffer();
        let mut played = 0;
        for i in 0..200u32 {
            let now = 20 * MS * i;
            jb.push(1_000 + i * FRAME, now, i);
            // A hostile sender: 50 packets a frame, timestamps up to an hour ahead.
            for k in 0..50u32 {
                jb.push(1_000 + (i + 100 + k * 1_000) * FRAME, now, 0);
            }
            assert!(jb.packets.len() <= MAX_PACKETS);
            assert!(jb.transits.len() <= MAX_TRANSITS);
            if let Playout::Packet(_) = jb.pop(now + 5 * MS) {
                played += 1;
            }
        }
        assert!(jb.stats().overflow_dropped > 0);
        // The real stream kept playing (its packets are the earliest, never the ones dropped).
        assert!(played >= 150, "{played} of 200 played");
    }

    #[test]
    fn packets_off_the_frame_grid_do_not_fill_the_buffer() {
        // A sender of 10 ms frames into a 20 ms buffer: every other packet falls between two
        // playout points and can never play. Found by the jitter_buffer fuzz target: such
        // packets stayed, and once 256 of them were held every new packet was dropped.
        let mut jb = buffer();
        let mut played_late = 0;
        for i in 0..1_000u32 {
            let now = 10 * MS * i;
            jb.push(1_000 + i * FRAME / 2, now, i);
            if i % 2 == 1 {
                let played = matches!(jb.pop(now + 5 * MS), Playout::Packet(_));
                if i >= 800 && played {
                    played_late += 1;
                }
            }
            assert!(jb.packets.len() <= 8, "{} packets held", jb.packets.len());
        }
        assert!(played_late >= 95, "{played_late} of 100 played after 8 s");
        // Held, they took the room a burst of early packets needs: those were dropped.
        assert_eq!(jb.stats().overflow_dropped, 0);
    }

    #[test]
    fn a_long_pause_with_a_timestamp_jump_resumes() {
        let mut jb = buffer();
        let mut played = Vec::new();
        // 1 s of audio, 5 s of nothing (the sender's clock runs on), then 1 s more.
        for i in (0..50u32).chain(300..350) {
            let now = 20 * MS * i;
            jb.push(1_000 + i * FRAME, now, i);
            if let Playout::Packet(p) = jb.pop(now + 5 * MS) {
                played.push(p);
            }
            if i == 49 {
                for t in 50..300u32 {
                    let _ = jb.pop(20 * MS * t + 5 * MS);
                }
            }
        }
        let after: Vec<&u32> = played.iter().filter(|p| **p >= 300).collect();
        assert!(after.len() >= 45, "after the pause: {after:?}");
    }
}
