//! Fuzz targets (bolero) for every parser that reads remote bytes, with their corpus in
//! `tests/__fuzz__/<target>/corpus/` (docs/fuzzing.md). Under `cargo test` each target replays
//! its corpus, then runs a bounded number of random inputs; `BOLERO_RANDOM_ITERATIONS` makes a
//! longer campaign, and a failure prints the `BOLERO_RANDOM_SEED` that reproduces it.
//!
//! Every input is checked twice: as the text it is (what a corpus file or a coverage-guided
//! fuzzer hands over), and as a mutation of a real message that its bytes choose (so that
//! random bytes reach deep into the parsers, not only their first `{`). Beyond "no panic":
//! what is accepted re-encodes and parses back to the same value, the limits hold, and a
//! refused input gets its typed error.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use liveloop_proto::link::{self, RoomLink};
use liveloop_proto::matchmaking::{self as mm, decode_payload};
use liveloop_proto::peer::{self, PeerMessage};
use liveloop_proto::rooms::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, MAX_RELAY_BYTES, ParseError, RelayKind,
    ServerMessage, is_valid_secret,
};
use liveloop_proto::rtc_config::RtcConfig;
use liveloop_proto::sfu::{self, Validate};
use liveloop_proto::{MAX_ID_CHARS, is_valid_id};

const _: () = assert!(MAX_ID_CHARS == 64, "the long id in TOKENS is 65 characters");
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Random inputs per target under `cargo test` (after the corpus); each target takes well
/// under two seconds in a debug build. `BOLERO_RANDOM_ITERATIONS` overrides it.
const ITERATIONS: usize = 10_000;

/// Where the last failing input of a target is written (the bytes to put in its corpus).
fn failure_path(target: &str) -> std::path::PathBuf {
    std::env::temp_dir().join("liveloop-fuzz").join(target)
}

/// Writes the input to [`failure_path`] if the check panics with it.
struct KeepOnPanic<'a>(&'static str, &'a [u8]);

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = failure_path(self.0);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&path, self.1);
            eprintln!("failing input written to {}", path.display());
        }
    }
}

/// Runs `check` on every corpus file and [`ITERATIONS`] random inputs of target `name`.
fn fuzz(name: &'static str, seeds: &'static [&'static str], check: fn(&str)) {
    bolero::check!(name = name)
        .with_iterations(ITERATIONS)
        .for_each(|bytes: &[u8]| {
            let _keep = KeepOnPanic(name, bytes);
            check(&String::from_utf8_lossy(bytes));
            check(&mutate(seeds, bytes));
        });
}

/// The fuzzer's bytes, read as choices.
struct Choices<'a>(&'a [u8]);

impl Choices<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn below(&mut self, n: usize) -> Option<usize> {
        let hi = usize::from(self.byte()?);
        let lo = usize::from(self.byte().unwrap_or(0));
        Some((hi << 8 | lo) % n.max(1))
    }
}

/// Pieces that make parsers take other branches: JSON syntax, field names, values at the
/// limits, and the characters that matter in URLs.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e999",
    "18446744073709551616",
    "\\u0000",
    "\\ud800",
    "\\\"",
    "é",
    "🎥",
    "\u{200b}",
    " ",
    "\r\n",
    "\"type\":",
    "\"join\"",
    "\"offer\"",
    "\"answer\"",
    "\"candidate\"",
    "\"hangup\"",
    "\"joined\"",
    "\"room_members\"",
    "\"error\"",
    "\"state\"",
    "\"chat\"",
    "\"bye\"",
    "\"room\":\"r\",",
    "\"from\":\"a\",",
    "\"to\":\"b\",",
    "\"sdp\":{},",
    "\"candidate\":null,",
    "\"members\":[],",
    "\"secret\":\"0123456789abcdef0123456789abcdef\",",
    "\"code\":\"room_full\",",
    "\"urls\":",
    "\"username\":\"u\",",
    "\"credential\":\"p\",",
    "\"roomId\":",
    "\"name\":",
    "\"userImage\":",
    "data:image/png;base64,",
    "ws://",
    "wss://",
    "http://",
    "https://",
    "liveloop://join/",
    "?server=",
    "&",
    "#",
    "%",
    "@",
    "@calls.example",
    "/",
    "/r/",
    "/ws",
    "127.0.0.1",
    ":8080",
    "[::1]",
    "localhost",
    ".local",
    "turn:",
    "stun:",
    // One character past the longest id.
    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
];

