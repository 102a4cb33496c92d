//! Capability negotiation, as mediasoup's `ortc` does it: the router's RTP capabilities (what
//! every member is told in `get-rtp-capabilities`), how a producer's `rtpParameters` — in the
//! sender's own numbering: Chromium sends H264 as 108, not the router's number — map onto the
//! router's codecs, and the `rtpParameters` a consumer is given, in the router's numbering
//! (which mediasoup-client's receive side keeps).

use std::collections::BTreeMap;

use liveloop_proto::sfu::{
    MediaKind, RtcpFeedback, RtcpParameters, RtpCapabilities, RtpCodecCapability,
    RtpCodecParameters, RtpEncodingParameters, RtpHeaderExtension, RtpHeaderExtensionParameters,
    RtpParameters, RtxParameters,
};
use serde_json::{Value, json};

pub const URI_MID: &str = "urn:ietf:params:rtp-hdrext:sdes:mid";
pub const URI_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:rtp-stream-id";
pub const URI_REPAIRED_RID: &str = "urn:ietf:params:rtp-hdrext:sdes:repaired-rtp-stream-id";
pub const URI_ABS_SEND_TIME: &str = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time";
pub const URI_TRANSPORT_CC: &str =
    "http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01";
pub const URI_AUDIO_LEVEL: &str = "urn:ietf:params:rtp-hdrext:ssrc-audio-level";
pub const URI_VIDEO_ORIENTATION: &str = "urn:3gpp:video-orientation";

/// Why a producer or consumer cannot be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrtcError {
    #[error("no codec the room supports ({0})")]
    NoCommonCodec(String),
    #[error("the producer's {0} codec parameters do not say which codec it repairs")]
    BadRtx(u8),
    #[error("the producer's encodings carry neither ssrc nor rid")]
    NoStreamId,
    #[error("cannot consume: no codec in common")]
    CannotConsume,
}

fn fb(kind: &str, parameter: &str) -> RtcpFeedback {
    RtcpFeedback {
        kind: kind.into(),
        parameter: parameter.into(),
    }
}

