//! The room dialect (seed 001): JSON text frames over a WebSocket at `/ws`.
//!
//! On the wire every message is one flat object, the seed's TypeScript `Message` interface:
//! `{type, room?, from?, to?, sdp?, candidate?, members?, code?, error?}`. Inside LiveLoop it is
//! a [`ClientMessage`] (client → server) or a [`ServerMessage`] (server → client).
//!
//! Choices where the seed is silent (docs/signaling.md lists them for client authors):
//! - `join` names the room in `room` and the client's chosen id in `from`; without `from` the
//!   server assigns a random id. `joined` echoes the room and carries the member's id in `from`.
//! - Relayed `offer`/`answer`/`candidate`/`hangup` keep `to`, and get `from` and `room` set by the
//!   server; whatever `from` the sender wrote is discarded.
//! - Three codes are LiveLoop additions: `invalid_message` (not JSON, not an object, wrong field
//!   types, missing `sdp`/`candidate`), `message_too_large` (over 1 MB: the socket is closed; a
//!   relayed message over 64 KiB: refused, the socket stays open) and `replaced` (another
//!   connection resumed this member's id with its secret).
//! - Resume secrets (a LiveLoop extension): `joined` carries `secret`, 32 lowercase hex
//!   characters (128 random bits); a `join` may carry it back as `secret` to take its id over
//!   from a connection that is still live or ended less than 60 s ago (docs/signaling.md).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::is_valid_id;

/// Largest text frame the server accepts.
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// Largest relayed message (`offer`, `answer`, `candidate`, `hangup`), as a text frame; a
/// larger one is refused with `message_too_large` and the socket stays open.
pub const MAX_RELAY_BYTES: usize = 64 * 1024;

/// Length of a resume secret on the wire: 32 lowercase hex characters (128 bits).
pub const SECRET_HEX_LEN: usize = 32;

/// True for a well-formed resume secret (32 lowercase hex characters).
#[must_use]
pub fn is_valid_secret(secret: &str) -> bool {
    secret.len() == SECRET_HEX_LEN
        && secret
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The flat wire shape of every room-dialect message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WireMessage {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp: Option<Value>,
    /// `None`: no `candidate` field; `Some(Value::Null)`: `"candidate": null`, the
    /// end-of-candidates a browser sends (serde would read both as `None`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub candidate: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// LiveLoop's resume secret: sent by the server in `joined`, by a client in `join`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// A field that is present, `null` included.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// What a peer relays to another member of its room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RelayKind {
    Offer,
    Answer,
    Candidate,
    Hangup,
}

impl RelayKind {
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Candidate => "candidate",
            Self::Hangup => "hangup",
        }
    }
}

/// A message from a client, validated.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientMessage {
    /// Join `room` as `id` (`None`: the server picks an id), with the secret `joined` gave that
    /// id when it is resumed (LiveLoop's extension).
    Join {
        room: String,
        id: Option<String>,
        secret: Option<String>,
    },
    Leave,
    Ping,
    Pong,
    /// `offer`/`answer` carry `sdp`, `candidate` carries `candidate`, `hangup` neither.
    Relay {
        kind: RelayKind,
        to: String,
        payload: Option<Value>,
    },
}

/// A message to a client.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ServerMessage {
    /// `secret`: the id's resume secret (`None` only from servers without the extension).
    Joined {
        room: String,
        id: String,
        secret: Option<String>,
    },
    RoomMembers {
        room: String,
        members: Vec<String>,
    },
    Pong,
    Ping,
    Relay {
        kind: RelayKind,
        room: String,
        from: String,
        to: String,
        payload: Option<Value>,
    },
    Error {
        code: ErrorCode,
        message: String,
    },
}

/// Every error code of the room dialect (seeds/README.md plus LiveLoop's three additions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    InvalidId,
    DuplicateId,
    IdentityLocked,
    InvalidRoom,
    RoomFull,
    RoomLimitReached,
    RoomMissing,
    InvalidJoin,
    AlreadyJoined,
    NotJoined,
    InvalidTarget,
    TargetNotFound,
    MembershipLost,
    UnknownType,
    RateLimited,
    InvalidMessage,
    MessageTooLarge,
    Replaced,
}

