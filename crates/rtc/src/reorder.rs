//! Puts received video packets back in sequence order and waits, briefly, for lost ones to be
//! retransmitted (NACK) before giving them up. Sans-IO: packets and the time go in, packets in
//! order and "this many were lost" come out.
//!
//! Nothing waits while packets arrive in order, so a clean network adds no delay. A hole holds
//! the packets behind it until the retransmission fills it or [`MAX_WAIT`] passes; a hole wider
//! than [`MAX_GAP`] (an outage, a restart) is given up at once, since retransmitting it would
//! take longer than a keyframe.

use std::collections::BTreeMap;
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
    /// Since when the packet `next` has been missing while later ones wait.
    waiting_since: Option<Instant>,
}

impl<P> Default for Reorder<P> {
    fn default() -> Self {
        Self {
            next: None,
            held: BTreeMap::new(),
            waiting_since: None,
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
        self.held.entry(ext).or_insert(packet);
        self.drain(now)
    }

    /// When [`Reorder::poll`] should next be called (while a hole is waited for).
    #[must_use]
    pub fn deadline(&self) -> Option<Instant> {
        self.waiting_since.map(|t| t + MAX_WAIT)
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
                self.waiting_since = None;
                continue;
            }
            let Some((&first, _)) = self.held.first_key_value() else {
                self.waiting_since = None;
                break;
            };
            let gap = first - next;
            let since = *self.waiting_since.get_or_insert(now);
            if gap > MAX_GAP || now >= since + MAX_WAIT || self.held.len() > CAPACITY {
                out.push(Out::Lost(gap));
                self.next = Some(first);
                self.waiting_since = None;
                continue;
            }
            break;
        }
        out
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