/// A real message from `seeds`, changed in a few places the bytes choose.
fn mutate(seeds: &[&str], bytes: &[u8]) -> String {
    let mut c = Choices(bytes);
    let Some(i) = c.below(seeds.len()) else {
        return String::new();
    };
    let mut s: Vec<char> = seeds[i].chars().collect();
    while let (Some(op), Some(at)) = (c.byte(), c.below(s.len() + 1)) {
        match op % 6 {
            0 => {
                let end = (at + 1 + usize::from(c.byte().unwrap_or(0) % 16)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let token = TOKENS[c.below(TOKENS.len()).unwrap_or(0)];
                s.splice(at..at, token.chars());
            }
            2 if at < s.len() => {
                let code = c.below(0x11_0000).unwrap_or(0) as u32;
                s[at] = char::from_u32(code).unwrap_or('\u{fffd}');
            }
            3 if !s.is_empty() => {
                let from = c.below(s.len()).unwrap_or(0);
                let len = usize::from(c.byte().unwrap_or(0) % 32).min(s.len() - from);
                let copy: Vec<char> = s[from..from + len].to_vec();
                s.splice(at..at, copy);
            }
            4 => {
                // A piece of another real message.
                let other: Vec<char> = seeds[c.below(seeds.len()).unwrap_or(0)].chars().collect();
                let from = c.below(other.len()).unwrap_or(0);
                let len = usize::from(c.byte().unwrap_or(0) % 48).min(other.len() - from);
                s.splice(at..at, other[from..from + len].iter().copied());
            }
            _ => s.insert(at.min(s.len()), char::from(c.byte().unwrap_or(b' '))),
        }
    }
    s.into_iter().collect()
}

/// A real browser SDP offer (Chromium's, audio, video and the data channel), as relayed.
const SDP_OFFER_RELAY: &str = concat!(
    r#"{"type":"offer","to":"bob","sdp":{"type":"offer","sdp":"v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"#,
    r#"a=group:BUNDLE 0 1 2\r\na=extmap-allow-mixed\r\na=msid-semantic: WMS liveloop\r\n"#,
    r#"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\n"#,
    r#"a=ice-ufrag:Qf3x\r\na=ice-pwd:6AaZEu7m8GkSpP5nvT3pN2yk\r\na=ice-options:trickle\r\n"#,
    r#"a=fingerprint:sha-256 2C:4F:8D:9B:31:0A:6E:77:5D:12:C3:E9:B0:44:A1:F8:36:D2:90:7C:5B:E1:0F:88:AB:63:14:C9:7E:02:D5:3A\r\n"#,
    r#"a=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=msid:liveloop audio\r\na=rtcp-mux\r\n"#,
    r#"a=rtpmap:111 opus/48000/2\r\na=rtcp-fb:111 transport-cc\r\na=fmtp:111 minptime=10;useinbandfec=1\r\n"#,
    r#"m=video 9 UDP/TLS/RTP/SAVPF 102 96\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=sendrecv\r\na=rtcp-mux\r\n"#,
    r#"a=rtpmap:102 H264/90000\r\na=rtcp-fb:102 nack\r\na=rtcp-fb:102 nack pli\r\na=rtcp-fb:102 ccm fir\r\n"#,
    r#"a=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r\n"#,
    r#"a=rtpmap:96 VP8/90000\r\na=ssrc:2231627014 cname:4TOk42mSjXCkVIa6\r\n"#,
    r#"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=sctp-port:5000\r\n"}}"#
);

const CLIENT_SEEDS: &[&str] = &[
    r#"{"type":"join","room":"standup","from":"alice"}"#,
    r#"{"type":"join","room":"standup"}"#,
    r#"{"type":"join","room":"standup","from":"alice","secret":"9f86d081884c7d659a2feaa0c55ad015"}"#,
    r#"{"type":"leave"}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"pong"}"#,
    SDP_OFFER_RELAY,
    r#"{"type":"answer","to":"alice","sdp":{"type":"answer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"}}"#,
    r#"{"type":"candidate","to":"bob","candidate":{"candidate":"candidate:842163049 1 udp 1677729535 192.0.2.7 49203 typ srflx raddr 0.0.0.0 rport 0 generation 0 ufrag Qf3x network-cost 999","sdpMid":"0","sdpMLineIndex":0,"usernameFragment":"Qf3x"}}"#,
    r#"{"type":"candidate","to":"bob","candidate":null}"#,
    r#"{"type":"hangup","to":"bob"}"#,
];

/// `ClientMessage::parse`, what the room server does with every text frame.
fn check_client(text: &str) {
    let parsed = ClientMessage::parse(text);
    let msg = match parsed {
        Ok(msg) => msg,
        Err(e) => {
            // Every refusal has exactly one wire code, and that code reads back.
            assert_eq!(ErrorCode::parse(e.code().as_str()), Some(e.code()));
            if text.len() > MAX_MESSAGE_BYTES {
                assert_eq!(e, ParseError::TooLarge);
            }
            return;
        }
    };
    assert!(text.len() <= MAX_MESSAGE_BYTES);
    match &msg {
        ClientMessage::Join { room, id, secret } => {
            assert!(is_valid_id(room), "{text:?}");
            assert!(id.as_deref().is_none_or(is_valid_id), "{text:?}");
            if let Some(secret) = secret {
                assert!(is_valid_secret(secret) && id.is_some(), "{text:?}");
            }
        }
        ClientMessage::Relay { kind, to, payload } => {
            assert!(text.len() <= MAX_RELAY_BYTES);
            assert!(is_valid_id(to), "{text:?}");
            let shape_ok = match kind {
                RelayKind::Offer | RelayKind::Answer => {
                    payload.as_ref().is_some_and(Value::is_object)
                }
                RelayKind::Candidate => payload
                    .as_ref()
                    .is_some_and(|p| p.is_object() || p.is_null()),
                _ => payload.is_none(),
            };
            assert!(shape_ok, "{text:?} → {msg:?}");
        }
        _ => {}
    }
    // Round trip: what a client would send for this message parses back to it.
    let json = serde_json::to_string(&msg.to_wire()).unwrap();
    if json.len() <= MAX_RELAY_BYTES {
        assert_eq!(
            ClientMessage::parse(&json).as_ref(),
            Ok(&msg),
            "{text:?} re-encoded as {json}"
        );
    }
    // White space does not change a message, until it takes the frame past a limit.
    let padded = |len: usize| format!("{text}{}", " ".repeat(len.saturating_sub(text.len())));
    let over_relay = ClientMessage::parse(&padded(MAX_RELAY_BYTES + 1));
    match &msg {
        ClientMessage::Relay { kind, .. } => {
            assert_eq!(over_relay, Err(ParseError::RelayTooLarge(kind.as_str())));
        }
        _ => assert_eq!(over_relay.as_ref(), Ok(&msg)),
    }
    assert_eq!(
        ClientMessage::parse(&padded(MAX_MESSAGE_BYTES + 1)),
        Err(ParseError::TooLarge)
    );
}

#[test]
fn rooms_client_message() {
    fuzz("rooms_client_message", CLIENT_SEEDS, check_client);
}

const SERVER_SEEDS: &[&str] = &[
    r#"{"type":"joined","room":"standup","from":"alice","secret":"9f86d081884c7d659a2feaa0c55ad015"}"#,
    r#"{"type":"room_members","room":"standup","members":["alice","bob","guest-3-7"]}"#,
    r#"{"type":"offer","room":"standup","from":"alice","to":"bob","sdp":{"type":"offer","sdp":"v=0\r\n"}}"#,
    r#"{"type":"candidate","room":"standup","from":"alice","to":"bob","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host","sdpMid":"1"}}"#,
    r#"{"type":"candidate","room":"standup","from":"alice","to":"bob","candidate":null}"#,
    r#"{"type":"hangup","room":"standup","from":"alice","to":"bob"}"#,
    r#"{"type":"error","code":"rate_limited","error":"more than 30 messages per second; retry in 33 ms"}"#,
    r#"{"type":"ping"}"#,
    r#"{"type":"pong"}"#,
];

/// `ServerMessage::parse`, what a client does with every frame from its server.
fn check_server(text: &str) {
    let Ok(msg) = ServerMessage::parse(text) else {
        return;
    };
    if let ServerMessage::Joined {
        secret: Some(secret),
        ..
    } = &msg
    {
        assert!(is_valid_secret(secret), "{text:?}");
    }
    let json = msg.to_json();
    assert_eq!(
        ServerMessage::parse(&json).as_ref(),
        Ok(&msg),
        "{text:?} re-encoded as {json}"
    );
}

#[test]
fn rooms_server_message() {
    fuzz("rooms_server_message", SERVER_SEEDS, check_server);
}

const PEER_SEEDS: &[&str] = &[
    r#"{"type":"state","name":"Ann","muted":false,"cameraOff":true,"screen":false}"#,
    r#"{"type":"state","muted":true,"cameraOff":false}"#,
    r#"{"type":"chat","text":"hello from the data channel 👋"}"#,
    r#"{"type":"bye"}"#,
];

/// `PeerMessage::parse`, every text message on the data channel.
fn check_peer(text: &str) {
    let Some(msg) = PeerMessage::parse(text) else {
        return;
    };
    match &msg {
        PeerMessage::State(state) => {
            assert!(state.name.chars().count() <= peer::MAX_NAME_CHARS);
        }
        PeerMessage::Chat { text: chat } => {
            let chars = chat.chars().count();
            assert!((1..=peer::MAX_CHAT_CHARS).contains(&chars), "{chars}");
        }
        PeerMessage::Bye => {}
    }
    let json = msg.to_json();
    // What is kept of any message is bounded (at most 6 bytes a character, escaped).
    assert!(
        json.len() <= 6 * peer::MAX_CHAT_CHARS + 64,
        "{}",
        json.len()
    );
    assert_eq!(PeerMessage::parse(&json).as_ref(), Some(&msg), "{json}");
}

#[test]
fn peer_message() {
    fuzz("peer_message", PEER_SEEDS, check_peer);
}

const MATCHMAKING_SEEDS: &[&str] = &[
    r#"{"name":"Ada Lovelace","roomId":null,"userImage":"data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="}"#,
    r#"{"roomId":"room-1","remoteUserDetails":{"socket":"Xk3b2n","userName":"Ada","userImage":""},"makeOffer":true}"#,
    r#"{"offer":{"type":"offer","sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n"},"roomId":"room-1","name":"Ada","remoteSocketId":"Xk3b2n"}"#,
    r#"{"remoteUserDetails":{"socket":"Xk3b2n","userName":"Ada"},"roomId":"room-1","offer":{"type":"offer","sdp":"v=0\r\n"}}"#,
    r#"{"ans":{"type":"answer","sdp":"v=0\r\n"},"roomId":"room-1","name":"Grace","remoteSocketId":"Pq9z1m"}"#,
    r#"{"to":"Xk3b2n","candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
    r#"{"candidate":{"candidate":"candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host"},"from":"Pq9z1m"}"#,
    r#"{"roomId":"room-1","remoteSocketId":"Xk3b2n","name":"Ada"}"#,
    r#"{"message":"hi there","roomId":"room-1","remoteSocket":"Xk3b2n"}"#,
    r#"{"from":"Ada","message":"hi there"}"#,
    r#"{"code":"rate_limited","message":"slow down","event":"newMessage","retryAfterMs":4000}"#,
    r#""just a string""#,
];

/// Decodes `value` as `T` the way the server reads an event; what decodes encodes back to the
/// same value.
fn round_trip<T>(value: &Value) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let decoded: T = decode_payload(value.clone())?;
    let again = serde_json::to_value(&decoded).unwrap();
    assert_eq!(
        decode_payload::<T>(again.clone()).as_ref(),
        Some(&decoded),
        "{value} → {again}"
    );
    Some(decoded)
}

