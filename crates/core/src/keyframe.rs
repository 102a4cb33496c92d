//! How often a shared encoder makes a keyframe on request. Every peer's PLI or FIR asks the
//! encoder that all peers share for a keyframe, and a keyframe costs several times a normal
//! frame; one peer (lossy, or hostile) must not turn everyone's video into a stream of
//! keyframes. Requests are coalesced: at most one keyframe per [`MIN_INTERVAL`], and a request
//! inside the interval is kept and served when it ends (a receiver that lost its picture does
//! get one). On a slow link the interval also grows with the keyframe's size, so that
//! requested keyframes take at most [`KEYFRAME_SHARE`] of the video's bitrate: behind a link
//! that just fell from 3 Mbit/s to 600 kbit/s, a receiver that loses half the packets asks for
//! a keyframe every 500 ms, and 80 kB 720p keyframes twice a second (1.3 Mbit/s) kept the
//! link overloaded and the picture frozen for 8 s. Sans-IO: time is an input.

use std::time::Duration;

/// The shortest time between two requested keyframes (at most two a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The share of the video's bitrate requested keyframes may take, at most.
pub const KEYFRAME_SHARE: f64 = 0.5;

/// The longest the keyframe budget makes a request wait (a receiver without a picture must
/// get one).
pub const MAX_INTERVAL: Duration = Duration::from_secs(3);

/// The shortest time between two keyframes for a receiver that has no picture at all yet
/// ([`KeyframeGate::request_now`]: a peer just connected). Only our own events ask for these,
/// never a remote's PLI; the floor bounds a peer that reconnects over and over.
pub const URGENT_INTERVAL: Duration = Duration::from_millis(100);

/// The keyframe gate of one encoder.
#[derive(Debug, Clone, Default)]
pub struct KeyframeGate {
    last: Option<Duration>,
    pending: bool,
    /// How long after `last` the next requested keyframe may come.
    interval: Duration,
    /// The keyframe `due` granted has not been reported by `sent` yet.
    granted: bool,
    /// The pending request is for a receiver with no picture yet.
    urgent: bool,
}

impl KeyframeGate {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Someone asked for a keyframe.
    pub fn request(&mut self) {
        self.pending = true;
    }

    /// A receiver that has no picture at all yet (a peer just connected): served at the next
    /// frame unless a keyframe left in the last [`URGENT_INTERVAL`]. Without this, the
    /// keyframe the encoder made at its start held a new peer's first picture back by up to
    /// [`MIN_INTERVAL`] (join → first frame p95 674 ms against p50 120 ms).
    pub fn request_now(&mut self) {
        self.pending = true;
        self.urgent = true;
    }

    /// Whether the frame encoded at `now` should be a keyframe.
    pub fn due(&mut self, now: Duration) -> bool {
        let interval = if self.urgent {
            URGENT_INTERVAL
        } else {
            self.interval.max(MIN_INTERVAL)
        };
        if !self.pending || self.last.is_some_and(|t| now.saturating_sub(t) < interval) {
            return false;
        }
        self.pending = false;
        self.urgent = false;
        self.last = Some(now);
        self.interval = MIN_INTERVAL;
        self.granted = true;
        true
    }

    /// A keyframe of `bytes` left the encoder at `now`, with the video at `video_bps`. One that
    /// was asked for (granted by [`KeyframeGate::due`]) makes the next request wait until it
    /// has taken no more than [`KEYFRAME_SHARE`] of that, from [`MIN_INTERVAL`] up to
    /// [`MAX_INTERVAL`]. One the encoder made of its own (a new size) only starts the usual
    /// [`MIN_INTERVAL`]: a size stepped down during an outage must not hold back the keyframe
    /// the receiver asks for when the link returns (it did, by 800 ms).
    pub fn sent(&mut self, now: Duration, bytes: usize, video_bps: u32) {
        self.last = Some(now);
        if !std::mem::take(&mut self.granted) {
            self.interval = MIN_INTERVAL;
            return;
        }
        let budget = f64::from(video_bps.max(1)) * KEYFRAME_SHARE;
        let wait = Duration::from_secs_f64((bytes as f64 * 8.0 / budget).min(60.0));
        self.interval = wait.clamp(MIN_INTERVAL, MAX_INTERVAL);
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_receiver_gets_its_keyframe_at_once_and_a_pli_waits_its_turn() {
        let mut g = KeyframeGate::new();
        // The encoder's own first keyframe, at its start.
        g.sent(Duration::ZERO, 40_000, 1_000_000);
        // A PLI 80 ms later waits for the interval...
        g.request();
        assert!(!g.due(Duration::from_millis(80)));
        // ...but a peer that just connected is served at the next frame.
        g.request_now();
        assert!(g.due(Duration::from_millis(113)));
        g.sent(Duration::from_millis(113), 40_000, 1_000_000);
        // Urgent requests still have a floor, and then wait for nothing more.
        g.request_now();
        assert!(!g.due(Duration::from_millis(150)));
        assert!(g.due(Duration::from_millis(213)));
        g.sent(Duration::from_millis(213), 40_000, 1_000_000);
        // An ordinary request after it waits for the budget again (40 kB at half of
        // 1 Mbit/s: 640 ms).
        g.request();
        assert!(!g.due(Duration::from_millis(800)));
        assert!(g.due(Duration::from_millis(860)));
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn big_keyframes_on_a_slow_link_are_spaced_by_their_size() {
        let mut gate = KeyframeGate::new();
        // A requested 80 kB keyframe with the video at 400 kbit/s: 640 kbit, 3.2 s of half
        // the rate, capped at 3 s.
        gate.request();
        assert!(gate.due(Duration::ZERO));
        gate.sent(Duration::ZERO, 80_000, 400_000);
        gate.request();
        assert!(!gate.due(2900 * MS));
        assert!(gate.due(3000 * MS));
        // A small one (8 kB at 1 Mbit/s: 128 ms) leaves the 500 ms floor.
        gate.sent(3000 * MS, 8_000, 1_000_000);
        gate.request();
        assert!(!gate.due(3400 * MS));
        assert!(gate.due(3500 * MS));
        gate.sent(3500 * MS, 8_000, 1_000_000);
        // A keyframe the encoder made of its own (a new size), however big, only starts the
        // usual 500 ms.
        gate.sent(5000 * MS, 80_000, 100_000);
        gate.request();
        assert!(!gate.due(5400 * MS));
        assert!(gate.due(5500 * MS));
    }

    #[test]
    fn a_flood_of_requests_gives_two_keyframes_a_second_and_none_is_lost() {
        let mut gate = KeyframeGate::new();
        let mut keyframes = 0;
        // 30 fps for 3 s, a request before every frame (a PLI flood).
        for frame in 0..90u32 {
            gate.request();
            if gate.due(frame * 33 * MS) {
                keyframes += 1;
            }
        }
        assert!((6..=7).contains(&keyframes), "{keyframes} keyframes in 3 s");
        // A single request inside the interval waits for its end, then is served.
        let mut gate = KeyframeGate::new();
        gate.request();
        assert!(gate.due(Duration::ZERO));
        gate.request();
        assert!(!gate.due(100 * MS));
        assert!(!gate.due(400 * MS));
        assert!(gate.due(500 * MS));
        assert!(!gate.due(600 * MS), "served once");
    }
}
