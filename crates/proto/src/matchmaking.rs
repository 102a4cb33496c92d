//! The matchmaking dialect (seed 000): socket.io v4 events on the default namespace.
//!
//! Event names and payload shapes follow the seed, typos included (`Message:recived`), so the
//! public client works unchanged. LiveLoop adds one field, `makeOffer` on `match-done` (a client
//! that ignores it still works: the answering side learns of the call from the offer), and an
//! `error` event `{code, message, event?, retryAfterMs?}` for every rejected event.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub const EV_REQUEST_ROOM: &str = "request-room";
pub const EV_MATCH_DONE: &str = "match-done";
pub const EV_OFFER: &str = "negotiation-call-offer";
pub const EV_ANSWER: &str = "negotiation-call-answer";
pub const EV_SEND_ICE: &str = "send-new-ice-candidates";
pub const EV_NEW_ICE: &str = "new-ice-candidates";
pub const EV_STOP_CALL: &str = "stop-call";
pub const EV_STOP_BY_REMOTE: &str = "stop-by-remote-user";
pub const EV_NEW_MESSAGE: &str = "newMessage";
pub const EV_MESSAGE_RECEIVED: &str = "Message:recived";
pub const EV_ERROR: &str = "error";

/// Longest display name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 64;
/// Largest `userImage` data URL, in bytes.
pub const MAX_IMAGE_BYTES: usize = 64 * 1024;
/// Largest event the server handles, in bytes of its encoded packet (an offer is a few KB;
/// the largest legitimate event is `request-room` with a 64 KB image). Larger events are
/// refused with `invalid_payload` and never forwarded.
pub const MAX_EVENT_BYTES: usize = 256 * 1024;
/// Largest message the server reads at all (seed 001's 1 MB, as the room service): over
/// WebSocket a larger one closes the connection (1009), over long-polling a request body
/// over [`MAX_EVENT_BYTES`] is refused with 413 and closes the session.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;
/// Largest offer, answer, candidate or chat message, in bytes of its encoded packet (as the
/// room service's relays: an SDP is a few KB). Larger ones get `invalid_payload`.
pub const MAX_RELAY_BYTES: usize = 64 * 1024;

/// True for the events the server forwards to the peer ([`MAX_RELAY_BYTES`] applies).
#[must_use]
pub fn is_relayed(event: &str) -> bool {
    [EV_OFFER, EV_ANSWER, EV_SEND_ICE, EV_NEW_MESSAGE].contains(&event)
}
/// Longest chat message, in characters.
pub const MAX_CHAT_CHARS: usize = 1000;

/// `request-room` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRoom {
    pub name: String,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub user_image: String,
}

/// The other user, as `match-done` and a forwarded offer describe them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RemoteUserDetails {
    pub socket: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_image: Option<String>,
}

/// `match-done` to each of the two matched users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MatchDone {
    pub room_id: String,
    pub remote_user_details: RemoteUserDetails,
    /// LiveLoop's addition: true for the user who sends the offer (the earlier-queued one).
    #[serde(default)]
    pub make_offer: bool,
}

/// `negotiation-call-offer` from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferIn {
    pub offer: Value,
    pub room_id: String,
    #[serde(default)]
    pub name: String,
    pub remote_socket_id: String,
}

/// `negotiation-call-offer` as forwarded to the peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferOut {
    pub remote_user_details: RemoteUserDetails,
    pub room_id: String,
    pub offer: Value,
}

/// `negotiation-call-answer`, both directions (the server rewrites name and socket id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Answer {
    pub ans: Value,
    pub room_id: String,
    #[serde(default)]
    pub name: String,
    pub remote_socket_id: String,
}

/// `send-new-ice-candidates` from a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceIn {
    pub to: String,
    pub candidate: Value,
}

/// `new-ice-candidates` to the peer (`from` is LiveLoop's addition).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IceOut {
    pub candidate: Value,
    #[serde(default)]
    pub from: String,
}

/// `stop-call` from a client. Every field is optional: the server knows the call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopCall {
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub remote_socket_id: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl StopCall {
    /// Reads `stop-call`'s payload: none at all, or `null`, is a stop that names nothing;
    /// anything else must be an object of this shape, as for every event ([`decode_payload`]).
    /// `None` is `invalid_payload`: it must not end a call.
    #[must_use]
    pub fn from_payload(payload: Option<Value>) -> Option<Self> {
        match payload {
            None | Some(Value::Null) => Some(Self::default()),
            Some(value) => decode_payload(value),
        }
    }
}