/// Every matchmaking payload type, from a socket.io event's JSON.
fn check_matchmaking(text: &str) {
    let Ok(value) = serde_json::from_str::<Value>(text) else {
        return;
    };
    if let Some(r) = round_trip::<mm::RequestRoom>(&value)
        && let Ok(name) = r.validate()
    {
        let chars = name.chars().count();
        assert!((1..=mm::MAX_NAME_CHARS).contains(&chars));
        assert_eq!(name, name.trim());
        assert!(mm::is_valid_image(&r.user_image));
        assert!(r.user_image.len() <= mm::MAX_IMAGE_BYTES);
    }
    round_trip::<mm::MatchDone>(&value);
    round_trip::<mm::OfferIn>(&value);
    round_trip::<mm::OfferOut>(&value);
    round_trip::<mm::Answer>(&value);
    round_trip::<mm::IceIn>(&value);
    round_trip::<mm::IceOut>(&value);
    round_trip::<mm::NewMessage>(&value);
    round_trip::<mm::MessageReceived>(&value);
    round_trip::<mm::ErrorEvent>(&value);
    let stop = mm::StopCall::from_payload(Some(value.clone()));
    // Only an object (or nothing) is a stop: anything else must not end a call.
    assert_eq!(
        stop.is_some(),
        value.is_null() || round_trip::<mm::StopCall>(&value).is_some()
    );
    if let Value::String(s) = &value {
        if mm::validate_chat(s).is_ok() {
            let chars = s.chars().count();
            assert!((1..=mm::MAX_CHAT_CHARS).contains(&chars) && !s.trim().is_empty());
        }
        if mm::is_valid_image(s) && !s.is_empty() {
            assert!(s.len() <= mm::MAX_IMAGE_BYTES && s.starts_with("data:image/"));
            assert!(!s.contains(['"', '\'', '<', '>', '\\', '`', ' ']), "{s:?}");
        }
    }
}

