//! Token-bucket rate limiting with time as an input.

use std::time::Duration;

/// A token bucket: `capacity` tokens, refilled continuously at `refill_per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f32,
    refill_per_sec: f32,
    tokens: f32,
    last: Duration,
}

impl TokenBucket {
    /// A full bucket at time `now`.
    #[must_use]
    pub fn new(capacity: u32, refill_per_sec: f32, now: Duration) -> Self {
        let capacity = capacity.max(1) as f32;
        Self {
            capacity,
            refill_per_sec: refill_per_sec.max(f32::MIN_POSITIVE),
            tokens: capacity,
            last: now,
        }
    }

    /// `per` events per `window`, all of them allowed at once (e.g. 10 per minute).
    #[must_use]
    pub fn per_window(per: u32, window: Duration, now: Duration) -> Self {
        Self::new(
            per,
            per as f32 / window.as_secs_f32().max(f32::MIN_POSITIVE),
            now,
        )
    }

    /// Whether the bucket would be full at `now` (nothing taken for as long as a refill takes).
    #[must_use]
    pub fn is_full(&self, now: Duration) -> bool {
        let elapsed = now.saturating_sub(self.last).as_secs_f32();
        self.tokens + elapsed * self.refill_per_sec >= self.capacity
    }

    /// Takes one token, or says how long until one is available.
    ///
    /// # Errors
    /// The wait until the next token when the bucket is empty.
    pub fn try_take(&mut self, now: Duration) -> Result<(), Duration> {
        let elapsed = now.saturating_sub(self.last).as_secs_f32();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + elapsed * self.refill_per_sec).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.refill_per_sec;
            Err(Duration::from_secs_f32(wait).max(Duration::from_millis(1)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Duration::ZERO;
        let mut b = TokenBucket::new(50, 30.0, t0);
        assert_eq!((0..60).filter(|_| b.try_take(t0).is_ok()).count(), 50);
        // One second later: 30 more, not 50.
        let t1 = Duration::from_secs(1);
        assert_eq!((0..60).filter(|_| b.try_take(t1).is_ok()).count(), 30);
    }

    #[test]
    fn one_per_five_seconds_reports_the_wait() {
        let mut b = TokenBucket::per_window(1, Duration::from_secs(5), Duration::ZERO);
        assert!(b.try_take(Duration::ZERO).is_ok());
        let wait = b.try_take(Duration::from_secs(2)).err().unwrap_or_default();
        assert!((2900..=3001).contains(&wait.as_millis()), "{wait:?}");
        assert!(b.try_take(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let mut b = TokenBucket::per_window(10, Duration::from_secs(60), Duration::from_secs(100));
        for _ in 0..10 {
            assert!(b.try_take(Duration::from_secs(50)).is_ok());
        }
        assert!(b.try_take(Duration::from_secs(50)).is_err());
    }
}