/// Reads an event's payload into its type: `None` unless it is a JSON object of that shape
/// (serde alone would also read a struct from an array of its fields in order).
#[must_use]
pub fn decode_payload<T: DeserializeOwned>(payload: Value) -> Option<T> {
    if !payload.is_object() {
        return None;
    }
    serde_json::from_value(payload).ok()
}

/// `newMessage` from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewMessage {
    pub message: String,
    #[serde(default)]
    pub room_id: Option<String>,
    #[serde(default)]
    pub remote_socket: Option<String>,
}

/// `Message:recived` to both users of a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageReceived {
    pub from: String,
    pub message: String,
}

/// The `error` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorEvent {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// Error codes of the matchmaking `error` event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The payload is missing, of the wrong shape, or fails validation.
    InvalidPayload,
    /// No handler for this event name.
    UnknownEvent,
    /// Signaling or chat sent while not in a call.
    NotInCall,
    /// The named room or socket is not the sender's current call.
    InvalidTarget,
    /// `request-room` while already queued or in a call.
    AlreadyQueued,
    RateLimited,
    QueueFull,
}

impl ErrorCode {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidPayload => "invalid_payload",
            Self::UnknownEvent => "unknown_event",
            Self::NotInCall => "not_in_call",
            Self::InvalidTarget => "invalid_target",
            Self::AlreadyQueued => "already_queued",
            Self::RateLimited => "rate_limited",
            Self::QueueFull => "queue_full",
        }
    }
}

/// Why a payload failed validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    #[error("name must be 1-{MAX_NAME_CHARS} characters after trimming")]
    Name,
    #[error("userImage must be empty or a data:image/(png|jpeg|webp);base64 URL of at most 64 KB")]
    Image,
    #[error("message must be 1-{MAX_CHAT_CHARS} characters")]
    Message,
}

impl RequestRoom {
    /// Checks the rules of seed 000 and returns the trimmed name.
    ///
    /// # Errors
    /// [`ValidationError::Name`] or [`ValidationError::Image`].
    pub fn validate(&self) -> Result<&str, ValidationError> {
        let name = self.name.trim();
        let chars = name.chars().count();
        if chars == 0 || chars > MAX_NAME_CHARS {
            return Err(ValidationError::Name);
        }
        if !is_valid_image(&self.user_image) {
            return Err(ValidationError::Image);
        }
        Ok(name)
    }
}

/// True for an empty string or a `data:image/(png|jpeg|webp);base64,` URL of at most 64 KB whose
/// body is printable ASCII without quotes, angle brackets, backslashes or spaces (so it is safe in
/// an HTML attribute). The body is not decoded: the seed's own example sends the placeholder
/// `data:image/png;base64,...`, and a broken thumbnail harms nobody.
#[must_use]
pub fn is_valid_image(image: &str) -> bool {
    if image.is_empty() {
        return true;
    }
    if image.len() > MAX_IMAGE_BYTES {
        return false;
    }
    let body = ["png", "jpeg", "webp"]
        .iter()
        .find_map(|kind| image.strip_prefix(&format!("data:image/{kind};base64,")));
    body.is_some_and(|b| {
        !b.is_empty()
            && b.bytes().all(|c| {
                c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'<' | b'>' | b'\\' | b'`')
            })
    })
}