fn params(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// The router's capabilities: Opus, VP8 and H264 constrained baseline (what the native client
/// and browsers send), each video codec with RTX; NACK, PLI, FIR and transport-wide congestion
/// control feedback; the header extensions the SFU reads or writes.
#[must_use]
pub fn router_capabilities() -> RtpCapabilities {
    let video_fb = || {
        vec![
            fb("nack", ""),
            fb("nack", "pli"),
            fb("ccm", "fir"),
            fb("transport-cc", ""),
        ]
    };
    let codec =
        |kind, mime: &str, pt, clock_rate, channels, p: Value, rtcp_feedback| RtpCodecCapability {
            kind,
            mime_type: mime.into(),
            preferred_payload_type: Some(pt),
            clock_rate,
            channels,
            parameters: params(p),
            rtcp_feedback,
        };
    let ext = |kind, uri: &str, preferred_id, direction: &str| RtpHeaderExtension {
        kind: Some(kind),
        uri: uri.into(),
        preferred_id,
        preferred_encrypt: false,
        direction: direction.into(),
    };
    use MediaKind::{Audio, Video};
    RtpCapabilities {
        codecs: vec![
            codec(
                Audio,
                "audio/opus",
                100,
                48_000,
                Some(2),
                json!({"useinbandfec": 1, "usedtx": 1}),
                vec![fb("nack", ""), fb("transport-cc", "")],
            ),
            codec(Video, "video/VP8", 101, 90_000, None, json!({}), video_fb()),
            codec(
                Video,
                "video/rtx",
                102,
                90_000,
                None,
                json!({"apt": 101}),
                vec![],
            ),
            codec(
                Video,
                "video/H264",
                103,
                90_000,
                None,
                json!({"packetization-mode": 1, "profile-level-id": "42e01f",
                       "level-asymmetry-allowed": 1}),
                video_fb(),
            ),
            codec(
                Video,
                "video/rtx",
                104,
                90_000,
                None,
                json!({"apt": 103}),
                vec![],
            ),
        ],
        header_extensions: vec![
            ext(Audio, URI_MID, 1, "sendrecv"),
            ext(Video, URI_MID, 1, "sendrecv"),
            ext(Video, URI_RID, 2, "recvonly"),
            ext(Video, URI_REPAIRED_RID, 3, "recvonly"),
            ext(Audio, URI_ABS_SEND_TIME, 4, "sendrecv"),
            ext(Video, URI_ABS_SEND_TIME, 4, "sendrecv"),
            ext(Audio, URI_TRANSPORT_CC, 5, "recvonly"),
            ext(Video, URI_TRANSPORT_CC, 5, "sendrecv"),
            ext(Audio, URI_AUDIO_LEVEL, 10, "sendrecv"),
            ext(Video, URI_VIDEO_ORIENTATION, 11, "sendrecv"),
        ],
    }
}

fn param_str(p: &BTreeMap<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.to_ascii_lowercase()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn is_rtx(mime: &str) -> bool {
    mime.eq_ignore_ascii_case("video/rtx") || mime.eq_ignore_ascii_case("audio/rtx")
}

/// H264 profiles match on profile_idc and the constraint flags that tell constrained baseline
/// apart (`42e0` and `42c0` are both constrained baseline); the level may differ (a decoder
/// takes lower levels, and `level-asymmetry-allowed` lets each side send its own).
fn h264_profile(p: &BTreeMap<String, Value>) -> String {
    let id = param_str(p, "profile-level-id").unwrap_or_else(|| "42001f".into());
    match id.get(..4) {
        Some("42e0" | "42c0") => "cb".into(),
        Some(other) => other.into(),
        None => id,
    }
}

/// What identifies a codec apart from its payload type.
#[derive(Debug, Clone, Copy)]
struct CodecKey<'a> {
    mime: &'a str,
    clock_rate: u32,
    channels: Option<u8>,
    parameters: &'a BTreeMap<String, Value>,
}

impl<'a> From<&'a RtpCodecCapability> for CodecKey<'a> {
    fn from(c: &'a RtpCodecCapability) -> Self {
        Self {
            mime: &c.mime_type,
            clock_rate: c.clock_rate,
            channels: c.channels,
            parameters: &c.parameters,
        }
    }
}

impl<'a> From<&'a RtpCodecParameters> for CodecKey<'a> {
    fn from(c: &'a RtpCodecParameters) -> Self {
        Self {
            mime: &c.mime_type,
            clock_rate: c.clock_rate,
            channels: c.channels,
            parameters: &c.parameters,
        }
    }
}

/// Whether two codecs are the same codec (MIME type, clock rate, channels; for H264 the
/// packetization mode and profile), whatever their payload types.
fn same_codec(a: CodecKey<'_>, b: CodecKey<'_>) -> bool {
    if !a.mime.eq_ignore_ascii_case(b.mime) || a.clock_rate != b.clock_rate {
        return false;
    }
    if a.mime.eq_ignore_ascii_case("audio/opus") {
        // Opus is always described as two channels, whatever it carries.
        return true;
    }
    if a.channels.unwrap_or(1) != b.channels.unwrap_or(1) {
        return false;
    }
    if a.mime.eq_ignore_ascii_case("video/H264") {
        let mode = |p: &BTreeMap<String, Value>| {
            param_str(p, "packetization-mode").unwrap_or_else(|| "0".into())
        };
        return mode(a.parameters) == mode(b.parameters)
            && h264_profile(a.parameters) == h264_profile(b.parameters);
    }
    true
}

/// How a producer's numbering maps onto the router's.
#[derive(Debug, Clone, PartialEq)]
pub struct ProducerMapping {
    pub kind: MediaKind,
    /// (producer payload type, router payload type), media codecs and their RTX.
    pub payload_types: Vec<(u8, u8)>,
    /// The producer's codecs renumbered into the router's numbering, media codec first.
    pub router_codecs: Vec<RtpCodecParameters>,
    /// (producer's header extension id, URI), for reading its packets.
    pub header_extensions: Vec<(u8, String)>,
    /// Its encodings, lowest layer first (simulcast), as sent.
    pub encodings: Vec<RtpEncodingParameters>,
    pub cname: Option<String>,
}

