//! What goes to one consumer, sans-IO (time is an input).
//!
//! A producer may send several simulcast layers (each its own SSRC, named by rid); a consumer
//! receives one stream with one SSRC. [`LayerSelector`] picks the layer its bandwidth estimate
//! and its requested size allow; [`Forwarder`] switches to it at the layer's next keyframe
//! (asking the producer for one, rate limited) and renumbers every packet it forwards so that
//! the consumer sees one continuous stream: sequence numbers follow on from the last packet
//! sent whatever layer they came from, and timestamps advance by the wall time between the
//! last packet of the old layer and the first of the new. A pause (the consumer's, until
//! `resume-consumer`) drops packets; the stream continues after it without a gap in sequence
//! numbers (a gap would be read as loss and NACKed). Payload types and header extension ids
//! are rewritten by the driver from [`crate::ortc`]'s mappings.

use std::time::Duration;

use liveloop_proto::sfu::MediaKind;

/// A higher layer is taken when the estimate has carried its bitrate with this headroom for
/// [`UPGRADE_AFTER`]: each switch costs a keyframe, so a path near the boundary must not flip.
pub const UPGRADE_HEADROOM: f64 = 1.25;
pub const UPGRADE_AFTER: Duration = Duration::from_secs(2);
/// At most one keyframe request per layer this often (a keyframe is several times a normal
/// frame; asking faster than one arrives only makes the producer send more of them).
pub const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);
/// After a switch, packets of the new layer older than its keyframe are dropped (they would
/// reuse sequence numbers already sent) until this many newer ones have gone out.
const SWITCH_GUARD: u16 = 1000;

/// One simulcast layer as the SFU sees it arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerInfo {
    /// The picture height it carries (from the producer's `scaleResolutionDownBy`, or
    /// measured).
    pub height: u32,
    /// What it has been arriving at.
    pub bitrate_bps: u32,
    /// Packets arrived lately (a sender may stop a layer when its own uplink is short).
    pub active: bool,
}

/// Chooses a consumer's layer: the highest active layer no taller than the size it asked for
/// whose bitrate its estimate carries; the lowest active one when none fits. Down at once,
/// up after [`UPGRADE_AFTER`] with [`UPGRADE_HEADROOM`]. Layers are given lowest first.
#[derive(Debug, Clone, Default)]
pub struct LayerSelector {
    chosen: Option<usize>,
    /// The higher layer that has fitted, and since when.
    up: Option<(usize, Duration)>,
}

impl LayerSelector {
    /// The layer for now. `estimate_bps` is the consumer's bandwidth estimate (none yet: the
    /// best layer its size allows, and the estimate corrects it once feedback comes);
    /// `max_height` is the size its largest tile needs (none: any).
    pub fn select(
        &mut self,
        now: Duration,
        layers: &[LayerInfo],
        estimate_bps: Option<u32>,
        max_height: Option<u32>,
    ) -> usize {
        let active: Vec<usize> = (0..layers.len())
            .filter(|&i| layers.get(i).is_some_and(|l| l.active))
            .collect();
        let Some(&lowest) = active.first() else {
            // Nothing arrives: keep what was chosen (packets will say when a layer comes back).
            return self.chosen.unwrap_or(0);
        };
        let height_ok = |i: usize| {
            max_height.is_none_or(|h| layers.get(i).is_some_and(|l| l.height <= h)) || i == lowest
        };
        let fits = |i: usize, headroom: f64| {
            estimate_bps.is_none_or(|e| {
                layers
                    .get(i)
                    .is_some_and(|l| f64::from(l.bitrate_bps) * headroom <= f64::from(e))
            })
        };
        let best = |headroom: f64| {
            active
                .iter()
                .copied()
                .rfind(|&i| height_ok(i) && fits(i, headroom))
                .unwrap_or(lowest)
        };
        let plain = best(1.0);
        let current = match self.chosen {
            Some(c) if active.contains(&c) && height_ok(c) => c,
            // First choice, or the layer stopped or is now too tall: take the best at once.
            _ => {
                self.chosen = Some(plain);
                self.up = None;
                return plain;
            }
        };
        if plain < current {
            self.chosen = Some(plain);
            self.up = None;
            return plain;
        }
        let higher = best(UPGRADE_HEADROOM);
        if higher > current {
            match self.up {
                Some((layer, since)) if layer == higher => {
                    if now.saturating_sub(since) >= UPGRADE_AFTER {
                        self.chosen = Some(higher);
                        self.up = None;
                        return higher;
                    }
                }
                _ => self.up = Some((higher, now)),
            }
        } else {
            self.up = None;
        }
        current
    }
}

