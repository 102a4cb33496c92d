//! The DNS-SD record LiveLoop apps announce their built-in servers with on the local network
//! (`_liveloop._tcp.local.`, mDNS): its TXT keys, and how a record from anyone is read.
//!
//! | key | value |
//! | --- | --- |
//! | `v` | `1` (the version of this record) |
//! | `name` | the host's display name (at most 64 characters) |
//! | `rooms`, `https`, `mm` | the ports of the room service, of the room service over HTTPS, and of the matchmaking service (`0`: none) |
//! | `since` | when its servers started, Unix milliseconds: every app picks the matchmaker announced longest |
//! | `listed` | the rooms its users chose to show, comma-separated (at most [`MAX_LISTED_ROOMS`], 240 bytes) |
//! | `waiting` | how many wait in its random chat |

use serde::Serialize;

/// The DNS-SD service type.
pub const SERVICE_TYPE: &str = "_liveloop._tcp.local.";
/// Rooms one app announces at most (a TXT string holds 255 bytes).
pub const MAX_LISTED_ROOMS: usize = 8;
/// The longest name taken from a record (characters).
pub const MAX_NAME_CHARS: usize = 64;

/// What an app announces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Announcement {
    /// This app's instance (random, made at start): the DNS-SD instance name.
    pub instance: String,
    /// The host's display name.
    pub name: String,
    pub rooms_port: u16,
    /// The room service over HTTPS (0: none).
    pub https_port: u16,
    pub matchmaking_port: u16,
    /// When its servers started (Unix ms): every app picks the matchmaker announced longest.
    pub since_ms: u64,
    /// The rooms its users chose to list.
    pub rooms: Vec<String>,
    /// How many wait in its random chat.
    pub waiting: u32,
}

impl Announcement {
    /// The TXT record's key-value pairs.
    #[must_use]
    pub fn to_txt(&self) -> Vec<(String, String)> {
        let mut rooms = String::new();
        for room in self.rooms.iter().take(MAX_LISTED_ROOMS) {
            // A TXT string is at most 255 bytes, "listed=" included.
            if rooms.len() + room.len() + 1 > 240 {
                break;
            }
            if !rooms.is_empty() {
                rooms.push(',');
            }
            rooms.push_str(room);
        }
        let name: String = self.name.chars().take(MAX_NAME_CHARS).collect();
        vec![
            ("v".into(), "1".into()),
            ("name".into(), name),
            ("rooms".into(), self.rooms_port.to_string()),
            ("https".into(), self.https_port.to_string()),
            ("mm".into(), self.matchmaking_port.to_string()),
            ("since".into(), self.since_ms.to_string()),
            ("listed".into(), rooms),
            ("waiting".into(), self.waiting.to_string()),
        ]
    }

    /// An announcement from a record found on the network, or `None` when it is not one of
    /// ours or says nothing usable (no room service port). `get` reads a TXT key.
    pub fn from_txt<'a>(instance: &str, get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        if get("v") != Some("1") {
            return None;
        }
        let port = |key: &str| get(key).and_then(|p| p.parse::<u16>().ok());
        let rooms_port = port("rooms").filter(|p| *p != 0)?;
        let rooms = get("listed")
            .unwrap_or_default()
            .split(',')
            .filter(|r| crate::is_valid_id(r))
            .take(MAX_LISTED_ROOMS)
            .map(str::to_owned)
            .collect();
        let name = get("name")
            .unwrap_or_default()
            .chars()
            .filter(|c| !c.is_control())
            .take(MAX_NAME_CHARS)
            .collect();
        Some(Self {
            instance: instance.chars().take(MAX_NAME_CHARS).collect(),
            name,
            rooms_port,
            https_port: port("https").unwrap_or(0),
            matchmaking_port: port("mm").unwrap_or(0),
            since_ms: get("since")
                .and_then(|s| s.parse().ok())
                .unwrap_or(u64::MAX),
            rooms,
            waiting: get("waiting").and_then(|w| w.parse().ok()).unwrap_or(0),
        })
    }
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn announcement() -> Announcement {
        Announcement {
            instance: "x".into(),
            name: "Ada".into(),
            rooms_port: 40_000,
            https_port: 40_001,
            matchmaking_port: 40_002,
            since_ms: 5,
            rooms: vec!["team".into(), "standup".into()],
            waiting: 2,
        }
    }

    fn parse(txt: &[(String, String)]) -> Option<Announcement> {
        Announcement::from_txt("x", |k| {
            txt.iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn an_announcement_round_trips_through_its_txt_record() {
        let a = announcement();
        assert_eq!(parse(&a.to_txt()), Some(a));
    }

    #[test]
    fn a_record_from_anyone_is_checked() {
        let txt = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        // Not ours, or no room service.
        assert_eq!(parse(&txt(&[("rooms", "1")])), None);
        assert_eq!(parse(&txt(&[("v", "1"), ("rooms", "0")])), None);
        assert_eq!(parse(&txt(&[("v", "1"), ("rooms", "99999")])), None);
        // Bad room names and control characters are dropped, the rest kept and capped.
        let many: Vec<String> = (0..20).map(|i| format!("r{i}")).collect();
        let listed = format!("ok,../etc,{}, spaced,{}", "x".repeat(300), many.join(","));
        let name = format!("Eve\u{7}\n{}", "e".repeat(100));
        let a = parse(&txt(&[
            ("v", "1"),
            ("rooms", "8080"),
            ("listed", &listed),
            ("name", &name),
            ("since", "soon"),
            ("waiting", "-3"),
        ]))
        .unwrap();
        assert_eq!(a.rooms.len(), MAX_LISTED_ROOMS);
        assert_eq!(a.rooms[0], "ok");
        assert!(a.rooms.iter().all(|r| crate::is_valid_id(r)));
        assert!(a.name.starts_with("Eve") && !a.name.contains(['\u{7}', '\n']));
        assert_eq!(a.name.chars().count(), MAX_NAME_CHARS);
        assert_eq!((a.since_ms, a.waiting), (u64::MAX, 0));
    }
}