#[test]
fn matchmaking_payloads() {
    fuzz("matchmaking_payloads", MATCHMAKING_SEEDS, check_matchmaking);
}

const LINK_SEEDS: &[&str] = &[
    "liveloop://join/team-42?server=wss://calls.example/ws",
    "liveloop://join/lan?server=ws://192.168.1.20:8080/ws",
    "liveloop://join/home?server=ws://[::1]:8080/ws",
    "https://calls.example/r/standup?x=1",
    "http://10.0.0.2:8080/r/team",
    "http://laptop.local:8080/r/team#top",
    "daily",
];

/// The host a WebSocket client really connects to for `url` (tokio-tungstenite reads a URL
/// as an `http::Uri`), or `None` when it could not connect at all.
fn connected_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    uri.host().map(str::to_owned)
}

/// `parse_link`, what a web page or a pasted link hands the app.
fn check_link(text: &str) {
    let Ok(RoomLink { room, server }) = link::parse_link(text) else {
        return;
    };
    assert!(is_valid_id(&room), "{text:?}");
    let Some(server) = server else {
        return;
    };
    assert!(
        server.starts_with("ws://") || server.starts_with("wss://"),
        "{text:?} → {server}"
    );
    // Never a call in the clear beyond the local network, by the host the socket would
    // really reach, and the host a prompt shows is that host.
    if let Some(host) = connected_host(&server) {
        if server.starts_with("ws://") {
            assert!(
                link::is_local_host(&host),
                "{text:?} → {server} reaches {host}"
            );
        }
        // (After an IPv6 address's `]` the URL client ignores what is not a port.)
        let shown = link::server_host(&server).unwrap_or_default();
        let rest = shown.strip_prefix(host.as_str());
        assert!(
            rest.is_some_and(|r| r.is_empty() || r.starts_with(':') || host.ends_with(']')),
            "{text:?}: the prompt shows {shown}, the socket reaches {host}"
        );
    }
    // The link this app would share for the room parses back to the same room and server.
    let shared = link::share_link(&server, &room);
    assert_eq!(
        link::parse_link(&shared),
        Ok(RoomLink {
            room: room.clone(),
            server: Some(server.clone())
        }),
        "{text:?} shared as {shared}"
    );
}

