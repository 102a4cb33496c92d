//! Seed 002's dialect: the socket.io events of a mediasoup-style SFU (docs/signaling.md,
//! "Large rooms"). The parameter shapes are mediasoup's (`RtpCapabilities` with
//! `preferredPayloadType`, `rtcpFeedback`, header extensions with `preferredId`; transports'
//! `iceParameters`, `iceCandidates`, `dtlsParameters` with `role` and `fingerprints`), so that
//! the real `mediasoup-client` 3 reads them unmodified.
//!
//! Every request is checked by [`Validate`] before the SFU looks at it: sizes are capped
//! (a client cannot make the server hold or walk an unbounded list) and names are restricted,
//! and a request that fails gets an `{ error }` ack ([`ErrorAck`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Events, client → server (each with an ack).
pub mod event {
    pub const GET_RTP_CAPABILITIES: &str = "get-rtp-capabilities";
    pub const JOIN: &str = "join-mediasoup-room";
    pub const CREATE_TRANSPORT: &str = "create-webrtc-transport";
    pub const CONNECT_TRANSPORT: &str = "connect-transport";
    pub const PRODUCE: &str = "produce";
    pub const CONSUME: &str = "consume";
    pub const RESUME_CONSUMER: &str = "resume-consumer";
    /// Server → client.
    pub const NEW_PRODUCER: &str = "new-producer";
    pub const PARTICIPANT_LIST_UPDATE: &str = "participant-list-update";
    pub const PARTICIPANT_LEFT: &str = "participant-left";
}

/// Most codecs in one capabilities or parameters object (Chromium offers about 20).
pub const MAX_CODECS: usize = 64;
/// Most header extensions in one object (Chromium offers about 15).
pub const MAX_HEADER_EXTENSIONS: usize = 32;
/// Most encodings of one producer: simulcast of up to four layers.
pub const MAX_ENCODINGS: usize = 4;
/// Most `rtcpFeedback` entries of one codec, and fmtp parameters of one codec.
pub const MAX_FEEDBACK: usize = 16;
pub const MAX_PARAMETERS: usize = 16;
/// Most fingerprints in `dtlsParameters` (one per hash function).
pub const MAX_FINGERPRINTS: usize = 8;
/// Longest string anywhere in a request (MIME types, URIs, fingerprints, ids), in bytes.
pub const MAX_STRING: usize = 256;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Audio,
    Video,
}

