//! The peer-to-peer protocol on the `chat` data channel, which the native client and the
//! browser client speak alike: JSON text messages with a `type`.
//!
//! - `{"type":"state","name":…,"muted":…,"cameraOff":…,"screen":…}` when the channel opens
//!   and on every change;
//! - `{"type":"chat","text":…}`, 1–1000 characters;
//! - `{"type":"bye"}` before a participant hangs up on this one.
//!
//! Reading is lenient, as a peer we did not write may be: a missing field reads as its
//! default, strings longer than the limits are cut, unknown types and malformed JSON are
//! [`PeerMessage::parse`] `None` (ignored, never an error that ends the call).

use serde::{Deserialize, Serialize};

/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// One message on the data channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PeerMessage {
    /// What this participant shows the others about itself.
    State(PeerState),
    Chat {
        #[serde(default)]
        text: String,
    },
    /// This participant hangs up on the receiver.
    Bye,
}

/// A participant's state, as its `state` message says.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PeerState {
    pub name: String,
    pub muted: bool,
    pub camera_off: bool,
    pub screen: bool,
}

fn truncate(s: &mut String, max: usize) {
    if let Some((cut, _)) = s.char_indices().nth(max) {
        s.truncate(cut);
    }
}

impl PeerMessage {
    /// Reads one message; `None` for malformed JSON, an unknown type, a field of the wrong type
    /// or an empty chat message. Strings are cut to
    /// [`MAX_NAME_CHARS`] and [`MAX_CHAT_CHARS`].
    #[must_use]
    pub fn parse(text: &str) -> Option<Self> {
        let mut msg: Self = serde_json::from_str(text).ok()?;
        match &mut msg {
            Self::State(state) => truncate(&mut state.name, MAX_NAME_CHARS),
            // An empty chat message says nothing: ignored, as the sender should not send it.
            Self::Chat { text } if text.is_empty() => return None,
            Self::Chat { text } => truncate(text, MAX_CHAT_CHARS),
            Self::Bye => {}
        }
        Some(msg)
    }

    /// The message as sent.
    #[must_use]
    pub fn to_json(&self) -> String {
        // A derived Serialize of strings and booleans cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wire_shapes_are_the_browser_clients() {
        let state = PeerMessage::State(PeerState {
            name: "Ann".into(),
            muted: true,
            camera_off: false,
            screen: true,
        });
        let v: serde_json::Value = serde_json::from_str(&state.to_json()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "state", "name": "Ann", "muted": true,
                "cameraOff": false, "screen": true})
        );
        assert_eq!(PeerMessage::Bye.to_json(), r#"{"type":"bye"}"#);
        assert_eq!(
            PeerMessage::Chat { text: "hi".into() }.to_json(),
            r#"{"type":"chat","text":"hi"}"#
        );
    }

    #[test]
    fn reading_is_lenient_and_bounded() {
        // The seed's browser client sends no `screen`, and older ones no `name`.
        assert_eq!(
            PeerMessage::parse(r#"{"type":"state","muted":true,"cameraOff":true}"#),
            Some(PeerMessage::State(PeerState {
                name: String::new(),
                muted: true,
                camera_off: true,
                screen: false,
            }))
        );
        let long = "é".repeat(2000);
        let Some(PeerMessage::Chat { text }) =
            PeerMessage::parse(&format!(r#"{{"type":"chat","text":"{long}"}}"#))
        else {
            panic!("chat");
        };
        assert_eq!(text.chars().count(), MAX_CHAT_CHARS);
        let Some(PeerMessage::State(s)) =
            PeerMessage::parse(&format!(r#"{{"type":"state","name":"{long}"}}"#))
        else {
            panic!("state");
        };
        assert_eq!(s.name.chars().count(), MAX_NAME_CHARS);
        assert_eq!(
            PeerMessage::parse(r#"{"type":"bye","extra":1}"#),
            Some(PeerMessage::Bye)
        );
        for bad in [
            "",
            "null",
            "[]",
            r#"{"type":"dance"}"#,
            r#"{"type":1}"#,
            "{\"type\":\"chat\"",
            // Nothing to say: ignored.
            r#"{"type":"chat"}"#,
            r#"{"type":"chat","text":""}"#,
        ] {
            assert_eq!(PeerMessage::parse(bad), None, "{bad}");
        }
        // A field of the wrong type makes the message unreadable, not a crash.
        assert_eq!(
            PeerMessage::parse(r#"{"type":"state","muted":"yes"}"#),
            None
        );
    }
}
