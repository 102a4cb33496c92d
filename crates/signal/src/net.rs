//! What "the local network" is for this computer: the prefixes of its own interfaces, so that
//! a LAN on global IPv6 (common at home) or on addresses outside the private ranges counts as
//! local where `proto::link` takes plain `ws://` and self-signed `wss://`.

use std::net::IpAddr;

/// Whether `ip` is inside one of this computer's interface prefixes (loopback and
/// point-to-point links aside: a tunnel's far end is not a neighbour). False when the
/// interfaces cannot be read.
#[must_use]
pub fn on_link(ip: IpAddr) -> bool {
    let Ok(interfaces) = if_addrs::get_if_addrs() else {
        return false;
    };
    interfaces
        .iter()
        .filter(|i| !i.is_loopback() && !i.is_p2p)
        .any(|i| {
            let (net, len) = match &i.addr {
                if_addrs::IfAddr::V4(a) => (IpAddr::V4(a.ip), a.prefixlen),
                if_addrs::IfAddr::V6(a) => (IpAddr::V6(a.ip), a.prefixlen),
            };
            // A host route (/32, /128) names only this computer itself.
            let whole = if net.is_ipv4() { 32 } else { 128 };
            len < whole && liveloop_proto::link::in_prefix(ip, net, len)
        })
}

/// The local address of the default route for IPv4 or IPv6, or `None` without one.
/// Connecting a UDP socket sends nothing; it only picks the route.
#[must_use]
pub fn default_route_local(v6: bool) -> Option<IpAddr> {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
    // Documentation addresses (RFC 5737, RFC 3849): routed by the default route, never used.
    let (bind, probe): (SocketAddr, SocketAddr) = if v6 {
        (
            (Ipv6Addr::UNSPECIFIED, 0).into(),
            (Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1), 9).into(),
        )
    } else {
        (
            (Ipv4Addr::UNSPECIFIED, 0).into(),
            (Ipv4Addr::new(192, 0, 2, 1), 9).into(),
        )
    };
    let socket = UdpSocket::bind(bind).ok()?;
    socket.connect(probe).ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified() && !ip.is_loopback()).then_some(ip)
}

/// One reading of this computer's network for `core::netwatch`: its interface addresses and
/// the default route's local address per family (an empty reading when the interfaces cannot
/// be read).
#[must_use]
pub fn reading() -> liveloop_core::netwatch::NetSnapshot {
    let addrs = if_addrs::get_if_addrs()
        .map(|list| list.iter().map(if_addrs::Interface::ip).collect::<Vec<_>>())
        .unwrap_or_default();
    liveloop_core::netwatch::NetSnapshot::new(
        addrs,
        default_route_local(false),
        default_route_local(true),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_neighbour_on_an_interface_of_ours_is_on_link_and_elsewhere_is_not() {
        let interfaces = if_addrs::get_if_addrs().unwrap();
        let v4 = interfaces.iter().find_map(|i| match &i.addr {
            if_addrs::IfAddr::V4(a) if !i.is_loopback() && !i.is_p2p && a.prefixlen <= 30 => {
                Some(a.ip)
            }
            _ => None,
        });
        if let Some(ip) = v4 {
            // The next address on the same network.
            let next = std::net::Ipv4Addr::from(u32::from(ip) ^ 1);
            assert!(on_link(next.into()), "{next} beside {ip}");
        }
        assert!(!on_link("2001:db8:ffff::1".parse().unwrap()));
    }
}