/// What a router or a device can receive and send (mediasoup's `RtpCapabilities`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCapabilities {
    #[serde(default)]
    pub codecs: Vec<RtpCodecCapability>,
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtension>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecCapability {
    pub kind: MediaKind,
    /// `audio/opus`, `video/H264`, `video/rtx`, …
    pub mime_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_payload_type: Option<u8>,
    pub clock_rate: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    /// fmtp parameters (`apt`, `packetization-mode`, `profile-level-id`, `useinbandfec`, …):
    /// numbers or strings.
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtcpFeedback {
    /// `nack`, `ccm`, `goog-remb`, `transport-cc`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pli` for `nack pli`, `fir` for `ccm fir`, empty otherwise.
    #[serde(default)]
    pub parameter: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtension {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<MediaKind>,
    pub uri: String,
    pub preferred_id: u8,
    #[serde(default)]
    pub preferred_encrypt: bool,
    /// `sendrecv`, `sendonly`, `recvonly`, `inactive`.
    #[serde(default = "sendrecv")]
    pub direction: String,
}

fn sendrecv() -> String {
    "sendrecv".into()
}

/// How one producer sends, or one consumer receives (mediasoup's `RtpParameters`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mid: Option<String>,
    #[serde(default)]
    pub codecs: Vec<RtpCodecParameters>,
    #[serde(default)]
    pub header_extensions: Vec<RtpHeaderExtensionParameters>,
    #[serde(default)]
    pub encodings: Vec<RtpEncodingParameters>,
    #[serde(default)]
    pub rtcp: RtcpParameters,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpCodecParameters {
    pub mime_type: String,
    pub payload_type: u8,
    pub clock_rate: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channels: Option<u8>,
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
    #[serde(default)]
    pub rtcp_feedback: Vec<RtcpFeedback>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpHeaderExtensionParameters {
    pub uri: String,
    pub id: u8,
    #[serde(default)]
    pub encrypt: bool,
    #[serde(default)]
    pub parameters: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtpEncodingParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssrc: Option<u32>,
    /// The simulcast layer's name (`r0`, `r1`, …) when the producer sends several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub codec_payload_type: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtx: Option<RtxParameters>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtx: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scalability_mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bitrate: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_resolution_down_by: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RtxParameters {
    pub ssrc: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RtcpParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cname: Option<String>,
    #[serde(default = "yes")]
    pub reduced_size: bool,
}

impl Default for RtcpParameters {
    fn default() -> Self {
        Self {
            cname: None,
            reduced_size: true,
        }
    }
}

fn yes() -> bool {
    true
}

/// A transport's ICE side (the SFU is ICE-lite).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceParameters {
    pub username_fragment: String,
    pub password: String,
    pub ice_lite: bool,
}

/// One address a transport listens on. mediasoup sends the address as both `address` and its
/// older name `ip`; mediasoup-client reads `address ?? ip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IceCandidate {
    pub foundation: String,
    pub priority: u32,
    pub address: String,
    pub ip: String,
    /// `udp`.
    pub protocol: String,
    pub port: u16,
    /// `host`.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DtlsRole {
    Auto,
    Client,
    Server,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsFingerprint {
    /// `sha-256`, …
    pub algorithm: String,
    /// Colon-separated upper-case hex bytes.
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DtlsParameters {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<DtlsRole>,
    pub fingerprints: Vec<DtlsFingerprint>,
}

/// `get-rtp-capabilities`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GetRtpCapabilities {
    pub room_id: String,
}

/// `join-mediasoup-room`. `name` is our addition (the seed's participants have names but its
/// join carries none); without it the participant is shown by its id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JoinRoom {
    pub room_id: String,
    pub rtp_capabilities: RtpCapabilities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Send,
    Recv,
}

/// `create-webrtc-transport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateTransport {
    pub room_id: String,
    pub direction: Direction,
}

/// The `params` of the `create-webrtc-transport` ack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TransportParams {
    pub id: String,
    pub ice_parameters: IceParameters,
    pub ice_candidates: Vec<IceCandidate>,
    pub dtls_parameters: DtlsParameters,
}

/// `connect-transport`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectTransport {
    pub room_id: String,
    pub transport_id: String,
    pub dtls_parameters: DtlsParameters,
}

/// `produce`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Produce {
    pub room_id: String,
    pub transport_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
}

/// `consume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Consume {
    pub room_id: String,
    pub producer_id: String,
    pub rtp_capabilities: RtpCapabilities,
}

/// The `consume` ack.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsumerParams {
    pub id: String,
    pub producer_id: String,
    pub kind: MediaKind,
    pub rtp_parameters: RtpParameters,
    pub peer_id: String,
}

/// `resume-consumer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResumeConsumer {
    pub room_id: String,
    pub consumer_id: String,
}

/// `new-producer`, server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NewProducer {
    pub producer_id: String,
    pub peer_id: String,
}

/// One entry of `participant-list-update`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub id: String,
    pub name: String,
    pub is_audio_muted: bool,
    pub is_video_paused: bool,
}

/// `participant-left`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParticipantLeft {
    pub peer_id: String,
}

/// The ack of a request that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorAck {
    pub error: String,
}