impl ErrorCode {
    pub const ALL: [Self; 18] = [
        Self::InvalidId,
        Self::DuplicateId,
        Self::IdentityLocked,
        Self::InvalidRoom,
        Self::RoomFull,
        Self::RoomLimitReached,
        Self::RoomMissing,
        Self::InvalidJoin,
        Self::AlreadyJoined,
        Self::NotJoined,
        Self::InvalidTarget,
        Self::TargetNotFound,
        Self::MembershipLost,
        Self::UnknownType,
        Self::RateLimited,
        Self::InvalidMessage,
        Self::MessageTooLarge,
        Self::Replaced,
    ];

    /// The code as it appears on the wire.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::InvalidId => "invalid_id",
            Self::DuplicateId => "duplicate_id",
            Self::IdentityLocked => "identity_locked",
            Self::InvalidRoom => "invalid_room",
            Self::RoomFull => "room_full",
            Self::RoomLimitReached => "room_limit_reached",
            Self::RoomMissing => "room_missing",
            Self::InvalidJoin => "invalid_join",
            Self::AlreadyJoined => "already_joined",
            Self::NotJoined => "not_joined",
            Self::InvalidTarget => "invalid_target",
            Self::TargetNotFound => "target_not_found",
            Self::MembershipLost => "membership_lost",
            Self::UnknownType => "unknown_type",
            Self::RateLimited => "rate_limited",
            Self::InvalidMessage => "invalid_message",
            Self::MessageTooLarge => "message_too_large",
            Self::Replaced => "replaced",
        }
    }

    /// Parses a wire code; `None` for codes this version does not know.
    #[must_use]
    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.as_str() == code)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a client frame was rejected; [`ParseError::code`] gives its wire code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    #[error("message is larger than {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("{0} is larger than {MAX_RELAY_BYTES} bytes, the limit for relayed messages")]
    RelayTooLarge(&'static str),
    #[error("message is not a JSON object of the room protocol: {0}")]
    Malformed(String),
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("join needs a room")]
    RoomMissing,
    #[error("room id must be 1-64 characters of A-Z a-z 0-9 _ . : -")]
    InvalidRoom,
    #[error("client id must be 1-64 characters of A-Z a-z 0-9 _ . : -")]
    InvalidId,
    #[error("join carries only room, from and secret")]
    InvalidJoin,
    #[error(
        "secret must be the {SECRET_HEX_LEN} lowercase hex characters `joined` gave, with `from`"
    )]
    InvalidSecret,
    #[error("{0} needs a valid `to`")]
    InvalidTarget(&'static str),
    #[error("{0} needs `{1}`")]
    MissingPayload(&'static str, &'static str),
}

impl ParseError {
    /// The wire code for this error.
    #[must_use]
    pub const fn code(&self) -> ErrorCode {
        match self {
            Self::TooLarge | Self::RelayTooLarge(_) => ErrorCode::MessageTooLarge,
            Self::Malformed(_) | Self::MissingPayload(..) => ErrorCode::InvalidMessage,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::RoomMissing => ErrorCode::RoomMissing,
            Self::InvalidRoom => ErrorCode::InvalidRoom,
            Self::InvalidId => ErrorCode::InvalidId,
            Self::InvalidJoin | Self::InvalidSecret => ErrorCode::InvalidJoin,
            Self::InvalidTarget(_) => ErrorCode::InvalidTarget,
        }
    }
}

