//! Which video layer each peer of a mesh gets: the shared encoders make a main layer and,
//! while some peer's path cannot carry it, a second, low one; this decides who gets which.
//!
//! The encoders are shared by every peer (one encoder per peer would not fit the CPU), so
//! without layers the main layer must fit the slowest path and one member on a slow link
//! pulls everyone's picture down. With them:
//!
//! - **The reference** is what the best path carries, at most what the main layer needs at its
//!   configured rate (`full_bps`): a path above that has nothing more to gain.
//! - **Split**: a peer whose estimate is under [`SPLIT`] times the reference moves to the low
//!   layer at once (each moment it stays on the main layer holds the others down). The best
//!   peer never splits, so the main layer always has someone.
//! - **Merge**: a peer on the low layer comes back when its estimate has been at least
//!   [`MERGE`] times the reference for [`MERGE_AFTER`], well above the split point, so a path
//!   near the boundary does not flip between layers (each switch costs a keyframe). Its
//!   estimate can show a path that recovered: the low layer follows its estimate upward, and
//!   the estimator grows past what is sent (up to twice what arrives).
//! - **One peer** (or one with feedback so far) is always on the main layer: the main layer
//!   follows its path and a second layer would only cost CPU.
//! - **Slow paths all round** (a reference under [`MIN_REFERENCE_BPS`]) split nobody: a main
//!   layer at 250 kbit/s is not worth a second encoder and its keyframes over one at
//!   120 kbit/s (a member on a slow link sees its three peers so).
//!
//! Sans-IO: time is an input.

use std::collections::BTreeMap;
use std::time::Duration;

/// Under this share of the reference a peer's path gets the low layer.
pub const SPLIT: f64 = 0.5;
/// At this share of the reference, for [`MERGE_AFTER`], a peer gets the main layer again.
pub const MERGE: f64 = 0.75;
/// See [`MERGE`].
pub const MERGE_AFTER: Duration = Duration::from_secs(5);
/// Under this reference nobody is split off.
pub const MIN_REFERENCE_BPS: u32 = 400_000;

/// One of the two camera layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Layer {
    /// The one most peers get: the best paths' rate, up to the configured one.
    #[default]
    Main,
    /// The one for paths that cannot carry the main layer.
    Low,
}

#[derive(Debug, Clone, Copy, Default)]
struct PeerLayer {
    layer: Layer,
    /// Since when this low peer's estimate has allowed the main layer.
    merge_since: Option<Duration>,
}

/// The layer choice of one sender, for peers keyed by `K`.
#[derive(Debug, Clone)]
pub struct Layers<K> {
    /// The estimate that carries the main layer at its configured rate.
    full_bps: u32,
    peers: BTreeMap<K, PeerLayer>,
}

impl<K: Ord + Clone> Layers<K> {
    #[must_use]
    pub const fn new(full_bps: u32) -> Self {
        Self {
            full_bps,
            peers: BTreeMap::new(),
        }
    }

    /// Takes the connected peers' estimates (`None`: no feedback yet) at `now`; peers not
    /// listed are forgotten. Returns nothing: ask [`Layers::layer`].
    pub fn update(&mut self, now: Duration, estimates: &[(K, Option<u32>)]) {
        self.peers
            .retain(|k, _| estimates.iter().any(|(e, _)| e == k));
        let known: Vec<u32> = estimates.iter().filter_map(|(_, e)| *e).collect();
        let best = known.iter().copied().max().unwrap_or(0);
        let reference = f64::from(best.min(self.full_bps));
        let alone = known.len() < 2;
        for (k, estimate) in estimates {
            let p = self.peers.entry(k.clone()).or_default();
            let Some(estimate) = estimate.map(f64::from) else {
                continue;
            };
            if alone {
                *p = PeerLayer::default();
                continue;
            }
            match p.layer {
                Layer::Main => {
                    if estimate < SPLIT * reference && best >= MIN_REFERENCE_BPS {
                        p.layer = Layer::Low;
                        p.merge_since = None;
                    }
                }
                Layer::Low => {
                    if estimate >= MERGE * reference {
                        let since = *p.merge_since.get_or_insert(now);
                        if now.saturating_sub(since) >= MERGE_AFTER {
                            *p = PeerLayer::default();
                        }
                    } else {
                        p.merge_since = None;
                    }
                }
            }
        }
    }

    /// The layer `peer` gets (the main one for a peer never seen).
    pub fn layer(&self, peer: &K) -> Layer {
        self.peers.get(peer).map_or(Layer::Main, |p| p.layer)
    }

