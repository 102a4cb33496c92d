//! Room links, in every form a user may paste or a web page may hand over, and the link a
//! user shares. One place for the app and the CLI.
//!
//! - `liveloop://join/<room>?server=<ws url>` (the app's own scheme);
//! - `http(s)://host/r/<room>` (served by a room server: the browser client);
//! - a bare room name (on the configured server).
//!
//! A plain `ws://` server is accepted only on this computer or the local network (loopback,
//! private and link-local addresses, `localhost`, mDNS `.local` names): anywhere else a link
//! must say `wss://`, so that what a web page hands over cannot send a call in the clear.

use std::net::IpAddr;

use crate::is_valid_id;

/// A room link, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomLink {
    pub room: String,
    /// The room server's WebSocket URL, when the link names one.
    pub server: Option<String>,
}

/// Why a link was refused, with the link as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    #[error("not a room name: {0}")]
    BadRoom(String),
    #[error("the server must be a ws:// or wss:// address: {0}")]
    BadServer(String),
    #[error("a room link ends in /r/<room>: {0}")]
    NoRoom(String),
    #[error("not a LiveLoop link or room name: {0}")]
    Unknown(String),
    #[error(
        "a ws:// (unencrypted) server must be on this computer or your local network; \
         elsewhere the link must use wss:// (or https://): {0}"
    )]
    Insecure(String),
}

/// The `host:port` of a `ws://` or `wss://` URL (what a prompt shows), or `None` for anything
/// else. User information (`user:pass@`) is not part of it: the socket connects to what
/// follows the last `@`, as the WebSocket client reads the URL.
#[must_use]
pub fn server_host(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("wss://")
        .or_else(|| url.strip_prefix("ws://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    (!host.is_empty()).then_some(host)
}

/// The name or address in `host` (`name`, `name:port`, `1.2.3.4:5`, `[::1]:5`, `::1`), port
/// and brackets removed, lower case, without a trailing dot.
fn host_name(host: &str) -> String {
    let name = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else if host.matches(':').count() == 1 {
        host.split(':').next().unwrap_or_default()
    } else {
        host
    };
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Whether `host` (`name`, `name:port`, `1.2.3.4:5`, `[::1]:5`) is this computer or the local
/// network: a loopback, private (RFC 1918, IPv6 unique local) or link-local address,
/// `localhost`, or an mDNS `.local` name.
#[must_use]
pub fn is_local_host(host: &str) -> bool {
    is_local_host_on(host, &|_| false)
}

/// [`is_local_host`], or an address `on_link` says is on one of this computer's own networks
/// (inside an interface's prefix: a home LAN on global IPv6, or on addresses outside the
/// private ranges). The caller knows the interfaces; this crate does no I/O.
#[must_use]
pub fn is_local_host_on(host: &str, on_link: &dyn Fn(IpAddr) -> bool) -> bool {
    let name = host_name(host);
    match name.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => {
            ip.is_loopback() || ip.is_private() || ip.is_link_local() || on_link(ip.into())
        }
        Ok(IpAddr::V6(ip)) => {
            let first = ip.segments()[0];
            ip.is_loopback()
                || first & 0xfe00 == 0xfc00
                || first & 0xffc0 == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private() || v4.is_link_local())
                || on_link(ip.into())
        }
        Err(_) => name == "localhost" || name.ends_with(".localhost") || name.ends_with(".local"),
    }
}

/// Whether `ip` is inside the network `net`/`prefix_len` (`prefix_len` past the address's
/// length counts as the whole address; the two families never match).
#[must_use]
pub fn in_prefix(ip: IpAddr, net: IpAddr, prefix_len: u8) -> bool {
    let bits = |a: IpAddr| -> (u128, u32) {
        match a {
            IpAddr::V4(v4) => (u128::from(u32::from(v4)) << 96, 32),
            IpAddr::V6(v6) => (u128::from(v6), 128),
        }
    };
    let ((a, la), (b, lb)) = (bits(ip), bits(net));
    if la != lb {
        return false;
    }
    let len = u32::from(prefix_len).min(la);
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    a & mask == b & mask
}

/// Whether two room-server URLs name the same server (scheme, host and port), so that a link
/// to another one can be asked about first.
#[must_use]
pub fn same_server(a: &str, b: &str) -> bool {
    let key = |u: &str| {
        let secure = u.starts_with("wss://");
        server_host(u).map(|h| (secure, h.to_ascii_lowercase()))
    };
    key(a).is_some() && key(a) == key(b)
}

/// Refuses a server with white space or control characters in it (no URL has them, and a
/// shared link would lose them: found by libFuzzer on the room_link target), and a `ws://`
/// server that is not local (see the module).
fn check_server(
    server: &str,
    text: &str,
    on_link: &dyn Fn(IpAddr) -> bool,
) -> Result<(), LinkError> {
    if server.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(LinkError::BadServer(text.to_owned()));
    }
    if server.starts_with("ws://")
        && !server_host(server).is_some_and(|h| is_local_host_on(h, on_link))
    {
        return Err(LinkError::Insecure(text.to_owned()));
    }
    Ok(())
}

