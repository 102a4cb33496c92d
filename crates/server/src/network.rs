//! The built-in servers on the local network: a listener on every interface (IPv4 and IPv6)
//! at a port kept across launches, and the addresses a room link can name.
//!
//! - **Ports** are chosen once and kept by the caller (the app's settings): a link shared
//!   yesterday names the same port today. When the kept port is taken, the next free one of
//!   the following [`PORT_TRIES`] is used (and kept from then on), then any.
//! - **Addresses**: the interface of the default route first (what a friend on the same
//!   network reaches), then every other address that is neither loopback nor IPv6
//!   link-local (those need a zone id no link carries), IPv4 before IPv6.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use tokio::net::TcpListener;

/// How many ports after the kept one are tried before any free port is taken.
pub const PORT_TRIES: u16 = 20;

/// Where the built-in servers listen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// Loopback only: nobody else can reach them (the app's "this computer only" setting).
    ThisComputer,
    /// Every interface, IPv4 and IPv6.
    Network,
}

/// A listener for `reach` at `port`, or the next free port after it, or any (`port` 0: any).
///
/// # Errors
/// When no port at all can be bound (no network stack, or out of descriptors).
pub fn bind_kept(reach: Reach, port: u16) -> io::Result<TcpListener> {
    if port != 0 {
        for p in (0..=PORT_TRIES).filter_map(|i| port.checked_add(i)) {
            match bind(reach, p) {
                Ok(l) => return Ok(l),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                Err(e) => return Err(e),
            }
        }
        tracing::warn!(
            port,
            "the kept port and the next ones are taken; any free port"
        );
    }
    bind(reach, 0)
}

fn bind(reach: Reach, port: u16) -> io::Result<TcpListener> {
    let std = match reach {
        Reach::ThisComputer => std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))?,
        Reach::Network => match dual_stack(port) {
            Ok(l) => l,
            // No IPv6 on this machine (disabled in the kernel): IPv4 alone.
            Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
                tracing::debug!(error = %e, "no IPv6 listener; IPv4 only");
                std::net::TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))?
            }
            Err(e) => return Err(e),
        },
    };
    std.set_nonblocking(true)?;
    TcpListener::from_std(std)
}

/// One socket on `[::]:port` that takes IPv4 too (IPv4-mapped addresses). Windows makes IPv6
/// sockets IPv6-only by default, so the option is set explicitly.
fn dual_stack(port: u16) -> io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_only_v6(false)?;
    // As std's listeners do on Unix: a restarted app gets its port back at once, not after
    // the old connections' TIME_WAIT.
    #[cfg(unix)]
    socket.set_reuse_address(true)?;
    socket.bind(&SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port).into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The address of the interface the default route leaves by, for IPv4 or IPv6, or `None`
/// without a default route. Connecting a UDP socket sends nothing; it only picks the route.
#[must_use]
pub fn default_route_address(v6: bool) -> Option<IpAddr> {
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

/// Whether a link may name `ip`: not loopback, not unspecified, not IPv6 link-local.
fn linkable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_loopback() && !v4.is_unspecified(),
        IpAddr::V6(v6) => {
            !v6.is_loopback() && !v6.is_unspecified() && v6.segments()[0] & 0xffc0 != 0xfe80
        }
    }
}

/// This computer's addresses for links, best first (see the module): empty when it has no
/// network at all.
#[must_use]
pub fn lan_addresses() -> Vec<IpAddr> {
    let interfaces: Vec<IpAddr> = match if_addrs::get_if_addrs() {
        Ok(list) => list.iter().map(if_addrs::Interface::ip).collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the network interfaces");
            Vec::new()
        }
    };
    order_addresses(
        [default_route_address(false), default_route_address(true)]
            .into_iter()
            .flatten(),
        interfaces,
    )
}

/// The default routes' addresses first, then the others, IPv4 before IPv6, each once, only
/// those a link may name.
fn order_addresses(
    defaults: impl IntoIterator<Item = IpAddr>,
    interfaces: impl IntoIterator<Item = IpAddr>,
) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in defaults.into_iter().filter(|ip| linkable(*ip)) {
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    let defaults = out.len();
    let mut rest: Vec<IpAddr> = interfaces
        .into_iter()
        .filter(|ip| linkable(*ip) && !out.contains(ip))
        .collect();
    rest.sort_by_key(IpAddr::is_ipv6);
    rest.dedup();
    out.extend(rest);
    // The default route's IPv4 address before its IPv6 one.
    if let Some(head) = out.get_mut(..defaults) {
        head.sort_by_key(IpAddr::is_ipv6);
    }
    out
}

/// The names a self-signed certificate for the built-in servers is made for: this computer's
/// addresses for links, `localhost` and `127.0.0.1`.
#[must_use]
pub fn certificate_names() -> Vec<String> {
    let mut names: Vec<String> = lan_addresses().iter().map(ToString::to_string).collect();
    names.extend(["localhost".to_owned(), "127.0.0.1".to_owned()]);
    names
}

/// `http://<ip>:<port>` with IPv6 in brackets.
#[must_use]
pub fn base_url(scheme: &str, ip: IpAddr, port: u16) -> String {
    format!("{scheme}://{}", SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_ordered_default_route_first_and_filtered() {
        let got = order_addresses(
            [ip("2001:db8::5"), ip("192.168.1.5")],
            [
                ip("127.0.0.1"),
                ip("::1"),
                ip("fe80::1"),
                ip("fd00::7"),
                ip("10.0.0.2"),
                ip("192.168.1.5"),
                ip("10.0.0.2"),
            ],
        );
        assert_eq!(
            got,
            vec![
                ip("192.168.1.5"),
                ip("2001:db8::5"),
                ip("10.0.0.2"),
                ip("fd00::7")
            ]
        );
        assert!(order_addresses([], [ip("127.0.0.1")]).is_empty());
    }

    #[test]
    fn base_urls_bracket_ipv6() {
        assert_eq!(
            base_url("http", ip("192.168.1.5"), 8080),
            "http://192.168.1.5:8080"
        );
        assert_eq!(
            base_url("https", ip("fd00::7"), 443),
            "https://[fd00::7]:443"
        );
    }

    #[tokio::test]
    async fn a_kept_port_that_is_taken_moves_to_the_next_free_one() {
        let first = bind_kept(Reach::ThisComputer, 0).unwrap();
        let port = first.local_addr().unwrap().port();
        let again = bind_kept(Reach::ThisComputer, port).unwrap();
        let moved = again.local_addr().unwrap().port();
        assert_ne!(moved, port);
        assert!(
            moved > port && moved <= port.saturating_add(PORT_TRIES),
            "{moved}"
        );
        // Freed, the kept port is taken again.
        drop(first);
        let back = bind_kept(Reach::ThisComputer, port).unwrap();
        assert_eq!(back.local_addr().unwrap().port(), port);
    }

    #[tokio::test]
    async fn the_network_listener_takes_ipv4_and_ipv6() {
        let listener = bind_kept(Reach::Network, 0).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move {
            for _ in 0..2 {
                let _ = listener.accept().await.unwrap();
            }
        });
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
            .await
            .unwrap();
        // IPv6 loopback exists wherever IPv6 does (CI runs with it).
        if std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok() {
            tokio::net::TcpStream::connect((Ipv6Addr::LOCALHOST, port))
                .await
                .unwrap();
        } else {
            tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .unwrap();
        }
        accept.await.unwrap();
    }
}