#[test]
fn room_link() {
    fuzz("room_link", LINK_SEEDS, check_link);
}

const RTC_CONFIG_SEEDS: &[&str] = &[
    r#"{"iceServers":[{"urls":"stun:stun.l.google.com:19302"}]}"#,
    r#"{"iceServers":[{"urls":["stun:stun.example.org:3478","stuns:stun.example.org:5349"]},{"urls":["turn:turn.example.org:3478?transport=udp","turns:turn.example.org:5349"],"username":"1718000000:alice","credential":"k0Jm7wR3yQ=="}],"iceTransportPolicy":"relay","bundlePolicy":"max-bundle"}"#,
    r#"{"iceServers":[],"iceTransportPolicy":"all","bundlePolicy":"balanced"}"#,
];

/// `RtcConfig::parse`, the ICE servers a room service hands its clients.
fn check_rtc_config(text: &str) {
    let Ok(config) = RtcConfig::parse(text) else {
        return;
    };
    assert_eq!(config.validate(), Ok(()));
    for server in &config.ice_servers {
        for url in server.urls.as_slice() {
            let scheme = url.split(':').next().unwrap_or_default();
            assert!(
                ["stun", "stuns", "turn", "turns"].contains(&scheme),
                "{url}"
            );
            if scheme.starts_with("turn") {
                assert!(server.username.is_some() && server.credential.is_some());
            }
        }
    }
    let json = serde_json::to_string(&config).unwrap();
    assert_eq!(RtcConfig::parse(&json), Ok(config), "{text:?} → {json}");
}

