//! Reconnect backoff: 1 s, doubling, capped at 5 s, reset by a successful connection.

use std::time::Duration;

/// Exponential backoff state. Pure: the driver asks for the next delay and sleeps it.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(5))
    }
}

impl Backoff {
    #[must_use]
    pub fn new(base: Duration, max: Duration) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
        }
    }

    /// The delay before the next attempt (1 s, 2 s, 4 s, 5 s, 5 s, …).
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.attempt = self.attempt.saturating_add(1);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// Attempts made since the last success.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// A connection succeeded: start again from the base delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_from_one_to_five_seconds_and_resets() {
        let mut b = Backoff::default();
        let secs: Vec<u64> = (0..6).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 5, 5, 5]);
        assert_eq!(b.attempts(), 6);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_secs(1));
        let mut many = Backoff::default();
        for _ in 0..100 {
            assert!(many.next_delay() <= Duration::from_secs(5));
        }
    }
}