/// Why a request was refused; its `Display` is the `error` the ack carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SfuRequestError {
    #[error("invalid roomId")]
    InvalidRoom,
    #[error("invalid {0}")]
    InvalidId(&'static str),
    #[error("too many {0} (at most {1})")]
    TooMany(&'static str, usize),
    #[error("{0} is too long (at most {1})")]
    TooLong(&'static str, usize),
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Checks a request's sizes and names before the SFU acts on it.
pub trait Validate {
    /// # Errors
    /// The first limit the request breaks.
    fn validate(&self) -> Result<(), SfuRequestError>;
}

fn room(id: &str) -> Result<(), SfuRequestError> {
    if crate::is_valid_id(id) {
        Ok(())
    } else {
        Err(SfuRequestError::InvalidRoom)
    }
}

/// Transport, producer and consumer ids: what the server hands out, so the same alphabet.
fn object_id(what: &'static str, id: &str) -> Result<(), SfuRequestError> {
    if crate::is_valid_id(id) {
        Ok(())
    } else {
        Err(SfuRequestError::InvalidId(what))
    }
}

fn text(what: &'static str, s: &str) -> Result<(), SfuRequestError> {
    if s.len() > MAX_STRING {
        Err(SfuRequestError::TooLong(what, MAX_STRING))
    } else {
        Ok(())
    }
}

fn count(what: &'static str, n: usize, max: usize) -> Result<(), SfuRequestError> {
    if n > max {
        Err(SfuRequestError::TooMany(what, max))
    } else {
        Ok(())
    }
}

fn fmtp(parameters: &BTreeMap<String, Value>) -> Result<(), SfuRequestError> {
    count("codec parameters", parameters.len(), MAX_PARAMETERS)?;
    for (k, v) in parameters {
        text("a codec parameter", k)?;
        match v {
            Value::Number(_) | Value::Bool(_) => {}
            Value::String(s) => text("a codec parameter", s)?,
            _ => return Err(SfuRequestError::Invalid("codec parameter")),
        }
    }
    Ok(())
}

fn feedback(list: &[RtcpFeedback]) -> Result<(), SfuRequestError> {
    count("rtcpFeedback", list.len(), MAX_FEEDBACK)?;
    for f in list {
        text("rtcpFeedback", &f.kind)?;
        text("rtcpFeedback", &f.parameter)?;
    }
    Ok(())
}

/// The list sizes and each codec's strings, common to capabilities and parameters.
fn codecs<'a>(
    codecs: impl ExactSizeIterator<Item = (&'a str, &'a BTreeMap<String, Value>, &'a [RtcpFeedback])>,
    header_extensions: usize,
) -> Result<(), SfuRequestError> {
    count("codecs", codecs.len(), MAX_CODECS)?;
    count("headerExtensions", header_extensions, MAX_HEADER_EXTENSIONS)?;
    for (mime, parameters, rtcp_feedback) in codecs {
        text("mimeType", mime)?;
        fmtp(parameters)?;
        feedback(rtcp_feedback)?;
    }
    Ok(())
}

impl Validate for RtpCapabilities {
    fn validate(&self) -> Result<(), SfuRequestError> {
        codecs(
            self.codecs.iter().map(|c| {
                (
                    c.mime_type.as_str(),
                    &c.parameters,
                    c.rtcp_feedback.as_slice(),
                )
            }),
            self.header_extensions.len(),
        )?;
        for h in &self.header_extensions {
            text("uri", &h.uri)?;
            text("direction", &h.direction)?;
        }
        Ok(())
    }
}

impl Validate for RtpParameters {
    fn validate(&self) -> Result<(), SfuRequestError> {
        codecs(
            self.codecs.iter().map(|c| {
                (
                    c.mime_type.as_str(),
                    &c.parameters,
                    c.rtcp_feedback.as_slice(),
                )
            }),
            self.header_extensions.len(),
        )?;
        count("encodings", self.encodings.len(), MAX_ENCODINGS)?;
        if self.encodings.is_empty() {
            return Err(SfuRequestError::Invalid("encodings (none)"));
        }
        if let Some(mid) = &self.mid {
            text("mid", mid)?;
        }
        for h in &self.header_extensions {
            text("uri", &h.uri)?;
            if h.id == 0 || h.id > 14 {
                // One-byte header extensions: ids 1..=14 (what browsers and str0m use).
                return Err(SfuRequestError::Invalid("header extension id"));
            }
        }
        for e in &self.encodings {
            if let Some(rid) = &e.rid {
                // RFC 8851: an RtpStreamId is up to 16 alphanumeric characters (with - and _).
                if rid.is_empty()
                    || rid.len() > 16
                    || !rid
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return Err(SfuRequestError::Invalid("rid"));
                }
            }
            if let Some(mode) = &e.scalability_mode {
                text("scalabilityMode", mode)?;
            }
            if e.scale_resolution_down_by
                .is_some_and(|s| !s.is_finite() || s < 1.0)
            {
                return Err(SfuRequestError::Invalid("scaleResolutionDownBy"));
            }
        }
        if let Some(cname) = &self.rtcp.cname {
            text("cname", cname)?;
        }
        Ok(())
    }
}

impl Validate for DtlsParameters {
    fn validate(&self) -> Result<(), SfuRequestError> {
        count("fingerprints", self.fingerprints.len(), MAX_FINGERPRINTS)?;
        if self.fingerprints.is_empty() {
            return Err(SfuRequestError::Invalid("dtlsParameters (no fingerprint)"));
        }
        for f in &self.fingerprints {
            text("fingerprint algorithm", &f.algorithm)?;
            text("fingerprint", &f.value)?;
        }
        Ok(())
    }
}

impl Validate for GetRtpCapabilities {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)
    }
}