#[test]
fn rtc_config() {
    fuzz("rtc_config", RTC_CONFIG_SEEDS, check_rtc_config);
}

const SFU_SEEDS: &[&str] = &[
    r#"{"roomId":"big","transportId":"t1","kind":"video","rtpParameters":{"mid":"1","codecs":[{"mimeType":"video/H264","payloadType":108,"clockRate":90000,"parameters":{"packetization-mode":1,"profile-level-id":"42e01f"},"rtcpFeedback":[{"type":"nack","parameter":"pli"}]},{"mimeType":"video/rtx","payloadType":109,"clockRate":90000,"parameters":{"apt":108}}],"headerExtensions":[{"uri":"urn:ietf:params:rtp-hdrext:sdes:mid","id":4}],"encodings":[{"rid":"r0","scaleResolutionDownBy":4},{"rid":"r1"}],"rtcp":{"cname":"c"}}}"#,
    r#"{"roomId":"big","producerId":"p1","rtpCapabilities":{"codecs":[{"kind":"audio","mimeType":"audio/opus","preferredPayloadType":100,"clockRate":48000,"channels":2}],"headerExtensions":[{"kind":"audio","uri":"urn:ietf:params:rtp-hdrext:sdes:mid","preferredId":1}]}}"#,
    r#"{"roomId":"big","rtpCapabilities":{"codecs":[],"headerExtensions":[]},"name":"Ann"}"#,
    r#"{"roomId":"big","transportId":"t1","dtlsParameters":{"role":"client","fingerprints":[{"algorithm":"sha-256","value":"AB:CD"}]}}"#,
    r#"{"roomId":"big","direction":"recv"}"#,
    r#"{"roomId":"big","consumerId":"c1"}"#,
];