    /// Whether some peer gets the low layer.
    #[cfg(test)]
    fn any_low(&self) -> bool {
        self.peers.values().any(|p| p.layer == Layer::Low)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: u32 = 2_000_000;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run(layers: &mut Layers<&'static str>, from: u64, to: u64, e: &[(&'static str, u32)]) {
        let list: Vec<_> = e.iter().map(|(k, v)| (*k, Some(*v))).collect();
        for t in (from..to).step_by(200) {
            layers.update(ms(t), &list);
        }
    }

    #[test]
    fn one_slow_peer_of_three_gets_the_low_layer_at_once() {
        let mut l = Layers::new(FULL);
        run(
            &mut l,
            0,
            200,
            &[("a", 1_800_000), ("b", 1_500_000), ("d", 150_000)],
        );
        assert_eq!(l.layer(&"a"), Layer::Main);
        assert_eq!(l.layer(&"b"), Layer::Main);
        assert_eq!(l.layer(&"d"), Layer::Low);
        assert!(l.any_low());
    }

    #[test]
    fn a_single_peer_always_gets_the_main_layer() {
        let mut l = Layers::new(FULL);
        run(&mut l, 0, 10_000, &[("a", 100_000)]);
        assert_eq!(l.layer(&"a"), Layer::Main);
        // A slow peer whose fast companion leaves is alone: back to the main layer at once.
        run(&mut l, 10_000, 10_200, &[("a", 100_000), ("b", 1_500_000)]);
        assert_eq!(l.layer(&"a"), Layer::Low);
        run(&mut l, 10_200, 10_400, &[("a", 100_000)]);
        assert_eq!(l.layer(&"a"), Layer::Main);
        assert!(!l.any_low());
    }

    #[test]
    fn peers_without_feedback_do_not_count() {
        let mut l = Layers::new(FULL);
        l.update(ms(0), &[("a", Some(100_000)), ("b", None)]);
        assert_eq!(l.layer(&"a"), Layer::Main);
        assert_eq!(l.layer(&"b"), Layer::Main);
    }

    #[test]
    fn paths_all_above_the_full_rate_stay_on_the_main_layer() {
        // 1.2 Mbit/s is under half of 3 Mbit/s, but the reference is what the main layer needs.
        let mut l = Layers::new(FULL);
        run(&mut l, 0, 5_000, &[("a", 3_000_000), ("b", 1_200_000)]);
        assert_eq!(l.layer(&"b"), Layer::Main);
        run(&mut l, 5_000, 5_200, &[("a", 3_000_000), ("b", 900_000)]);
        assert_eq!(l.layer(&"b"), Layer::Low);
    }

    #[test]
    fn two_slow_peers_both_leave_the_fast_one_alone() {
        let mut l = Layers::new(FULL);
        run(
            &mut l,
            0,
            200,
            &[("a", 1_600_000), ("c", 200_000), ("d", 250_000)],
        );
        assert_eq!(l.layer(&"a"), Layer::Main);
        assert_eq!(l.layer(&"c"), Layer::Low);
        assert_eq!(l.layer(&"d"), Layer::Low);
    }

    #[test]
    fn merging_back_takes_a_steady_recovery() {
        let mut l = Layers::new(FULL);
        run(&mut l, 0, 200, &[("a", 1_600_000), ("d", 300_000)]);
        assert_eq!(l.layer(&"d"), Layer::Low);
        // Between the split and the merge points: it stays low, however long.
        run(&mut l, 200, 30_000, &[("a", 1_600_000), ("d", 1_000_000)]);
        assert_eq!(l.layer(&"d"), Layer::Low);
        // Above the merge point, but not for long enough, twice.
        run(
            &mut l,
            30_000,
            34_000,
            &[("a", 1_600_000), ("d", 1_300_000)],
        );
        run(
            &mut l,
            34_000,
            34_200,
            &[("a", 1_600_000), ("d", 1_000_000)],
        );
        run(
            &mut l,
            34_200,
            39_000,
            &[("a", 1_600_000), ("d", 1_300_000)],
        );
        assert_eq!(l.layer(&"d"), Layer::Low);
        // Held for five seconds: back on the main layer.
        run(
            &mut l,
            39_000,
            39_600,
            &[("a", 1_600_000), ("d", 1_300_000)],
        );
        assert_eq!(l.layer(&"d"), Layer::Main);
    }

    #[test]
    fn a_path_near_the_boundary_does_not_flip() {
        // An estimate that wanders around the split point, as a noisy path's does: every
        // change of layer is counted, and there is one (the first split).
        let mut l = Layers::new(FULL);
        let mut switches = 0;
        let mut last = Layer::Main;
        for i in 0..600u64 {
            let wobble = if i % 7 < 3 { 700_000 } else { 950_000 };
            l.update(ms(i * 200), &[("a", Some(1_600_000)), ("d", Some(wobble))]);
            if l.layer(&"d") != last {
                switches += 1;
                last = l.layer(&"d");
            }
        }
        assert_eq!(switches, 1);
        assert_eq!(last, Layer::Low);
    }

    #[test]
    fn slow_paths_all_round_split_nobody() {
        let mut l = Layers::new(FULL);
        run(
            &mut l,
            0,
            5_000,
            &[("a", 120_000), ("b", 150_000), ("c", 250_000)],
        );
        assert!(!l.any_low());
    }

    #[test]
    fn peers_that_leave_are_forgotten() {
        let mut l = Layers::new(FULL);
        run(&mut l, 0, 200, &[("a", 1_600_000), ("d", 100_000)]);
        assert!(l.any_low());
        run(&mut l, 200, 400, &[("a", 1_600_000), ("b", 1_500_000)]);
        assert!(!l.any_low());
        assert_eq!(l.layer(&"d"), Layer::Main);
    }
}
