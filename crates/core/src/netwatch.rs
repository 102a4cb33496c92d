//! When a change of this computer's network is worth an ICE restart. Sans-IO: the driver
//! (`engine::netwatch`) reads the interfaces and the default route whenever the OS says
//! something changed (netlink on Linux) and on a slow timer, and passes each reading here
//! with the time.
//!
//! The policy, as a laptop sees it:
//! - a reading must hold for [`SETTLE`] before it counts: a Wi-Fi → Ethernet move or a DHCP
//!   renewal arrives as several messages (address gone, address added, route added), and one
//!   restart for the lot is enough;
//! - an address we had is gone, or the address the default route leaves by is another one
//!   (a VPN came up, Ethernet was plugged in): restart, because the path the call takes may
//!   be gone or no longer the best;
//! - only new addresses and the same default route (a container bridge came up): nothing,
//!   the call's path is still there;
//! - no usable address at all (the network went away): nothing yet; the restart comes when
//!   an address is back, since the default route changes then.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

/// How long a reading must stay the same before it counts.
pub const SETTLE: Duration = Duration::from_millis(150);

/// One reading of the network: the usable addresses (no loopback, no link-local) and the
/// local address of the default route per family.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetSnapshot {
    pub addrs: BTreeSet<IpAddr>,
    pub default_v4: Option<IpAddr>,
    pub default_v6: Option<IpAddr>,
}

impl NetSnapshot {
    /// A reading from raw interface addresses: loopback, unspecified and link-local ones are
    /// left out (no peer can reach them).
    #[must_use]
    pub fn new(
        addrs: impl IntoIterator<Item = IpAddr>,
        default_v4: Option<IpAddr>,
        default_v6: Option<IpAddr>,
    ) -> Self {
        Self {
            addrs: addrs.into_iter().filter(|ip| usable(*ip)).collect(),
            default_v4,
            default_v6,
        }
    }
}

/// Whether a peer could reach `ip`: not loopback, unspecified or link-local.
#[must_use]
pub fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified() && !v4.is_link_local(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && v6.segments()[0] & 0xffc0 != 0xfe80
        }
    }
}

/// A change that took effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetChange {
    pub gone: Vec<IpAddr>,
    pub added: Vec<IpAddr>,
    /// The default route's local address changed (either family).
    pub route_changed: bool,
    /// Whether the calls should restart ICE now.
    pub restart: bool,
}

/// The watcher's state.
#[derive(Debug, Clone)]
pub struct NetWatch {
    current: NetSnapshot,
    /// A different reading and when it was first seen.
    pending: Option<(NetSnapshot, Duration)>,
}

impl NetWatch {
    #[must_use]
    pub fn new(initial: NetSnapshot) -> Self {
        Self {
            current: initial,
            pending: None,
        }
    }

    /// Whether a reading is waiting to settle: the driver reads again soon.
    #[must_use]
    pub fn settling(&self) -> bool {
        self.pending.is_some()
    }

