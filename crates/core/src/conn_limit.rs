//! Open connections per client address, capped: the servers ask before they accept a
//! connection and say when it ends. And new connections per address, rate limited
//! ([`NewConnectionRate`]): an engine.io handshake makes a session before any socket.io
//! connection is counted, so a client that only handshakes is capped by its rate.
//!
//! Addresses are counted by [`AddrKey`]: an IPv4 address (an IPv4-mapped IPv6 address counts as
//! the IPv4 address it carries, as a dual-stack listener reports IPv4 clients) or an IPv6
//! address's /64 prefix, since one host is usually given a whole /64 and could otherwise open
//! connections from as many addresses as it likes.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::time::Duration;

use crate::rate::TokenBucket;

/// What connections are counted by: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddrKey {
    V4(std::net::Ipv4Addr),
    /// The first 64 bits of the address.
    V6Prefix(u64),
}

impl From<IpAddr> for AddrKey {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::V4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::V4(v4),
                None => Self::V6Prefix(prefix64(v6)),
            },
        }
    }
}

fn prefix64(v6: Ipv6Addr) -> u64 {
    // The shift leaves 64 bits: the conversion cannot fail.
    u64::try_from(v6.to_bits() >> 64).unwrap_or(u64::MAX)
}

/// A connection refused because its address already has the most it may have open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many connections from this address (at most {max})")]
pub struct TooManyConnections {
    pub max: usize,
}

/// Open connections per address, at most `max` each (`0`: no cap, counted all the same).
#[derive(Debug, Clone, Default)]
pub struct ConnectionLimit {
    max: usize,
    open: HashMap<AddrKey, usize>,
}

impl ConnectionLimit {
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self {
            max,
            open: HashMap::new(),
        }
    }

    /// The cap (`0`: none).
    #[must_use]
    pub const fn max(&self) -> usize {
        self.max
    }

    /// True when a connection from `ip` would be refused now.
    #[must_use]
    pub fn is_full(&self, ip: IpAddr) -> bool {
        self.max != 0 && self.open_from(ip) >= self.max
    }

    /// Counts a new connection from `ip`, or refuses it. Each `Ok` must be matched by one
    /// [`ConnectionLimit::close`] with the same address.
    ///
    /// # Errors
    /// When `ip` already has `max` connections open.
    pub fn open(&mut self, ip: IpAddr) -> Result<(), TooManyConnections> {
        if self.is_full(ip) {
            return Err(TooManyConnections { max: self.max });
        }
        *self.open.entry(AddrKey::from(ip)).or_insert(0) += 1;
        Ok(())
    }

    /// A connection counted by [`ConnectionLimit::open`] has ended. Closing more than was
    /// opened is harmless.
    pub fn close(&mut self, ip: IpAddr) {
        let key = AddrKey::from(ip);
        if let Some(n) = self.open.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.open.remove(&key);
            }
        }
    }

    /// Connections open from `ip`'s address (or /64).
    #[must_use]
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.open.get(&AddrKey::from(ip)).copied().unwrap_or(0)
    }

    /// Addresses with at least one connection open (the table never holds more).
    #[must_use]
    pub fn addresses(&self) -> usize {
        self.open.len()
    }
}

/// A new connection refused because its address opened too many in a short time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many new connections from this address; retry in {retry_ms} ms")]
pub struct TooManyNewConnections {
    pub retry_ms: u64,
}

/// Addresses whose rate [`NewConnectionRate`] remembers at most. Past it, the buckets that
/// have refilled (their address has been quiet) are forgotten; if none has, the table
/// starts afresh (every address gets its burst again) rather than grow.
pub const MAX_RATE_ADDRESSES: usize = 65_536;

/// New connections per address: `burst` at once, then `per_sec` (`burst` 0: no limit).
#[derive(Debug, Clone)]
pub struct NewConnectionRate {
    burst: u32,
    per_sec: f32,
    buckets: HashMap<AddrKey, TokenBucket>,
}