/// Checks a chat message: 1–1000 characters, not only whitespace.
///
/// # Errors
/// [`ValidationError::Message`].
pub fn validate_chat(message: &str) -> Result<(), ValidationError> {
    let chars = message.chars().count();
    if chars == 0 || chars > MAX_CHAT_CHARS || message.trim().is_empty() {
        return Err(ValidationError::Message);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request(name: &str, image: &str) -> RequestRoom {
        RequestRoom {
            name: name.into(),
            room_id: None,
            user_image: image.into(),
        }
    }

    #[test]
    fn request_room_validation() {
        assert_eq!(request("  Ada  ", "").validate(), Ok("Ada"));
        assert_eq!(
            request(&"é".repeat(64), "").validate().map(str::len),
            Ok(128)
        );
        assert_eq!(request("   ", "").validate(), Err(ValidationError::Name));
        assert_eq!(
            request(&"x".repeat(65), "").validate(),
            Err(ValidationError::Name)
        );
        assert!(
            request("a", "data:image/png;base64,iVBORw0KGgo=")
                .validate()
                .is_ok()
        );
        assert!(
            request("a", "data:image/webp;base64,UklGRg==")
                .validate()
                .is_ok()
        );
        for bad in [
            "data:image/gif;base64,R0lGOD==",
            "data:image/png;base64,",
            "data:image/png;base64,<svg>",
            "data:image/png;base64,a\"onerror=x",
            "data:image/png;base64,a b",
            "http://example.com/a.png",
            "data:image/svg+xml;base64,PHN2Zz4=",
            "data:image/png;base64,ab\\cd",
            "data:image/png;base64,ab`cd",
            "data:image/png;base64,ab'cd",
            "data:image/png;base64,abécd",
            "data:image/png;base64,ab\ncd",
            "data:image/png;base64,ab\u{7f}cd",
            "data:image/png;base64,ab\tcd",
        ] {
            assert_eq!(
                request("a", bad).validate(),
                Err(ValidationError::Image),
                "{bad}"
            );
        }
        let big = format!("data:image/png;base64,{}", "A".repeat(MAX_IMAGE_BYTES));
        assert_eq!(request("a", &big).validate(), Err(ValidationError::Image));
    }

    #[test]
    fn seed_payloads_deserialize() {
        let r: RequestRoom = serde_json::from_value(
            json!({"name":"Test User","roomId":null,"userImage":"data:image/png;base64,..."}),
        )
        .unwrap_or_else(|_| request("", ""));
        assert_eq!(r.name, "Test User");
        // The seed's own example (a placeholder body) must pass.
        assert_eq!(r.validate(), Ok("Test User"));
        let done = MatchDone {
            room_id: "r".into(),
            remote_user_details: RemoteUserDetails {
                socket: "s".into(),
                user_name: "n".into(),
                user_image: Some(String::new()),
            },
            make_offer: true,
        };
        assert_eq!(
            serde_json::to_value(&done).unwrap_or_default(),
            json!({"roomId":"r","remoteUserDetails":{"socket":"s","userName":"n","userImage":""},"makeOffer":true})
        );
    }

    #[test]
    fn payloads_must_be_objects() {
        let offer = json!({"offer":{},"roomId":"r","name":"n","remoteSocketId":"s"});
        assert!(decode_payload::<OfferIn>(offer).is_some());
        // The same fields in order, as an array, are not an offer.
        assert!(decode_payload::<OfferIn>(json!([{}, "r", "n", "s"])).is_none());
        assert!(decode_payload::<RequestRoom>(json!(["Ada", null, ""])).is_none());
        assert!(decode_payload::<RequestRoom>(json!("Ada")).is_none());
        assert!(decode_payload::<RequestRoom>(json!({"name": 42})).is_none());
    }

    #[test]
    fn stop_call_payloads() {
        assert_eq!(StopCall::from_payload(None), Some(StopCall::default()));
        assert_eq!(
            StopCall::from_payload(Some(Value::Null)),
            Some(StopCall::default())
        );
        assert_eq!(
            StopCall::from_payload(Some(json!({"roomId":"r","remoteSocketId":null,"x":1}))),
            Some(StopCall {
                room_id: Some("r".into()),
                ..StopCall::default()
            })
        );
        for bad in [
            json!("stop"),
            json!(1),
            json!(true),
            json!([]),
            json!(["r"]),
            json!({"roomId": 5}),
            json!({"name": {"a": 1}}),
        ] {
            assert_eq!(StopCall::from_payload(Some(bad.clone())), None, "{bad}");
        }
    }

    #[test]
    fn chat_validation() {
        assert!(validate_chat("hi").is_ok());
        assert!(validate_chat(&"ü".repeat(1000)).is_ok());
        assert!(validate_chat("").is_err());
        assert!(validate_chat("  ").is_err());
        assert!(validate_chat(" \n\t\u{3000} ").is_err(), "whitespace only");
        assert!(validate_chat(" hi ").is_ok());
        assert!(validate_chat(&"a".repeat(1001)).is_err());
    }
}
