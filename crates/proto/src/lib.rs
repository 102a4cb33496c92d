#![doc = include_str!("../README.md")]

pub mod link;
pub mod matchmaking;
pub mod nearby;
pub mod peer;
pub mod rooms;
pub mod rtc_config;
pub mod sfu;

/// Longest id (room or client) the room dialect accepts, in characters.
pub const MAX_ID_CHARS: usize = 64;

/// True when `id` is 1..=64 characters of `[A-Za-z0-9_.:-]`.
///
/// Ids end up in URLs (`/r/<room>`, `liveloop://join/<room>`) and logs, so the alphabet is
/// kept to characters that need no escaping anywhere.
#[must_use]
pub fn is_valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "room-1", "A_b.c:d", &"x".repeat(64)] {
            assert!(is_valid_id(ok), "{ok}");
        }
        for bad in ["", " ", "a b", "é", "a/b", &"x".repeat(65), "<script>"] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }
}