impl NewConnectionRate {
    #[must_use]
    pub fn new(burst: u32, per_sec: f32) -> Self {
        Self {
            burst,
            per_sec,
            buckets: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip` at `now`, or refuses it.
    ///
    /// # Errors
    /// When `ip` has used its burst and the rate has not yet given it another.
    pub fn allow(&mut self, ip: IpAddr, now: Duration) -> Result<(), TooManyNewConnections> {
        if self.burst == 0 {
            return Ok(());
        }
        let key = AddrKey::from(ip);
        if !self.buckets.contains_key(&key) && self.buckets.len() >= MAX_RATE_ADDRESSES {
            self.forget_refilled(now);
        }
        let (burst, per_sec) = (self.burst, self.per_sec);
        self.buckets
            .entry(key)
            .or_insert_with(|| TokenBucket::new(burst, per_sec, now))
            .try_take(now)
            .map_err(|wait| TooManyNewConnections {
                retry_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
            })
    }

    /// Addresses remembered now (at most [`MAX_RATE_ADDRESSES`]).
    #[must_use]
    pub fn addresses(&self) -> usize {
        self.buckets.len()
    }

    fn forget_refilled(&mut self, now: Duration) {
        self.buckets.retain(|_, bucket| !bucket.is_full(now));
        if self.buckets.len() >= MAX_RATE_ADDRESSES {
            self.buckets.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_connections_are_rate_limited_per_address() {
        let mut r = NewConnectionRate::new(5, 2.0);
        let t = Duration::from_secs(100);
        for _ in 0..5 {
            assert_eq!(r.allow(ip("10.0.0.1"), t), Ok(()));
        }
        let refused = r.allow(ip("10.0.0.1"), t).unwrap_err();
        assert_eq!(refused.retry_ms, 500);
        assert_eq!(r.allow(ip("10.0.0.2"), t), Ok(()), "another address");
        // The same /64 shares the bucket.
        for _ in 0..5 {
            assert_eq!(r.allow(ip("2001:db8::1"), t), Ok(()));
        }
        assert!(r.allow(ip("2001:db8::2"), t).is_err());
        // Half a second later, one more.
        let later = t + Duration::from_millis(500);
        assert_eq!(r.allow(ip("10.0.0.1"), later), Ok(()));
        assert!(r.allow(ip("10.0.0.1"), later).is_err());
        assert_eq!(
            NewConnectionRate::new(0, 1.0).allow(ip("10.0.0.1"), t),
            Ok(())
        );
    }

    #[test]
    fn the_rate_table_stays_bounded_however_many_addresses_come() {
        let mut r = NewConnectionRate::new(2, 1.0);
        let t = Duration::from_secs(10);
        for n in 0..(MAX_RATE_ADDRESSES as u32 + 1000) {
            let _ = r.allow(IpAddr::from(n.to_be_bytes()), t);
            assert!(r.addresses() <= MAX_RATE_ADDRESSES);
        }
        // A full table; 3 s later (past the 2 s refill) a new address makes room by
        // forgetting the quiet ones, and is counted as usual.
        let mut r = NewConnectionRate::new(2, 1.0);
        for n in 0..(MAX_RATE_ADDRESSES as u32) {
            let _ = r.allow(IpAddr::from(n.to_be_bytes()), t);
        }
        assert_eq!(r.addresses(), MAX_RATE_ADDRESSES);
        let busy = ip("192.0.2.1");
        let later = t + Duration::from_secs(3);
        assert!(r.allow(busy, later).is_ok());
        assert_eq!(r.addresses(), 1, "the quiet addresses were forgotten");
        assert!(r.allow(busy, later).is_ok());
        assert!(r.allow(busy, later).is_err(), "the busy address is counted");
    }

    #[allow(clippy::expect_used)] // test input: a typo in a literal should fail the test
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("a valid address literal")
    }

    #[test]
    fn caps_each_address_on_its_own() {
        let mut l = ConnectionLimit::new(3);
        for _ in 0..3 {
            assert_eq!(l.open(ip("10.0.0.1")), Ok(()));
        }
        assert_eq!(l.open(ip("10.0.0.1")), Err(TooManyConnections { max: 3 }));
        assert!(l.is_full(ip("10.0.0.1")));
        assert_eq!(
            l.open(ip("10.0.0.2")),
            Ok(()),
            "another address is unaffected"
        );
        assert_eq!(l.open_from(ip("10.0.0.1")), 3, "a refusal is not counted");
        l.close(ip("10.0.0.1"));
        assert_eq!(
            l.open(ip("10.0.0.1")),
            Ok(()),
            "a closed connection frees a place"
        );
    }

    #[test]
    fn closing_forgets_an_address_and_never_underflows() {
        let mut l = ConnectionLimit::new(2);
        assert_eq!(l.open(ip("192.0.2.7")), Ok(()));
        l.close(ip("192.0.2.7"));
        l.close(ip("192.0.2.7"));
        l.close(ip("198.51.100.1"));
        assert_eq!(l.addresses(), 0);
        assert_eq!(l.open_from(ip("192.0.2.7")), 0);
        assert_eq!(l.open(ip("192.0.2.7")), Ok(()));
        assert_eq!(l.open(ip("192.0.2.7")), Ok(()));
        assert!(
            l.open(ip("192.0.2.7")).is_err(),
            "an extra close gave no extra place"
        );
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let mut l = ConnectionLimit::new(2);
        assert_eq!(l.open(ip("2001:db8:1:2::1")), Ok(()));
        assert_eq!(l.open(ip("2001:db8:1:2:ffff::9")), Ok(()));
        assert!(
            l.open(ip("2001:db8:1:2::3")).is_err(),
            "the same /64, another address"
        );
        assert_eq!(l.open(ip("2001:db8:1:3::1")), Ok(()), "another /64");
        assert_eq!(l.open(ip("::ffff:203.0.113.5")), Ok(()));
        assert_eq!(l.open(ip("203.0.113.5")), Ok(()));
        assert!(
            l.open(ip("203.0.113.5")).is_err(),
            "mapped and plain are one address"
        );
        l.close(ip("::ffff:203.0.113.5"));
        assert_eq!(l.open_from(ip("203.0.113.5")), 1);
    }

    #[test]
    fn zero_means_no_cap() {
        let mut l = ConnectionLimit::new(0);
        for _ in 0..1000 {
            assert_eq!(l.open(ip("127.0.0.1")), Ok(()));
        }
        assert!(!l.is_full(ip("127.0.0.1")));
        assert_eq!(l.open_from(ip("127.0.0.1")), 1000);
    }
}