impl ClientMessage {
    /// Parses and validates one text frame from a client. A relayed message (`offer`,
    /// `answer`, `candidate`, `hangup`) over [`MAX_RELAY_BYTES`] is
    /// [`ParseError::RelayTooLarge`].
    ///
    /// # Errors
    /// A [`ParseError`] naming what is wrong; it never panics, whatever the input.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        if text.len() > MAX_MESSAGE_BYTES {
            return Err(ParseError::TooLarge);
        }
        let wire: WireMessage =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
        let msg = Self::from_wire(wire)?;
        match &msg {
            Self::Relay { kind, .. } if text.len() > MAX_RELAY_BYTES => {
                Err(ParseError::RelayTooLarge(kind.as_str()))
            }
            _ => Ok(msg),
        }
    }

    /// Validates an already decoded wire message.
    ///
    /// # Errors
    /// See [`ClientMessage::parse`].
    pub fn from_wire(wire: WireMessage) -> Result<Self, ParseError> {
        let relay = |kind: RelayKind, payload_field: Option<&'static str>| {
            let to = wire
                .to
                .clone()
                .filter(|to| is_valid_id(to))
                .ok_or(ParseError::InvalidTarget(kind.as_str()))?;
            let payload = match payload_field {
                Some("sdp") => Some(
                    wire.sdp
                        .clone()
                        .filter(Value::is_object)
                        .ok_or(ParseError::MissingPayload(kind.as_str(), "sdp"))?,
                ),
                Some(field) => Some(
                    wire.candidate
                        .clone()
                        .filter(|c| c.is_object() || c.is_null())
                        .ok_or(ParseError::MissingPayload(kind.as_str(), field))?,
                ),
                None => None,
            };
            Ok(Self::Relay { kind, to, payload })
        };
        match wire.kind.as_str() {
            "join" => {
                if wire.to.is_some()
                    || wire.sdp.is_some()
                    || wire.candidate.is_some()
                    || wire.members.is_some()
                {
                    return Err(ParseError::InvalidJoin);
                }
                let room = wire.room.ok_or(ParseError::RoomMissing)?;
                if !is_valid_id(&room) {
                    return Err(ParseError::InvalidRoom);
                }
                if let Some(id) = &wire.from
                    && !is_valid_id(id)
                {
                    return Err(ParseError::InvalidId);
                }
                // A secret resumes a named id: without `from` it has nothing to resume.
                if let Some(secret) = &wire.secret
                    && (!is_valid_secret(secret) || wire.from.is_none())
                {
                    return Err(ParseError::InvalidSecret);
                }
                Ok(Self::Join {
                    room,
                    id: wire.from,
                    secret: wire.secret,
                })
            }
            "leave" => Ok(Self::Leave),
            "ping" => Ok(Self::Ping),
            "pong" => Ok(Self::Pong),
            "offer" => relay(RelayKind::Offer, Some("sdp")),
            "answer" => relay(RelayKind::Answer, Some("sdp")),
            "candidate" => relay(RelayKind::Candidate, Some("candidate")),
            "hangup" => relay(RelayKind::Hangup, None),
            other => Err(ParseError::UnknownType(other.chars().take(64).collect())),
        }
    }

    /// The wire form of this message (what a client sends).
    #[must_use]
    pub fn to_wire(&self) -> WireMessage {
        match self {
            Self::Join { room, id, secret } => WireMessage {
                kind: "join".into(),
                room: Some(room.clone()),
                from: id.clone(),
                secret: secret.clone(),
                ..WireMessage::default()
            },
            Self::Leave => WireMessage {
                kind: "leave".into(),
                ..WireMessage::default()
            },
            Self::Ping => WireMessage {
                kind: "ping".into(),
                ..WireMessage::default()
            },
            Self::Pong => WireMessage {
                kind: "pong".into(),
                ..WireMessage::default()
            },
            Self::Relay { kind, to, payload } => {
                relay_wire(*kind, None, None, to, payload.as_ref())
            }
        }
    }
}

fn relay_wire(
    kind: RelayKind,
    room: Option<&str>,
    from: Option<&str>,
    to: &str,
    payload: Option<&Value>,
) -> WireMessage {
    let mut wire = WireMessage {
        kind: kind.as_str().into(),
        room: room.map(str::to_owned),
        from: from.map(str::to_owned),
        to: Some(to.to_owned()),
        ..WireMessage::default()
    };
    match kind {
        RelayKind::Offer | RelayKind::Answer => wire.sdp = payload.cloned(),
        RelayKind::Candidate => wire.candidate = payload.cloned(),
        RelayKind::Hangup => {}
    }
    wire
}