/// Parses a room link in any of the forms above (surrounding white space is ignored).
///
/// # Errors
/// A [`LinkError`] saying what is wrong.
pub fn parse_link(text: &str) -> Result<RoomLink, LinkError> {
    parse_link_on(text, &|_| false)
}

/// [`parse_link`], taking plain `ws://` also from addresses `on_link` says are on this
/// computer's own networks (see [`is_local_host_on`]).
///
/// # Errors
/// A [`LinkError`] saying what is wrong.
pub fn parse_link_on(text: &str, on_link: &dyn Fn(IpAddr) -> bool) -> Result<RoomLink, LinkError> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix("liveloop://join/") {
        let (room, query) = rest.split_once('?').unwrap_or((rest, ""));
        let room = room.trim_end_matches('/');
        if !is_valid_id(room) {
            return Err(LinkError::BadRoom(text.to_owned()));
        }
        let server = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("server="))
            .map(str::to_owned);
        if let Some(s) = &server
            && !(s.starts_with("ws://") || s.starts_with("wss://"))
        {
            return Err(LinkError::BadServer(text.to_owned()));
        }
        if let Some(s) = &server {
            check_server(s, text, on_link)?;
        }
        return Ok(RoomLink {
            room: room.to_owned(),
            server,
        });
    }
    for (scheme, ws) in [("http://", "ws://"), ("https://", "wss://")] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let (host, path) = rest
                .split_once('/')
                // A `?` or `#` ends the host, and what follows is no path (found by the
                // room_link fuzz target).
                .filter(|(host, _)| !host.contains(['?', '#']))
                .ok_or_else(|| LinkError::NoRoom(text.to_owned()))?;
            let room = path
                .strip_prefix("r/")
                .map(|r| {
                    r.split(['?', '#'])
                        .next()
                        .unwrap_or_default()
                        .trim_end_matches('/')
                })
                .ok_or_else(|| LinkError::NoRoom(text.to_owned()))?;
            if !is_valid_id(room) {
                return Err(LinkError::BadRoom(text.to_owned()));
            }
            let server = format!("{ws}{host}/ws");
            check_server(&server, text, on_link)?;
            return Ok(RoomLink {
                room: room.to_owned(),
                server: Some(server),
            });
        }
    }
    if is_valid_id(text) {
        return Ok(RoomLink {
            room: text.to_owned(),
            server: None,
        });
    }
    Err(LinkError::Unknown(text.to_owned()))
}

/// The link a user shares for a room: `http(s)://host/r/<room>` when the room server is at the
/// usual `/ws` path, so that whoever opens it gets the browser client (which offers "Open in
/// the LiveLoop app") and the app accepts it too; `liveloop://join/…` otherwise.
#[must_use]
pub fn share_link(ws_url: &str, room: &str) -> String {
    let web = ws_url.strip_suffix("/ws").and_then(|base| {
        let (scheme, host) = match base.strip_prefix("wss://") {
            Some(host) => ("https", host),
            None => ("http", base.strip_prefix("ws://")?),
        };
        // Only for a server at the root: `parse_link` reads `/r/<room>` right after the host.
        (!host.contains(['/', '?', '#'])).then(|| format!("{scheme}://{host}"))
    });
    match web {
        Some(base) => format!("{base}/r/{room}"),
        None => format!("liveloop://join/{room}?server={ws_url}"),
    }
}