impl Validate for JoinRoom {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)?;
        self.rtp_capabilities.validate()?;
        if let Some(name) = &self.name
            && (name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control))
        {
            return Err(SfuRequestError::Invalid("name"));
        }
        Ok(())
    }
}

impl Validate for CreateTransport {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)
    }
}

impl Validate for ConnectTransport {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)?;
        object_id("transportId", &self.transport_id)?;
        self.dtls_parameters.validate()
    }
}

impl Validate for Produce {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)?;
        object_id("transportId", &self.transport_id)?;
        self.rtp_parameters.validate()
    }
}

impl Validate for Consume {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)?;
        object_id("producerId", &self.producer_id)?;
        self.rtp_capabilities.validate()
    }
}

impl Validate for ResumeConsumer {
    fn validate(&self) -> Result<(), SfuRequestError> {
        room(&self.room_id)?;
        object_id("consumerId", &self.consumer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What mediasoup-client 3 sends for `produce` from Chromium (its own numbering: STACK.md).
    const CHROMIUM_PRODUCE: &str = r#"{
        "roomId": "big-room",
        "transportId": "t_0123456789abcdef",
        "kind": "video",
        "rtpParameters": {
            "mid": "1",
            "codecs": [
                {"mimeType": "video/H264", "payloadType": 108, "clockRate": 90000,
                 "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1,
                                "profile-level-id": "42e01f"},
                 "rtcpFeedback": [{"type": "goog-remb", "parameter": ""},
                                  {"type": "transport-cc", "parameter": ""},
                                  {"type": "ccm", "parameter": "fir"},
                                  {"type": "nack", "parameter": ""},
                                  {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 109, "clockRate": 90000,
                 "parameters": {"apt": 108}, "rtcpFeedback": []}
            ],
            "headerExtensions": [
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:mid", "id": 4, "encrypt": false, "parameters": {}},
                {"uri": "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id", "id": 10, "encrypt": false, "parameters": {}},
                {"uri": "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01", "id": 3, "encrypt": false, "parameters": {}}
            ],
            "encodings": [
                {"rid": "r0", "active": true, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 4, "maxBitrate": 150000},
                {"rid": "r1", "active": true, "scalabilityMode": "L1T3", "scaleResolutionDownBy": 1, "maxBitrate": 900000}
            ],
            "rtcp": {"cname": "Bq4Jm0F2", "reducedSize": true}
        }
    }"#;

    #[test]
    fn mediasoup_clients_produce_request_parses_and_passes() {
        let p: Produce = serde_json::from_str(CHROMIUM_PRODUCE).unwrap();
        assert_eq!(p.kind, MediaKind::Video);
        let codec = &p.rtp_parameters.codecs[0];
        assert_eq!(codec.payload_type, 108);
        assert_eq!(codec.parameters["profile-level-id"], "42e01f");
        assert_eq!(codec.rtcp_feedback[4].parameter, "pli");
        assert_eq!(p.rtp_parameters.encodings[1].rid.as_deref(), Some("r1"));
        assert_eq!(
            p.rtp_parameters.encodings[0].scale_resolution_down_by,
            Some(4.0)
        );
        assert_eq!(p.validate(), Ok(()));
    }

    #[test]
    fn requests_over_the_limits_are_refused_with_a_reason() {
        let mut p: Produce = serde_json::from_str(CHROMIUM_PRODUCE).unwrap();
        p.rtp_parameters.encodings = vec![RtpEncodingParameters::default(); 5];
        assert_eq!(
            p.validate().unwrap_err().to_string(),
            "too many encodings (at most 4)"
        );
        let mut p: Produce = serde_json::from_str(CHROMIUM_PRODUCE).unwrap();
        p.rtp_parameters.header_extensions[0].id = 15;
        assert_eq!(
            p.validate(),
            Err(SfuRequestError::Invalid("header extension id"))
        );
        let mut p: Produce = serde_json::from_str(CHROMIUM_PRODUCE).unwrap();
        p.rtp_parameters.encodings[0].rid = Some("r0/../x".into());
        assert_eq!(p.validate(), Err(SfuRequestError::Invalid("rid")));
        let mut p: Produce = serde_json::from_str(CHROMIUM_PRODUCE).unwrap();
        p.transport_id = "x".repeat(65);
        assert_eq!(p.validate(), Err(SfuRequestError::InvalidId("transportId")));
        let join = JoinRoom {
            room_id: "r".into(),
            rtp_capabilities: RtpCapabilities::default(),
            name: Some("a\u{0}b".into()),
        };
        assert_eq!(join.validate(), Err(SfuRequestError::Invalid("name")));
        let connect = ConnectTransport {
            room_id: "r".into(),
            transport_id: "t".into(),
            dtls_parameters: DtlsParameters {
                role: Some(DtlsRole::Client),
                fingerprints: vec![],
            },
        };
        assert!(connect.validate().is_err());
        // Nested objects are not codec parameters.
        let mut caps = RtpCapabilities::default();
        caps.codecs.push(RtpCodecCapability {
            kind: MediaKind::Audio,
            mime_type: "audio/opus".into(),
            preferred_payload_type: None,
            clock_rate: 48_000,
            channels: Some(2),
            parameters: [("x".to_owned(), serde_json::json!({"deep": [1]}))].into(),
            rtcp_feedback: vec![],
        });
        assert_eq!(
            caps.validate(),
            Err(SfuRequestError::Invalid("codec parameter"))
        );
    }

    #[test]
    fn transport_params_have_mediasoups_shape() {
        let t = TransportParams {
            id: "t1".into(),
            ice_parameters: IceParameters {
                username_fragment: "uf".into(),
                password: "pw".into(),
                ice_lite: true,
            },
            ice_candidates: vec![IceCandidate {
                foundation: "udpcandidate".into(),
                priority: 1_076_302_079,
                address: "192.0.2.1".into(),
                ip: "192.0.2.1".into(),
                protocol: "udp".into(),
                port: 40_000,
                kind: "host".into(),
            }],
            dtls_parameters: DtlsParameters {
                role: Some(DtlsRole::Auto),
                fingerprints: vec![DtlsFingerprint {
                    algorithm: "sha-256".into(),
                    value: "AB:CD".into(),
                }],
            },
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["iceParameters"]["usernameFragment"], "uf");
        assert_eq!(v["iceParameters"]["iceLite"], true);
        assert_eq!(v["iceCandidates"][0]["type"], "host");
        assert_eq!(v["iceCandidates"][0]["address"], "192.0.2.1");
        assert_eq!(v["dtlsParameters"]["role"], "auto");
        assert_eq!(
            v["dtlsParameters"]["fingerprints"][0]["algorithm"],
            "sha-256"
        );
        let p = Participant {
            id: "a".into(),
            name: "Ann".into(),
            is_audio_muted: true,
            is_video_paused: false,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"id":"a","name":"Ann","isAudioMuted":true,"isVideoPaused":false}"#
        );
    }
}