    /// A reading at `now`; returns the change once a new reading has held for [`SETTLE`].
    pub fn observe(&mut self, now: Duration, reading: NetSnapshot) -> Option<NetChange> {
        if reading == self.current {
            self.pending = None;
            return None;
        }
        let since = match &self.pending {
            Some((pending, since)) if *pending == reading => *since,
            _ => {
                self.pending = Some((reading, now));
                return None;
            }
        };
        if now.saturating_sub(since) < SETTLE {
            return None;
        }
        self.pending = None;
        let old = std::mem::replace(&mut self.current, reading);
        let new = &self.current;
        let gone: Vec<IpAddr> = old.addrs.difference(&new.addrs).copied().collect();
        let added: Vec<IpAddr> = new.addrs.difference(&old.addrs).copied().collect();
        let route_changed = old.default_v4 != new.default_v4 || old.default_v6 != new.default_v6;
        let restart = (!gone.is_empty() || route_changed) && !new.addrs.is_empty();
        Some(NetChange {
            gone,
            added,
            route_changed,
            restart,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("test address {s}"))
    }

    fn reading(addrs: &[&str], v4: Option<&str>) -> NetSnapshot {
        NetSnapshot::new(addrs.iter().map(|a| ip(a)), v4.map(ip), None)
    }

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_new_address_counts_once_it_has_settled_and_restarts_when_the_old_one_is_gone() {
        let mut w = NetWatch::new(reading(&["10.0.0.2", "127.0.0.1"], Some("10.0.0.2")));
        // The address goes, then the new one comes, within the settle time: one change.
        assert_eq!(w.observe(Duration::ZERO, reading(&[], None)), None);
        assert!(w.settling());
        assert_eq!(w.observe(40 * MS, reading(&["10.0.0.3"], None)), None);
        assert_eq!(
            w.observe(100 * MS, reading(&["10.0.0.3"], Some("10.0.0.3"))),
            None
        );
        assert_eq!(
            w.observe(200 * MS, reading(&["10.0.0.3"], Some("10.0.0.3"))),
            None
        );
        let change = w
            .observe(260 * MS, reading(&["10.0.0.3"], Some("10.0.0.3")))
            .expect("settled");
        assert_eq!(change.gone, vec![ip("10.0.0.2")]);
        assert_eq!(change.added, vec![ip("10.0.0.3")]);
        assert!(change.route_changed && change.restart);
        assert!(!w.settling());
        // Nothing more while it stays.
        assert_eq!(
            w.observe(900 * MS, reading(&["10.0.0.3"], Some("10.0.0.3"))),
            None
        );
    }

    #[test]
    fn a_blip_that_comes_back_is_no_change() {
        let base = reading(&["10.0.0.2"], Some("10.0.0.2"));
        let mut w = NetWatch::new(base.clone());
        assert_eq!(w.observe(Duration::ZERO, reading(&[], None)), None);
        assert_eq!(w.observe(100 * MS, base.clone()), None);
        assert!(!w.settling());
        assert_eq!(w.observe(400 * MS, base), None);
    }

    #[test]
    fn only_new_addresses_on_the_same_route_need_no_restart() {
        let mut w = NetWatch::new(reading(&["192.168.1.5"], Some("192.168.1.5")));
        let bridge = reading(&["192.168.1.5", "172.17.0.1"], Some("192.168.1.5"));
        assert_eq!(w.observe(Duration::ZERO, bridge.clone()), None);
        let change = w.observe(SETTLE, bridge).expect("settled");
        assert_eq!(change.added, vec![ip("172.17.0.1")]);
        assert!(!change.restart);
    }

    #[test]
    fn a_vpn_moving_the_default_route_restarts() {
        let mut w = NetWatch::new(reading(&["192.168.1.5"], Some("192.168.1.5")));
        let vpn = reading(&["192.168.1.5", "10.8.0.2"], Some("10.8.0.2"));
        w.observe(Duration::ZERO, vpn.clone());
        let change = w.observe(SETTLE, vpn).expect("settled");
        assert!(change.route_changed && change.restart && change.gone.is_empty());
    }

    #[test]
    fn no_network_at_all_waits_for_an_address() {
        let mut w = NetWatch::new(reading(&["192.168.1.5"], Some("192.168.1.5")));
        w.observe(Duration::ZERO, reading(&["127.0.0.1"], None));
        let down = w
            .observe(SETTLE, reading(&["127.0.0.1"], None))
            .expect("settled");
        assert!(!down.restart, "nothing to restart on");
        let back = reading(&["192.168.1.9"], Some("192.168.1.9"));
        w.observe(SETTLE * 4, back.clone());
        let up = w.observe(SETTLE * 5, back).expect("settled");
        assert!(up.restart && up.route_changed);
    }

    #[test]
    fn loopback_and_link_local_addresses_do_not_count() {
        let r = reading(
            &["127.0.0.1", "169.254.3.4", "fe80::1", "::1", "2001:db8::5"],
            None,
        );
        assert_eq!(
            r.addrs.into_iter().collect::<Vec<_>>(),
            vec![ip("2001:db8::5")]
        );
    }
}