impl ProducerMapping {
    /// The router's payload type for a packet the producer numbered `pt`.
    #[must_use]
    pub fn router_pt(&self, pt: u8) -> Option<u8> {
        self.payload_types
            .iter()
            .find(|(p, _)| *p == pt)
            .map(|(_, r)| *r)
    }
}

/// Maps a producer's `rtpParameters` onto the router's capabilities. Its first media codec
/// the router has is the one forwarded; others it lists are ignored (a producer sends one).
///
/// # Errors
/// No codec in common, an RTX without `apt`, or encodings without ssrc or rid.
pub fn map_producer(
    router: &RtpCapabilities,
    kind: MediaKind,
    rtp: &RtpParameters,
) -> Result<ProducerMapping, OrtcError> {
    let media = rtp
        .codecs
        .iter()
        .filter(|c| !is_rtx(&c.mime_type))
        .find_map(|c| {
            router
                .codecs
                .iter()
                .filter(|r| r.kind == kind)
                .find(|r| same_codec(c.into(), CodecKey::from(*r)))
                .map(|r| (c, r))
        });
    let Some((codec, router_codec)) = media else {
        let offered: Vec<&str> = rtp.codecs.iter().map(|c| c.mime_type.as_str()).collect();
        return Err(OrtcError::NoCommonCodec(offered.join(", ")));
    };
    let router_pt = router_codec.preferred_payload_type.unwrap_or_default();
    let mut payload_types = vec![(codec.payload_type, router_pt)];
    let mut router_codecs = vec![RtpCodecParameters {
        mime_type: router_codec.mime_type.clone(),
        payload_type: router_pt,
        clock_rate: router_codec.clock_rate,
        channels: router_codec.channels,
        parameters: router_codec.parameters.clone(),
        rtcp_feedback: router_codec.rtcp_feedback.clone(),
    }];
    // Its RTX, when both sides have one for this codec.
    for rtx in rtp.codecs.iter().filter(|c| is_rtx(&c.mime_type)) {
        let apt = param_str(&rtx.parameters, "apt")
            .and_then(|a| a.parse::<u8>().ok())
            .ok_or(OrtcError::BadRtx(rtx.payload_type))?;
        if apt != codec.payload_type {
            continue;
        }
        let router_rtx = router.codecs.iter().find(|r| {
            is_rtx(&r.mime_type)
                && param_str(&r.parameters, "apt").as_deref() == Some(&router_pt.to_string())
        });
        if let Some(r) = router_rtx {
            let pt = r.preferred_payload_type.unwrap_or_default();
            payload_types.push((rtx.payload_type, pt));
            router_codecs.push(RtpCodecParameters {
                mime_type: r.mime_type.clone(),
                payload_type: pt,
                clock_rate: r.clock_rate,
                channels: None,
                parameters: r.parameters.clone(),
                rtcp_feedback: vec![],
            });
        }
    }
    if rtp
        .encodings
        .iter()
        .any(|e| e.ssrc.is_none() && e.rid.is_none())
    {
        return Err(OrtcError::NoStreamId);
    }
    Ok(ProducerMapping {
        kind,
        payload_types,
        router_codecs,
        header_extensions: rtp
            .header_extensions
            .iter()
            .map(|h| (h.id, h.uri.clone()))
            .collect(),
        encodings: rtp.encodings.clone(),
        cname: rtp.rtcp.cname.clone(),
    })
}

/// The outgoing stream of one consumer: its SSRCs (chosen by the caller, at random).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumerSsrcs {
    pub media: u32,
    pub rtx: u32,
}