impl ServerMessage {
    /// The wire form of this message.
    #[must_use]
    pub fn to_wire(&self) -> WireMessage {
        match self {
            Self::Joined { room, id, secret } => WireMessage {
                kind: "joined".into(),
                room: Some(room.clone()),
                from: Some(id.clone()),
                secret: secret.clone(),
                ..WireMessage::default()
            },
            Self::RoomMembers { room, members } => WireMessage {
                kind: "room_members".into(),
                room: Some(room.clone()),
                members: Some(members.clone()),
                ..WireMessage::default()
            },
            Self::Pong => WireMessage {
                kind: "pong".into(),
                ..WireMessage::default()
            },
            Self::Ping => WireMessage {
                kind: "ping".into(),
                ..WireMessage::default()
            },
            Self::Relay {
                kind,
                room,
                from,
                to,
                payload,
            } => relay_wire(*kind, Some(room), Some(from), to, payload.as_ref()),
            Self::Error { code, message } => WireMessage {
                kind: "error".into(),
                code: Some(code.as_str().into()),
                error: Some(message.clone()),
                ..WireMessage::default()
            },
        }
    }

    /// The JSON text frame for this message.
    #[must_use]
    pub fn to_json(&self) -> String {
        // Serializing a struct of strings, string vectors and JSON values cannot fail.
        serde_json::to_string(&self.to_wire()).unwrap_or_default()
    }