/// The link to `room` on the room service at `base` (`http(s)://host:port`).
#[must_use]
pub fn room_link_on(base: &str, room: &str) -> String {
    share_link(&rooms_ws_url(base), room)
}

/// `http://host:port` (the room service's base URL) → `ws://host:port/ws`.
#[must_use]
pub fn rooms_ws_url(base: &str) -> String {
    let base = base.trim_end_matches('/');
    let ws = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    if ws.ends_with("/ws") {
        ws
    } else {
        format!("{ws}/ws")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_links_open_the_browser_client_and_parse_back() {
        for (ws, want) in [
            ("ws://127.0.0.1:8080/ws", "http://127.0.0.1:8080/r/team"),
            ("wss://calls.example/ws", "https://calls.example/r/team"),
            (
                "wss://calls.example/signal",
                "liveloop://join/team?server=wss://calls.example/signal",
            ),
            // Under a path: `/r/<room>` would not be right after the host (found by the
            // room_link fuzz target).
            (
                "wss://calls.example/liveloop/ws",
                "liveloop://join/team?server=wss://calls.example/liveloop/ws",
            ),
        ] {
            let link = share_link(ws, "team");
            assert_eq!(link, want);
            let back = parse_link(&link).ok();
            assert_eq!(
                back.map(|l| (l.room, l.server)),
                Some(("team".into(), Some(ws.into())))
            );
        }
    }

    #[test]
    fn links_in_every_form() {
        assert_eq!(
            parse_link("liveloop://join/team-42?server=ws://192.168.1.20:8080/ws"),
            Ok(RoomLink {
                room: "team-42".into(),
                server: Some("ws://192.168.1.20:8080/ws".into())
            })
        );
        assert_eq!(
            parse_link(" https://calls.example/r/standup?x=1 "),
            Ok(RoomLink {
                room: "standup".into(),
                server: Some("wss://calls.example/ws".into())
            })
        );
        assert_eq!(
            parse_link("daily").map(|l| (l.room, l.server)),
            Ok(("daily".into(), None))
        );
        for (bad, why) in [
            ("", "not a LiveLoop link"),
            ("liveloop://join/", "not a room name"),
            ("liveloop://join/a b", "not a room name"),
            ("liveloop://join/x?server=http://h", "ws:// or wss://"),
            ("https://host/other/x", "ends in /r/<room>"),
            ("https://host?q=1/r/x", "ends in /r/<room>"),
            ("https://host#top/r/x", "ends in /r/<room>"),
            (
                "liveloop://join/x?server=wss://calls.example/ws\t&a=1",
                "ws:// or wss://",
            ),
            ("https://calls example/r/x", "ws:// or wss://"),
            ("two words", "not a LiveLoop link"),
            // In the clear to the internet: refused, whichever form.
            ("liveloop://join/x?server=ws://calls.example/ws", "wss://"),
            ("liveloop://join/x?server=ws://8.8.8.8:80/ws", "wss://"),
            ("http://calls.example/r/x", "wss://"),
            ("http://[2001:db8::1]:8080/r/x", "wss://"),
            // A local address as user information is not where the socket goes (found by
            // the room_link fuzz target).
            (
                "liveloop://join/x?server=ws://127.0.0.1:8080@calls.example/ws",
                "wss://",
            ),
            ("http://192.168.1.2:80@calls.example/r/x", "wss://"),
            ("http://[::1]@calls.example/r/x", "wss://"),
        ] {
            let e = parse_link(bad).expect_err(bad);
            assert!(e.to_string().contains(why), "{bad:?}: {e}");
        }
    }

    #[test]
    fn room_service_urls() {
        assert_eq!(
            rooms_ws_url("http://127.0.0.1:8080"),
            "ws://127.0.0.1:8080/ws"
        );
        assert_eq!(rooms_ws_url("https://x.example/"), "wss://x.example/ws");
        assert_eq!(rooms_ws_url("ws://h/ws"), "ws://h/ws");
    }

    #[test]
    fn an_address_on_one_of_our_networks_is_local_too() {
        // This computer on a home LAN with global IPv6 (2001:db8:1::/64) and on 192.0.2.0/24.
        let nets: [(IpAddr, u8); 2] = [
            ("2001:db8:1::5".parse().unwrap(), 64),
            ("192.0.2.2".parse().unwrap(), 24),
        ];
        let on_link = |ip: IpAddr| nets.iter().any(|(net, len)| in_prefix(ip, *net, *len));
        for local in [
            "[2001:db8:1::9]:41234",
            "192.0.2.77:80",
            "2001:db8:1:0:aa::1",
        ] {
            assert!(!is_local_host(local), "{local}");
            assert!(is_local_host_on(local, &on_link), "{local}");
        }
        for remote in ["[2001:db8:2::9]:1", "192.0.3.1", "calls.example"] {
            assert!(!is_local_host_on(remote, &on_link), "{remote}");
        }
        let link = "http://[2001:db8:1::9]:41234/r/team";
        assert!(matches!(parse_link(link), Err(LinkError::Insecure(_))));
        assert_eq!(
            parse_link_on(link, &on_link).unwrap().server.as_deref(),
            Some("ws://[2001:db8:1::9]:41234/ws")
        );
        // Prefix edges.
        let v4 = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(in_prefix(v4("10.0.0.1"), v4("10.255.0.0"), 8));
        assert!(!in_prefix(v4("11.0.0.1"), v4("10.0.0.0"), 8));
        assert!(in_prefix(v4("1.2.3.4"), v4("9.9.9.9"), 0));
        assert!(in_prefix(v4("1.2.3.4"), v4("1.2.3.4"), 200));
        assert!(!in_prefix(v4("1.2.3.4"), v4("::1"), 0));
    }

    #[test]
    fn plain_ws_only_stays_local() {
        for local in [
            "127.0.0.1:8080",
            "localhost:1",
            "LAPTOP.local",
            "10.1.2.3",
            "172.16.0.9:443",
            "192.168.0.2:8080",
            "169.254.3.4:9",
            "[::1]:8080",
            "[fd12:3456::1]:80",
            "[fe80::1]:80",
            "[::ffff:192.168.1.1]:80",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for remote in [
            "calls.example",
            "calls.example:8080",
            "8.8.8.8:53",
            "100.64.0.1",
            "172.32.0.1",
            "[2001:db8::1]:80",
            "[::ffff:8.8.8.8]:80",
            "localhost.evil.example",
        ] {
            assert!(!is_local_host(remote), "{remote}");
        }
        assert_eq!(
            server_host("wss://a.example:8443/ws?x"),
            Some("a.example:8443")
        );
        assert_eq!(server_host("ws://[::1]:9/ws"), Some("[::1]:9"));
        assert_eq!(server_host("http://a/ws"), None);
        // What a prompt shows is the host the socket reaches, not user information.
        assert_eq!(
            server_host("wss://127.0.0.1:8080@calls.example/ws"),
            Some("calls.example")
        );
        assert_eq!(server_host("ws://me@[::1]:9/ws"), Some("[::1]:9"));
        assert_eq!(server_host("wss://me@/ws"), None);
        assert!(same_server("ws://127.0.0.1:5/ws", "ws://127.0.0.1:5/other"));
        assert!(!same_server("ws://127.0.0.1:5/ws", "ws://127.0.0.1:6/ws"));
        assert!(!same_server("ws://h:5/ws", "wss://h:5/ws"));
        assert!(!same_server("nonsense", "nonsense"));
        // wss:// goes anywhere.
        assert!(parse_link("liveloop://join/x?server=wss://calls.example/ws").is_ok());
        assert!(parse_link("https://calls.example/r/x").is_ok());
    }
}