/// The `rtpParameters` for a consumer of `producer` whose device has `caps`: the producer's
/// codec in the router's numbering with the feedback both sides know, its RTX when the device
/// takes RTX, the header extensions the router sends that the device knows (with the device's
/// ids), and one encoding (simulcast layers are all sent as one stream, switched at
/// keyframes).
///
/// # Errors
/// [`OrtcError::CannotConsume`] when the device lacks the producer's codec.
pub fn consumer_parameters(
    router: &RtpCapabilities,
    producer: &ProducerMapping,
    caps: &RtpCapabilities,
    ssrcs: ConsumerSsrcs,
) -> Result<RtpParameters, OrtcError> {
    let Some(media) = producer.router_codecs.first() else {
        return Err(OrtcError::CannotConsume);
    };
    let Some(cap) = caps
        .codecs
        .iter()
        .find(|c| c.kind == producer.kind && same_codec(media.into(), CodecKey::from(*c)))
    else {
        return Err(OrtcError::CannotConsume);
    };
    let mut codec = media.clone();
    codec.payload_type = cap.preferred_payload_type.unwrap_or(media.payload_type);
    codec
        .rtcp_feedback
        .retain(|f| cap.rtcp_feedback.contains(f));
    let mut codecs = vec![codec.clone()];
    let device_rtx = caps.codecs.iter().find(|c| {
        is_rtx(&c.mime_type)
            && param_str(&c.parameters, "apt").as_deref() == Some(&codec.payload_type.to_string())
    });
    let rtx = match (producer.router_codecs.get(1), device_rtx) {
        (Some(router_rtx), Some(d)) => {
            let mut r = router_rtx.clone();
            r.payload_type = d.preferred_payload_type.unwrap_or(r.payload_type);
            r.parameters
                .insert("apt".into(), Value::from(codec.payload_type));
            codecs.push(r);
            Some(RtxParameters { ssrc: ssrcs.rtx })
        }
        _ => None,
    };
    let header_extensions = router
        .header_extensions
        .iter()
        .filter(|h| h.kind == Some(producer.kind))
        .filter(|h| matches!(h.direction.as_str(), "sendrecv" | "sendonly"))
        .filter_map(|h| {
            caps.header_extensions
                .iter()
                .find(|d| d.uri == h.uri && d.kind.is_none_or(|k| k == producer.kind))
                .map(|d| RtpHeaderExtensionParameters {
                    uri: h.uri.clone(),
                    id: d.preferred_id,
                    encrypt: false,
                    parameters: BTreeMap::new(),
                })
        })
        .collect();
    Ok(RtpParameters {
        mid: None,
        codecs,
        header_extensions,
        encodings: vec![RtpEncodingParameters {
            ssrc: Some(ssrcs.media),
            rtx,
            ..RtpEncodingParameters::default()
        }],
        rtcp: RtcpParameters {
            cname: producer.cname.clone(),
            reduced_size: true,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Chromium's producer parameters through mediasoup-client (its own numbering, STACK.md).
    fn chromium_video() -> RtpParameters {
        serde_json::from_value(json!({
            "mid": "1",
            "codecs": [
                {"mimeType": "video/H264", "payloadType": 108, "clockRate": 90000,
                 "parameters": {"level-asymmetry-allowed": 1, "packetization-mode": 1,
                                "profile-level-id": "42e01f"},
                 "rtcpFeedback": [{"type": "nack"}, {"type": "nack", "parameter": "pli"}]},
                {"mimeType": "video/rtx", "payloadType": 109, "clockRate": 90000,
                 "parameters": {"apt": 108}}
            ],
            "headerExtensions": [
                {"uri": URI_MID, "id": 4}, {"uri": URI_RID, "id": 10},
                {"uri": URI_TRANSPORT_CC, "id": 3}
            ],
            "encodings": [{"rid": "r0", "scaleResolutionDownBy": 4}, {"rid": "r1"}],
            "rtcp": {"cname": "c1"}
        }))
        .unwrap()
    }

    #[test]
    fn a_producers_numbering_maps_onto_the_routers() {
        let router = router_capabilities();
        let m = map_producer(&router, MediaKind::Video, &chromium_video()).unwrap();
        assert_eq!(m.payload_types, vec![(108, 103), (109, 104)]);
        assert_eq!(m.router_pt(108), Some(103));
        assert_eq!(m.router_pt(96), None);
        assert_eq!(m.router_codecs[1].parameters["apt"], 103);
        assert_eq!(m.encodings.len(), 2);
        // A VP8 producer without RTX.
        let vp8: RtpParameters = serde_json::from_value(json!({
            "codecs": [{"mimeType": "video/VP8", "payloadType": 96, "clockRate": 90000}],
            "encodings": [{"ssrc": 1234}]
        }))
        .unwrap();
        let m = map_producer(&router, MediaKind::Video, &vp8).unwrap();
        assert_eq!(m.payload_types, vec![(96, 101)]);
        // H264 high profile is not constrained baseline; audio is not video.
        let mut high = chromium_video();
        high.codecs[0]
            .parameters
            .insert("profile-level-id".into(), json!("640c1f"));
        assert!(matches!(
            map_producer(&router, MediaKind::Video, &high),
            Err(OrtcError::NoCommonCodec(_))
        ));
        assert!(map_producer(&router, MediaKind::Audio, &chromium_video()).is_err());
        let mut no_id = chromium_video();
        no_id.encodings[0].rid = None;
        assert_eq!(
            map_producer(&router, MediaKind::Video, &no_id),
            Err(OrtcError::NoStreamId)
        );
    }

    #[test]
    fn a_consumer_gets_the_routers_codec_its_rtx_and_its_own_extension_ids() {
        let router = router_capabilities();
        let producer = map_producer(&router, MediaKind::Video, &chromium_video()).unwrap();
        // A device that loaded the router's capabilities (as mediasoup-client does), with its
        // own extension ids, and no FIR.
        let mut caps = router.clone();
        for h in &mut caps.header_extensions {
            h.preferred_id += 1;
        }
        for c in &mut caps.codecs {
            c.rtcp_feedback.retain(|f| f.kind != "ccm");
        }
        let ssrcs = ConsumerSsrcs { media: 11, rtx: 12 };
        let p = consumer_parameters(&router, &producer, &caps, ssrcs).unwrap();
        assert_eq!(p.codecs[0].mime_type, "video/H264");
        assert_eq!(p.codecs[0].payload_type, 103);
        assert!(p.codecs[0].rtcp_feedback.iter().all(|f| f.kind != "ccm"));
        assert_eq!(p.codecs[1].payload_type, 104);
        assert_eq!(p.codecs[1].parameters["apt"], 103);
        assert_eq!(p.encodings.len(), 1);
        assert_eq!(p.encodings[0].ssrc, Some(11));
        assert_eq!(p.encodings[0].rtx, Some(RtxParameters { ssrc: 12 }));
        assert_eq!(p.rtcp.cname.as_deref(), Some("c1"));
        // The router never sends rid (recvonly); mid with the device's id.
        assert!(p.header_extensions.iter().all(|h| h.uri != URI_RID));
        let mid = p
            .header_extensions
            .iter()
            .find(|h| h.uri == URI_MID)
            .unwrap();
        assert_eq!(mid.id, 2);
        // A device without H264 cannot consume it.
        let mut vp8_only = router.clone();
        vp8_only.codecs.retain(|c| c.mime_type != "video/H264");
        assert_eq!(
            consumer_parameters(&router, &producer, &vp8_only, ssrcs),
            Err(OrtcError::CannotConsume)
        );
        // Without RTX on the device: no RTX stream.
        let mut no_rtx = router.clone();
        no_rtx.codecs.retain(|c| c.mime_type != "video/rtx");
        let p = consumer_parameters(&router, &producer, &no_rtx, ssrcs).unwrap();
        assert_eq!(p.codecs.len(), 1);
        assert_eq!(p.encodings[0].rtx, None);
    }

    #[test]
    fn router_capabilities_have_mediasoups_shape() {
        let v = serde_json::to_value(router_capabilities()).unwrap();
        let opus = &v["codecs"][0];
        assert_eq!(opus["mimeType"], "audio/opus");
        assert_eq!(opus["preferredPayloadType"], 100);
        assert_eq!(opus["channels"], 2);
        assert_eq!(opus["rtcpFeedback"][0]["type"], "nack");
        assert_eq!(v["headerExtensions"][0]["preferredId"], 1);
        assert_eq!(v["headerExtensions"][0]["direction"], "sendrecv");
    }
}