    /// Parses a frame from the server (used by clients).
    ///
    /// # Errors
    /// [`ParseError::Malformed`] or [`ParseError::UnknownType`] when the frame is not one of ours.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let wire: WireMessage =
            serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
        let missing = |what: &str| ParseError::Malformed(format!("{} without {what}", wire.kind));
        let relay = |kind| {
            let from = wire.from.clone().ok_or_else(|| missing("from"))?;
            let room = wire.room.clone().unwrap_or_default();
            let to = wire.to.clone().unwrap_or_default();
            let payload = match kind {
                RelayKind::Offer | RelayKind::Answer => wire.sdp.clone(),
                RelayKind::Candidate => wire.candidate.clone(),
                RelayKind::Hangup => None,
            };
            Ok(Self::Relay {
                kind,
                room,
                from,
                to,
                payload,
            })
        };
        match wire.kind.as_str() {
            "joined" => Ok(Self::Joined {
                room: wire.room.clone().ok_or_else(|| missing("room"))?,
                id: wire.from.clone().ok_or_else(|| missing("from"))?,
                // A secret we could not send back is no secret: drop a malformed one.
                secret: wire.secret.clone().filter(|s| is_valid_secret(s)),
            }),
            "room_members" => Ok(Self::RoomMembers {
                room: wire.room.clone().unwrap_or_default(),
                members: wire.members.clone().ok_or_else(|| missing("members"))?,
            }),
            "pong" => Ok(Self::Pong),
            "ping" => Ok(Self::Ping),
            "offer" => relay(RelayKind::Offer),
            "answer" => relay(RelayKind::Answer),
            "candidate" => relay(RelayKind::Candidate),
            "hangup" => relay(RelayKind::Hangup),
            "error" => {
                let code = wire.code.as_deref().ok_or_else(|| missing("code"))?;
                Ok(Self::Error {
                    code: ErrorCode::parse(code)
                        .ok_or_else(|| ParseError::Malformed(format!("unknown code {code}")))?,
                    message: wire.error.clone().unwrap_or_default(),
                })
            }
            other => Err(ParseError::UnknownType(other.chars().take(64).collect())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn code_of(text: &str) -> Option<ErrorCode> {
        ClientMessage::parse(text).err().map(|e| e.code())
    }

    #[test]
    fn parses_every_client_type() {
        let cases = [
            (
                json!({"type":"join","room":"r1","from":"alice"}),
                ClientMessage::Join {
                    room: "r1".into(),
                    id: Some("alice".into()),
                    secret: None,
                },
            ),
            (
                json!({"type":"join","room":"r1"}),
                ClientMessage::Join {
                    room: "r1".into(),
                    id: None,
                    secret: None,
                },
            ),
            (
                json!({"type":"join","room":"r1","from":"alice","secret":"0123456789abcdef0123456789abcdef"}),
                ClientMessage::Join {
                    room: "r1".into(),
                    id: Some("alice".into()),
                    secret: Some("0123456789abcdef0123456789abcdef".into()),
                },
            ),
            (json!({"type":"leave"}), ClientMessage::Leave),
            (json!({"type":"ping"}), ClientMessage::Ping),
            (json!({"type":"pong"}), ClientMessage::Pong),
            (
                json!({"type":"offer","to":"bob","sdp":{"type":"offer","sdp":"v=0"}}),
                ClientMessage::Relay {
                    kind: RelayKind::Offer,
                    to: "bob".into(),
                    payload: Some(json!({"type":"offer","sdp":"v=0"})),
                },
            ),
            (
                json!({"type":"candidate","to":"bob","candidate":{"candidate":"c"}}),
                ClientMessage::Relay {
                    kind: RelayKind::Candidate,
                    to: "bob".into(),
                    payload: Some(json!({"candidate":"c"})),
                },
            ),
            (
                json!({"type":"candidate","to":"bob","candidate":null}),
                ClientMessage::Relay {
                    kind: RelayKind::Candidate,
                    to: "bob".into(),
                    payload: Some(Value::Null),
                },
            ),
            (
                json!({"type":"hangup","to":"bob"}),
                ClientMessage::Relay {
                    kind: RelayKind::Hangup,
                    to: "bob".into(),
                    payload: None,
                },
            ),
        ];
        for (input, expect) in cases {
            let parsed = ClientMessage::parse(&input.to_string());
            assert_eq!(parsed.as_ref(), Ok(&expect), "{input}");
            // And the client-side encoder produces something the parser accepts back.
            let round = ClientMessage::from_wire(expect.to_wire());
            assert_eq!(round, Ok(expect));
        }
    }

    #[test]
    fn rejects_with_the_right_code() {
        let cases = [
            ("not json", ErrorCode::InvalidMessage),
            ("[1,2]", ErrorCode::InvalidMessage),
            (r#"{"type":5}"#, ErrorCode::InvalidMessage),
            (r#"{"room":"a"}"#, ErrorCode::InvalidMessage),
            (r#"{"type":"join","room":7}"#, ErrorCode::InvalidMessage),
            (r#"{"type":"dance"}"#, ErrorCode::UnknownType),
            (r#"{"type":"join"}"#, ErrorCode::RoomMissing),
            (r#"{"type":"join","room":"a b"}"#, ErrorCode::InvalidRoom),
            (
                r#"{"type":"join","room":"a","from":""}"#,
                ErrorCode::InvalidId,
            ),
            (
                r#"{"type":"join","room":"a","to":"b"}"#,
                ErrorCode::InvalidJoin,
            ),
            // A secret is exactly 32 lowercase hex characters, and goes with `from`.
            (
                r#"{"type":"join","room":"a","from":"b","secret":"0123"}"#,
                ErrorCode::InvalidJoin,
            ),
            (
                r#"{"type":"join","room":"a","from":"b","secret":"0123456789ABCDEF0123456789ABCDEF"}"#,
                ErrorCode::InvalidJoin,
            ),
            (
                r#"{"type":"join","room":"a","secret":"0123456789abcdef0123456789abcdef"}"#,
                ErrorCode::InvalidJoin,
            ),
            (
                r#"{"type":"join","room":"a","from":"b","secret":7}"#,
                ErrorCode::InvalidMessage,
            ),
            (r#"{"type":"offer","sdp":{}}"#, ErrorCode::InvalidTarget),
            // A missing or invalid `to` is invalid_target, checked before the payload; a `to`
            // that is not a string is not the protocol's shape at all.
            (r#"{"type":"hangup"}"#, ErrorCode::InvalidTarget),
            (r#"{"type":"hangup","to":""}"#, ErrorCode::InvalidTarget),
            (r#"{"type":"hangup","to":null}"#, ErrorCode::InvalidTarget),
            (r#"{"type":"offer","to":"a b"}"#, ErrorCode::InvalidTarget),
            (
                r#"{"type":"candidate","to":"a/b","candidate":{}}"#,
                ErrorCode::InvalidTarget,
            ),
            (r#"{"type":"hangup","to":7}"#, ErrorCode::InvalidMessage),
            (r#"{"type":"offer","to":"b"}"#, ErrorCode::InvalidMessage),
            (
                r#"{"type":"offer","to":"b","sdp":"x"}"#,
                ErrorCode::InvalidMessage,
            ),
            (
                r#"{"type":"candidate","to":"b"}"#,
                ErrorCode::InvalidMessage,
            ),
        ];
        for (input, code) in cases {
            assert_eq!(code_of(input), Some(code), "{input}");
        }
        let huge = format!(
            r#"{{"type":"ping","x":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(code_of(&huge), Some(ErrorCode::MessageTooLarge));
    }

    #[test]
    fn server_messages_round_trip() {
        let cases = [
            ServerMessage::Joined {
                room: "r".into(),
                id: "me".into(),
                secret: Some("00112233445566778899aabbccddeeff".into()),
            },
            ServerMessage::Joined {
                room: "r".into(),
                id: "me".into(),
                secret: None,
            },
            ServerMessage::RoomMembers {
                room: "r".into(),
                members: vec!["a".into(), "b".into()],
            },
            ServerMessage::Pong,
            ServerMessage::Relay {
                kind: RelayKind::Answer,
                room: "r".into(),
                from: "a".into(),
                to: "b".into(),
                payload: Some(json!({"type":"answer","sdp":"v=0"})),
            },
            ServerMessage::Error {
                code: ErrorCode::RoomFull,
                message: "full".into(),
            },
        ];
        for msg in cases {
            assert_eq!(ServerMessage::parse(&msg.to_json()), Ok(msg));
        }
        let wire: Value = serde_json::from_str(
            &ServerMessage::Error {
                code: ErrorCode::RateLimited,
                message: "slow down".into(),
            }
            .to_json(),
        )
        .unwrap_or_default();
        assert_eq!(
            wire,
            json!({"type":"error","code":"rate_limited","error":"slow down"})
        );
    }

    #[test]
    fn relayed_messages_over_64_kib_are_too_large_others_up_to_1_mb_are_not() {
        let offer = |pad: usize| {
            json!({"type":"offer","to":"b","sdp":{"type":"offer","sdp":"a".repeat(pad)}})
                .to_string()
        };
        let overhead = offer(0).len();
        assert!(ClientMessage::parse(&offer(MAX_RELAY_BYTES - overhead)).is_ok());
        let big = ClientMessage::parse(&offer(MAX_RELAY_BYTES - overhead + 1));
        assert_eq!(big, Err(ParseError::RelayTooLarge("offer")));
        assert_eq!(
            big.err().map(|e| e.code()),
            Some(ErrorCode::MessageTooLarge)
        );
        let candidate =
            json!({"type":"candidate","to":"b","candidate":{"candidate":"c".repeat(70_000)}});
        assert_eq!(
            ClientMessage::parse(&candidate.to_string()),
            Err(ParseError::RelayTooLarge("candidate"))
        );
        // The relay limit is for relays: a join padded past it is still a join.
        let join = format!(
            r#"{{"type":"join","room":"r","pad":"{}"}}"#,
            "a".repeat(MAX_RELAY_BYTES)
        );
        assert!(matches!(
            ClientMessage::parse(&join),
            Ok(ClientMessage::Join { .. })
        ));
    }

    #[test]
    fn joined_keeps_only_a_well_formed_secret() {
        let parsed =
            ServerMessage::parse(r#"{"type":"joined","room":"r","from":"a","secret":"<script>"}"#);
        assert_eq!(
            parsed,
            Ok(ServerMessage::Joined {
                room: "r".into(),
                id: "a".into(),
                secret: None
            })
        );
        assert!(is_valid_secret("0123456789abcdef0123456789abcdef"));
        assert!(!is_valid_secret("0123456789abcdef0123456789abcde"));
        assert!(!is_valid_secret("0123456789abcdef0123456789abcdeg"));
    }

    #[test]
    fn codes_are_unique_and_parse_back() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::parse(code.as_str()), Some(code));
        }
        assert_eq!(ErrorCode::parse("replaced"), Some(ErrorCode::Replaced));
    }
}
