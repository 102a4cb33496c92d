//! Puts received video packets back in sequence order and waits, briefly, for lost ones to be
//! retransmitted (NACK) before giving them up. Sans-IO: packets and the time go in, packets in
//! order and "this many were lost" come out.
//!
//! Nothing waits while packets arrive in order, so a clean network adds no delay. A hole holds
//! the packets behind it until the retransmission fills it or the oldest packet held has waited
//! [`MAX_WAIT`]; a hole wider than [`MAX_GAP`] (an outage, a restart) is given up at once, since
//! retransmitting it would take longer than a keyframe.
//!
//! Invariant: no packet is held longer than [`MAX_WAIT`] after it arrived, however many holes
//! lie before it. The wait is measured from the arrival of the oldest packet held, not per
//! hole, so a sender that leaves a hundred small holes costs one wait, not a hundred in turn.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// How long a hole may hold back the packets behind it. A retransmission takes a round trip
/// plus the NACK generator's interval; past this a keyframe is the faster way back.
pub const MAX_WAIT: Duration = Duration::from_millis(250);

/// Holes wider than this are not waited for.
pub const MAX_GAP: u64 = 128;

/// Packets held at most (a few hundred milliseconds of 1080p video).
const CAPACITY: usize = 1024;

/// What the reorder buffer gives back.
#[derive(Debug, PartialEq, Eq)]
pub enum Out<P> {
    /// The next packet, in order.
    Packet(P),
    /// This many packets were lost just before the next one.
    Lost(u64),
}

/// The reorder buffer of one video stream.
#[derive(Debug)]
pub struct Reorder<P> {
    /// The extended sequence number expected next (`None` before the first packet).
    next: Option<u64>,
    held: BTreeMap<u64, P>,
    /// When each held packet arrived, oldest first (entries of packets passed on since are
    /// skipped lazily).
    arrivals: VecDeque<(Instant, u64)>,
}

impl<P> Default for Reorder<P> {
    fn default() -> Self {
        Self {
            next: None,
            held: BTreeMap::new(),
            arrivals: VecDeque::new(),
        }
    }
}

impl<P> Reorder<P> {
    /// Takes one packet; returns what can now be passed on.
    pub fn push(&mut self, sequence: u16, packet: P, now: Instant) -> Vec<Out<P>> {
        let ext = match self.next {
            None => {
                self.next = Some(u64::from(sequence));
                u64::from(sequence)
            }
            Some(next) => {
                // The extended number closest to `next` with these low 16 bits.
                let delta = i64::from(sequence.wrapping_sub(next as u16) as i16);
                let ext = next as i64 + delta;
                if ext < next as i64 {
                    // Late or repeated: already passed on or given up.
                    return Vec::new();
                }
                ext as u64
            }
        };
        if let std::collections::btree_map::Entry::Vacant(slot) = self.held.entry(ext) {
            slot.insert(packet);
            self.arrivals.push_back((now, ext));
        }
        self.drain(now)
    }

