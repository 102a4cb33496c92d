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
