//! Connections per client address, shared by a service's handlers: a connection takes an
//! [`IpPermit`] before it is accepted and gives it back when it ends (the permit's `Drop`).
//!
//! The address is the TCP peer's, from axum's `ConnectInfo` (the services are served with
//! `into_make_service_with_connect_info`). A request without one (a Unix-socket listener,
//! which sits behind a reverse proxy that caps connections itself) is not counted.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::ConnectInfo;
use axum::http::Extensions;
use liveloop_core::conn_limit::{ConnectionLimit, TooManyConnections};

use crate::lock;

/// The default cap per address and service: generous for a household or an office behind one
/// NAT, small against one host opening thousands.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 100;

/// A service's count of open connections per address.
#[derive(Debug, Clone)]
pub struct PerIpLimit(Arc<Mutex<ConnectionLimit>>);

impl PerIpLimit {
    /// At most `max` open connections per address (`0`: no cap).
    #[must_use]
    pub fn new(max: usize) -> Self {
        Self(Arc::new(Mutex::new(ConnectionLimit::new(max))))
    }

    /// Counts a connection from `ip` until the permit is dropped, or refuses it.
    ///
    /// # Errors
    /// When `ip` already has the most connections open.
    pub fn acquire(&self, ip: IpAddr) -> Result<IpPermit, TooManyConnections> {
        lock(&self.0).open(ip)?;
        Ok(IpPermit {
            limit: self.clone(),
            ip,
        })
    }

    /// A permit for the request's peer, `Ok(None)` when the request has no peer address.
    ///
    /// # Errors
    /// When the peer's address already has the most connections open.
    pub fn acquire_for(&self, ext: &Extensions) -> Result<Option<IpPermit>, TooManyConnections> {
        peer_ip(ext).map(|ip| self.acquire(ip)).transpose()
    }

    /// Connections open from `ip` now.
    #[must_use]
    pub fn open_from(&self, ip: IpAddr) -> usize {
        lock(&self.0).open_from(ip)
    }
}

/// One counted connection; dropping it ends the count.
#[derive(Debug)]
pub struct IpPermit {
    limit: PerIpLimit,
    ip: IpAddr,
}

impl Drop for IpPermit {
    fn drop(&mut self) {
        lock(&self.limit.0).close(self.ip);
    }
}

/// The TCP peer's address of a request, when it has one.
#[must_use]
pub fn peer_ip(ext: &Extensions) -> Option<IpAddr> {
    ext.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permit_counts_until_dropped() {
        let limit = PerIpLimit::new(1);
        let ip = IpAddr::from([10, 1, 2, 3]);
        let permit = limit.acquire(ip);
        assert!(permit.is_ok());
        assert_eq!(limit.open_from(ip), 1);
        assert!(limit.acquire(ip).is_err(), "the second is over the cap");
        drop(permit);
        assert_eq!(limit.open_from(ip), 0);
        assert!(limit.acquire(ip).is_ok());
    }

    #[test]
    fn a_request_without_a_peer_is_not_counted() {
        let limit = PerIpLimit::new(1);
        let mut ext = Extensions::new();
        assert!(matches!(limit.acquire_for(&ext), Ok(None)));
        ext.insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 2], 5000))));
        let first = limit.acquire_for(&ext);
        assert!(matches!(first, Ok(Some(_))));
        assert!(limit.acquire_for(&ext).is_err());
    }
}