    /// When [`Reorder::poll`] should next be called (while a hole is waited for).
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.arrivals.front().map(|&(t, _)| t + MAX_WAIT)
    }

    /// Packets held (for the fuzz target's bound on them).
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held.len()
    }

    /// Most packets held at once.
    #[cfg(test)]
    pub(crate) const CAPACITY: usize = CAPACITY;

    /// Gives up a hole that has waited too long; returns what can now be passed on.
    pub fn poll(&mut self, now: Instant) -> Vec<Out<P>> {
        self.drain(now)
    }

    fn drain(&mut self, now: Instant) -> Vec<Out<P>> {
        let mut out = Vec::new();
        while let Some(next) = self.next {
            if let Some(p) = self.held.remove(&next) {
                out.push(Out::Packet(p));
                self.next = Some(next + 1);
                continue;
            }
            let Some((&first, _)) = self.held.first_key_value() else {
                break;
            };
            let gap = first - next;
            let oldest = self.oldest_arrival(next).unwrap_or(now);
            if gap > MAX_GAP || now >= oldest + MAX_WAIT || self.held.len() > CAPACITY {
                out.push(Out::Lost(gap));
                self.next = Some(first);
                continue;
            }
            break;
        }
        if self.held.is_empty() {
            self.arrivals.clear();
        } else if let Some(next) = self.next {
            self.oldest_arrival(next);
        }
        out
    }

    /// When the oldest packet still held arrived; drops the entries of packets passed on.
    fn oldest_arrival(&mut self, next: u64) -> Option<Instant> {
        while let Some(&(t, ext)) = self.arrivals.front() {
            if ext >= next && self.held.contains_key(&ext) {
                return Some(t);
            }
            self.arrivals.pop_front();
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packets(out: &[Out<u16>]) -> Vec<u16> {
        out.iter()
            .filter_map(|o| match o {
                Out::Packet(p) => Some(*p),
                Out::Lost(_) => None,
            })
            .collect()
    }

    #[test]
    fn in_order_packets_pass_at_once() {
        let mut r = Reorder::default();
        let t = Instant::now();
        for s in [65_534u16, 65_535, 0, 1] {
            assert_eq!(r.push(s, s, t), vec![Out::Packet(s)]);
        }
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_retransmission_fills_the_hole_in_order() {
        let mut r = Reorder::default();
        let t = Instant::now();
        assert_eq!(packets(&r.push(10, 10, t)), vec![10]);
        assert!(r.push(12, 12, t).is_empty());
        assert!(r.push(13, 13, t).is_empty());
        assert_eq!(r.deadline(), Some(t + MAX_WAIT));
        let later = t + Duration::from_millis(30);
        assert!(r.poll(later).is_empty());
        assert_eq!(packets(&r.push(11, 11, later)), vec![11, 12, 13]);
        assert_eq!(r.deadline(), None);
        // The same packet again, or an older one, is ignored.
        assert!(r.push(11, 11, later).is_empty());
        assert!(r.push(9, 9, later).is_empty());
    }

    #[test]
    fn a_hole_is_given_up_after_the_wait() {
        let mut r = Reorder::default();
        let t = Instant::now();
        r.push(1, 1, t);
        assert!(r.push(3, 3, t).is_empty());
        assert!(r.poll(t + MAX_WAIT - Duration::from_millis(1)).is_empty());
        assert_eq!(r.poll(t + MAX_WAIT), vec![Out::Lost(1), Out::Packet(3)]);
        // The lost packet arriving afterwards is too late.
        assert!(r.push(2, 2, t + MAX_WAIT).is_empty());
        assert_eq!(packets(&r.push(4, 4, t + MAX_WAIT)), vec![4]);
    }

    #[test]
    fn many_small_holes_cost_one_wait_not_one_each() {
        // A sender that skips every other sequence number: 200 holes behind each other.
        let mut r = Reorder::default();
        let t = Instant::now();
        r.push(0, 0, t);
        for s in 1..=200u16 {
            assert!(r.push(s * 2, s * 2, t).is_empty());
        }
        assert_eq!(r.deadline(), Some(t + MAX_WAIT));
        let out = r.poll(t + MAX_WAIT);
        assert_eq!(
            packets(&out),
            (1..=200u16).map(|s| s * 2).collect::<Vec<_>>()
        );
        assert_eq!(
            out.iter().filter(|o| matches!(o, Out::Lost(1))).count(),
            200
        );
        assert_eq!(r.deadline(), None);
        assert_eq!(r.held(), 0);
    }

    #[test]
    fn a_later_hole_waits_from_its_own_packets_arrival() {
        let mut r = Reorder::default();
        let t = Instant::now();
        r.push(1, 1, t);
        r.push(3, 3, t);
        let t2 = t + Duration::from_millis(200);
        r.push(5, 5, t2);
        // At t + MAX_WAIT packet 3 has waited long enough; 5 arrived later and still may wait.
        assert_eq!(r.poll(t + MAX_WAIT), vec![Out::Lost(1), Out::Packet(3)]);
        assert_eq!(r.deadline(), Some(t2 + MAX_WAIT));
        assert_eq!(packets(&r.push(4, 4, t + MAX_WAIT)), vec![4, 5]);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn a_wide_hole_is_given_up_at_once() {
        let mut r = Reorder::default();
        let t = Instant::now();
        r.push(100, 100, t);
        let jump = 100 + MAX_GAP as u16 + 2;
        assert_eq!(
            r.push(jump, jump, t),
            vec![Out::Lost(MAX_GAP + 1), Out::Packet(jump)]
        );
    }
}