/// One packet of the producer, as the forwarder needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketIn {
    /// Which of the producer's layers it came on (0: the only one, or the lowest).
    pub layer: usize,
    pub seq: u16,
    pub timestamp: u32,
    /// It starts a keyframe (video), so a decoder can start from it.
    pub keyframe_start: bool,
}

/// The renumbering of a forwarded packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketOut {
    pub seq: u16,
    pub timestamp: u32,
}

/// The outgoing stream of one consumer.
#[derive(Debug, Clone)]
pub struct Forwarder {
    kind: MediaKind,
    clock_rate: u32,
    paused: bool,
    target: usize,
    /// The layer being forwarded; `None` before the first packet and after a pause.
    current: Option<usize>,
    seq_delta: u16,
    ts_delta: u32,
    /// The newest packet sent: its sequence number, timestamp, and when.
    last: Option<(u16, u32, Duration)>,
    /// The incoming sequence number a switch started at, while older packets may still come.
    switched_at: Option<u16>,
    last_request: Option<(usize, Duration)>,
}

impl Forwarder {
    /// A consumer's stream, paused (seed 002: consumers start paused until
    /// `resume-consumer`).
    #[must_use]
    pub fn new(kind: MediaKind, clock_rate: u32) -> Self {
        Self {
            kind,
            clock_rate: clock_rate.max(1),
            paused: true,
            target: 0,
            current: None,
            seq_delta: 0,
            ts_delta: 0,
            last: None,
            switched_at: None,
            last_request: None,
        }
    }

    pub fn pause(&mut self) {
        self.paused = true;
        self.current = None;
    }

    /// Sends again from the next packet (audio) or the next keyframe (video).
    pub fn resume(&mut self) {
        self.paused = false;
    }

    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The layer to switch to (at its next keyframe).
    pub fn set_target(&mut self, layer: usize) {
        self.target = layer;
    }

    /// The layer being sent, if any.
    #[must_use]
    pub fn current(&self) -> Option<usize> {
        self.current
    }

    /// Whether the producer should be asked for a keyframe of a layer now: the consumer waits
    /// for one (a switch, a resume, its first picture), at most once per
    /// [`KEYFRAME_REQUEST_INTERVAL`] per layer.
    pub fn keyframe_request(&mut self, now: Duration) -> Option<usize> {
        if self.paused || self.kind == MediaKind::Audio || self.current == Some(self.target) {
            return None;
        }
        if let Some((layer, at)) = self.last_request
            && layer == self.target
            && now.saturating_sub(at) < KEYFRAME_REQUEST_INTERVAL
        {
            return None;
        }
        self.last_request = Some((self.target, now));
        Some(self.target)
    }

    /// What to do with a packet of the producer that arrived at `now`: its new numbers, or
    /// `None` (dropped: paused, another layer, or waiting for a keyframe).
    pub fn forward(&mut self, now: Duration, p: PacketIn) -> Option<PacketOut> {
        if self.paused {
            return None;
        }
        let startable = self.kind == MediaKind::Audio || p.keyframe_start;
        if p.layer == self.target && self.current != Some(self.target) && startable {
            self.start(now, p);
        }
        if self.current != Some(p.layer) {
            return None;
        }
        if let Some(at) = self.switched_at {
            let since = p.seq.wrapping_sub(at);
            if since > 0x8000 {
                // Older than the packet the switch began at: its number is already taken.
                return None;
            }
            if since > SWITCH_GUARD {
                self.switched_at = None;
            }
        }
        let out = PacketOut {
            seq: p.seq.wrapping_add(self.seq_delta),
            timestamp: p.timestamp.wrapping_add(self.ts_delta),
        };
        let newer = self
            .last
            .is_none_or(|(seq, _, _)| out.seq.wrapping_sub(seq) < 0x8000 && out.seq != seq);
        if newer {
            self.last = Some((out.seq, out.timestamp, now));
        }
        Some(out)
    }

    /// Begins forwarding `p`'s layer with `p`: it follows on from the last packet sent.
    fn start(&mut self, now: Duration, p: PacketIn) {
        if let Some((seq, ts, at)) = self.last {
            let elapsed = now.saturating_sub(at);
            let ticks = (elapsed.as_micros() * u128::from(self.clock_rate) / 1_000_000)
                .clamp(1, u128::from(u32::MAX / 2));
            self.seq_delta = seq.wrapping_add(1).wrapping_sub(p.seq);
            // Bounded by the clamp above: fits in u32.
            let ticks = u32::try_from(ticks).unwrap_or(1);
            self.ts_delta = ts.wrapping_add(ticks).wrapping_sub(p.timestamp);
        }
        self.current = Some(p.layer);
        self.switched_at = Some(p.seq);
    }
}

