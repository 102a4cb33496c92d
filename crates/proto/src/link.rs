//! Room links, in every form a user may paste or a web page may hand over, and the link a
//! user shares. One place for the app and the CLI.
//!
//! - `liveloop://join/<room>?server=<ws url>` (the app's own scheme);
//! - `http(s)://host/r/<room>` (served by a room server: the browser client);
//! - a bare room name (on the configured server).

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
}

/// Parses a room link in any of the forms above (surrounding white space is ignored).
///
/// # Errors
/// A [`LinkError`] saying what is wrong.
pub fn parse_link(text: &str) -> Result<RoomLink, LinkError> {
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
        return Ok(RoomLink {
            room: room.to_owned(),
            server,
        });
    }
    for (scheme, ws) in [("http://", "ws://"), ("https://", "wss://")] {
        if let Some(rest) = text.strip_prefix(scheme) {
            let (host, path) = rest
                .split_once('/')
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
            return Ok(RoomLink {
                room: room.to_owned(),
                server: Some(format!("{ws}{host}/ws")),
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
    let web = ws_url
        .strip_suffix("/ws")
        .and_then(|base| {
            base.strip_prefix("wss://")
                .map(|h| format!("https://{h}"))
                .or_else(|| base.strip_prefix("ws://").map(|h| format!("http://{h}")))
        })
        .filter(|base| !base.contains(['?', '#']));
    match web {
        Some(base) => format!("{base}/r/{room}"),
        None => format!("liveloop://join/{room}?server={ws_url}"),
    }
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
            parse_link("liveloop://join/team-42?server=ws://h:8080/ws"),
            Ok(RoomLink {
                room: "team-42".into(),
                server: Some("ws://h:8080/ws".into())
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
            ("two words", "not a LiveLoop link"),
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
}
