//! How often a shared encoder makes a keyframe on request. Every peer's PLI or FIR asks the
//! encoder that all peers share for a keyframe, and a keyframe costs several times a normal
//! frame; one peer (lossy, or hostile) must not turn everyone's video into a stream of
//! keyframes. Requests are coalesced: at most one keyframe per [`MIN_INTERVAL`], and a request
//! inside the interval is kept and served when it ends (a receiver that lost its picture does
//! get one). Sans-IO: time is an input.

use std::time::Duration;

/// The shortest time between two requested keyframes (at most two a second).
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);

/// The keyframe gate of one encoder.
#[derive(Debug, Clone, Default)]
pub struct KeyframeGate {
    last: Option<Duration>,
    pending: bool,
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

    /// Whether the frame encoded at `now` should be a keyframe.
    pub fn due(&mut self, now: Duration) -> bool {
        if !self.pending
            || self
                .last
                .is_some_and(|t| now.saturating_sub(t) < MIN_INTERVAL)
        {
            return false;
        }
        self.pending = false;
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

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