/// Keyframe requests (PLI, FIR) from consumers go to the producer at most once per
/// [`KEYFRAME_REQUEST_INTERVAL`] per layer: ten consumers joining at once cost one keyframe.
#[derive(Debug, Clone, Default)]
pub struct KeyframeLimiter {
    last: Vec<Option<Duration>>,
}

impl KeyframeLimiter {
    /// Whether a request for `layer` at `now` goes on to the producer.
    pub fn allow(&mut self, now: Duration, layer: usize) -> bool {
        if layer >= 16 {
            return false;
        }
        if self.last.len() <= layer {
            self.last.resize(layer + 1, None);
        }
        let Some(slot) = self.last.get_mut(layer) else {
            return false;
        };
        if slot.is_some_and(|at| now.saturating_sub(at) < KEYFRAME_REQUEST_INTERVAL) {
            return false;
        }
        *slot = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn layers(low_bps: u32, high_bps: u32) -> Vec<LayerInfo> {
        vec![
            LayerInfo {
                height: 180,
                bitrate_bps: low_bps,
                active: true,
            },
            LayerInfo {
                height: 720,
                bitrate_bps: high_bps,
                active: true,
            },
        ]
    }

    #[test]
    fn the_layer_follows_the_estimate_down_at_once_and_up_after_a_while() {
        let l = layers(150_000, 900_000);
        let mut s = LayerSelector::default();
        // No estimate yet: the best the size allows.
        assert_eq!(s.select(Duration::ZERO, &l, None, None), 1);
        // A 500 kbit/s path: the low layer, at once.
        assert_eq!(s.select(100 * MS, &l, Some(500_000), None), 0);
        // It recovers to 1 Mbit/s: not enough headroom (900 × 1.25), stays low.
        assert_eq!(s.select(200 * MS, &l, Some(1_000_000), None), 0);
        // 1.2 Mbit/s: up only after two seconds of it.
        assert_eq!(s.select(300 * MS, &l, Some(1_200_000), None), 0);
        assert_eq!(s.select(2_000 * MS, &l, Some(1_200_000), None), 0);
        assert_eq!(s.select(2_300 * MS, &l, Some(1_200_000), None), 1);
        // A dip in between restarts the wait.
        assert_eq!(s.select(2_400 * MS, &l, Some(400_000), None), 0);
        assert_eq!(s.select(2_500 * MS, &l, Some(1_200_000), None), 0);
        assert_eq!(s.select(3_000 * MS, &l, Some(800_000), None), 0);
        assert_eq!(s.select(4_600 * MS, &l, Some(1_200_000), None), 0);
    }

    #[test]
    fn a_small_tile_or_a_stopped_layer_gets_the_low_one() {
        let mut l = layers(150_000, 900_000);
        let mut s = LayerSelector::default();
        assert_eq!(s.select(Duration::ZERO, &l, Some(5_000_000), Some(180)), 0);
        assert_eq!(s.select(Duration::ZERO, &l, Some(5_000_000), Some(1080)), 0);
        assert_eq!(s.select(3_000 * MS, &l, Some(5_000_000), Some(1080)), 1);
        // The tile shrinks: down at once.
        assert_eq!(s.select(3_100 * MS, &l, Some(5_000_000), Some(360)), 0);
        // The sender stops its high layer.
        l[1].active = false;
        assert_eq!(s.select(9_000 * MS, &l, Some(5_000_000), None), 0);
        // Not even the low layer fits: it is still the one sent.
        l[1].active = true;
        assert_eq!(s.select(9_100 * MS, &l, Some(50_000), None), 0);
        // Nothing arrives: the choice stands.
        let none: Vec<LayerInfo> = l
            .iter()
            .map(|x| LayerInfo {
                active: false,
                ..*x
            })
            .collect();
        assert_eq!(s.select(9_200 * MS, &none, Some(5_000_000), None), 0);
    }

    fn packet(layer: usize, seq: u16, timestamp: u32, keyframe_start: bool) -> PacketIn {
        PacketIn {
            layer,
            seq,
            timestamp,
            keyframe_start,
        }
    }

    #[test]
    fn a_switch_waits_for_a_keyframe_and_numbers_follow_on() {
        let mut f = Forwarder::new(MediaKind::Video, 90_000);
        // Paused until resumed: nothing goes out, nothing is asked for.
        assert_eq!(f.forward(Duration::ZERO, packet(0, 10, 1000, true)), None);
        assert_eq!(f.keyframe_request(Duration::ZERO), None);
        f.resume();
        // Waiting for its first keyframe: asked for, at most every 500 ms.
        assert_eq!(f.keyframe_request(Duration::ZERO), Some(0));
        assert_eq!(f.keyframe_request(100 * MS), None);
        assert_eq!(f.forward(10 * MS, packet(0, 11, 1000, false)), None);
        assert_eq!(f.keyframe_request(600 * MS), Some(0));
        let first = f.forward(600 * MS, packet(0, 12, 4000, true)).unwrap();
        assert_eq!(f.keyframe_request(700 * MS), None, "it has its keyframe");
        let second = f.forward(633 * MS, packet(0, 13, 7000, false)).unwrap();
        assert_eq!(second.seq, first.seq.wrapping_add(1));
        assert_eq!(second.timestamp, first.timestamp + 3000);
        // Switch to layer 1 (its own numbers): layer 0 goes on until layer 1's keyframe.
        f.set_target(1);
        assert_eq!(f.keyframe_request(700 * MS), Some(1));
        assert_eq!(f.forward(666 * MS, packet(1, 50_000, 90, false)), None);
        let third = f.forward(666 * MS, packet(0, 14, 10_000, false)).unwrap();
        let key = f.forward(700 * MS, packet(1, 50_001, 123, true)).unwrap();
        assert_eq!(key.seq, third.seq.wrapping_add(1));
        // 34 ms later at 90 kHz.
        assert_eq!(key.timestamp, third.timestamp + 34 * 90);
        // The old layer is dropped now, and a late packet of the new layer from before its
        // keyframe too (its number was taken).
        assert_eq!(f.forward(701 * MS, packet(0, 15, 13_000, false)), None);
        assert_eq!(f.forward(702 * MS, packet(1, 50_000, 90, false)), None);
        let next = f.forward(733 * MS, packet(1, 50_002, 3123, false)).unwrap();
        assert_eq!(next.seq, key.seq.wrapping_add(1));
        assert_eq!(next.timestamp, key.timestamp + 3000);
        // Reordering within the layer keeps its order.
        let later = f.forward(766 * MS, packet(1, 50_004, 6123, false)).unwrap();
        let between = f.forward(767 * MS, packet(1, 50_003, 6123, false)).unwrap();
        assert_eq!(between.seq, next.seq.wrapping_add(1));
        assert_eq!(later.seq, next.seq.wrapping_add(2));
    }

    #[test]
    fn sequence_numbers_wrap_and_the_switch_guard_expires() {
        let mut f = Forwarder::new(MediaKind::Video, 90_000);
        f.resume();
        let start = f
            .forward(Duration::ZERO, packet(0, 65_000, 0, true))
            .unwrap();
        // Through the wrap and two thousand packets on: every one forwarded, in order.
        let mut last = start.seq;
        for i in 1..70_000u32 {
            let seq = (65_000 + i) as u16;
            let out = f
                .forward(
                    Duration::from_millis(u64::from(i)),
                    packet(0, seq, i * 90, false),
                )
                .unwrap_or_else(|| panic!("packet {i} dropped"));
            assert_eq!(out.seq, last.wrapping_add(1));
            last = out.seq;
        }
    }

    #[test]
    fn audio_resumes_without_a_gap_in_its_numbers() {
        let mut f = Forwarder::new(MediaKind::Audio, 48_000);
        f.resume();
        let a = f.forward(Duration::ZERO, packet(0, 100, 0, false)).unwrap();
        assert_eq!(f.keyframe_request(Duration::ZERO), None);
        f.pause();
        assert_eq!(f.forward(20 * MS, packet(0, 101, 960, false)), None);
        f.resume();
        // 2 s later the producer is 100 packets on; the consumer's next number is a's + 1.
        let b = f
            .forward(2_000 * MS, packet(0, 200, 96_000, false))
            .unwrap();
        assert_eq!(b.seq, a.seq.wrapping_add(1));
        assert_eq!(b.timestamp, a.timestamp + 96_000);
    }

    #[test]
    fn keyframe_requests_to_the_producer_are_limited_per_layer() {
        let mut k = KeyframeLimiter::default();
        assert!(k.allow(Duration::ZERO, 0));
        assert!(!k.allow(100 * MS, 0));
        assert!(k.allow(100 * MS, 1));
        assert!(k.allow(500 * MS, 0));
        assert!(!k.allow(500 * MS, 99));
    }
}