/// Every seed 002 request: parsed or refused, never a panic; what passes validation keeps
/// the limits.
fn check_sfu(text: &str) {
    fn checked<T: DeserializeOwned + Validate + Serialize>(text: &str) -> Option<T> {
        let request: T = serde_json::from_str(text).ok()?;
        request.validate().ok()?;
        serde_json::to_string(&request).unwrap();
        Some(request)
    }
    if let Some(p) = checked::<sfu::Produce>(text) {
        let rtp = &p.rtp_parameters;
        assert!((1..=sfu::MAX_ENCODINGS).contains(&rtp.encodings.len()));
        assert!(rtp.codecs.len() <= sfu::MAX_CODECS);
        assert!(
            rtp.header_extensions
                .iter()
                .all(|h| (1..=14).contains(&h.id))
        );
        assert!(is_valid_id(&p.room_id) && is_valid_id(&p.transport_id));
    }
    if let Some(c) = checked::<sfu::Consume>(text) {
        assert!(c.rtp_capabilities.codecs.len() <= sfu::MAX_CODECS);
        assert!(is_valid_id(&c.producer_id));
    }
    if let Some(j) = checked::<sfu::JoinRoom>(text) {
        assert!(
            j.name
                .is_none_or(|n| n.chars().count() <= sfu::MAX_NAME_CHARS)
        );
    }
    if let Some(c) = checked::<sfu::ConnectTransport>(text) {
        let n = c.dtls_parameters.fingerprints.len();
        assert!((1..=sfu::MAX_FINGERPRINTS).contains(&n));
    }
    checked::<sfu::CreateTransport>(text);
    checked::<sfu::ResumeConsumer>(text);
    checked::<sfu::GetRtpCapabilities>(text);
}

#[test]
fn sfu_requests() {
    fuzz("sfu_requests", SFU_SEEDS, check_sfu);
}

/// Every target's seeds are files of its corpus, `seed-<n>` (so a coverage-guided fuzzer
/// starts from them too). `LIVELOOP_FUZZ_BLESS=1` writes them after a seed changed.
#[test]
fn seeds_are_in_the_corpus() {
    let bless = std::env::var_os("LIVELOOP_FUZZ_BLESS").is_some();
    for (target, seeds) in [
        ("rooms_client_message", CLIENT_SEEDS),
        ("rooms_server_message", SERVER_SEEDS),
        ("peer_message", PEER_SEEDS),
        ("matchmaking_payloads", MATCHMAKING_SEEDS),
        ("room_link", LINK_SEEDS),
        ("rtc_config", RTC_CONFIG_SEEDS),
        ("sfu_requests", SFU_SEEDS),
    ] {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/__fuzz__")
            .join(target)
            .join("corpus");
        for (n, seed) in seeds.iter().enumerate() {
            let path = dir.join(format!("seed-{n}"));
            if bless {
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(&path, seed).unwrap();
            }
            let file = std::fs::read_to_string(&path).unwrap_or_default();
            assert_eq!(
                file,
                *seed,
                "{} (LIVELOOP_FUZZ_BLESS=1 writes it)",
                path.display()
            );
        }
    }
}
