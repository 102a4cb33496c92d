//! Randomised robustness check of every parser: mutated valid messages, random JSON and raw
//! bytes must give a typed result or a typed error, never a panic; anything accepted must
//! re-encode to something the parser accepts again. Deterministic (seeded), so a failure
//! reproduces; the input is in the panic message.

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use liveloop_proto::matchmaking::{self, RequestRoom};
use liveloop_proto::peer::PeerMessage;
use liveloop_proto::rooms::{ClientMessage, ServerMessage};
use liveloop_proto::rtc_config::RtcConfig;

use rand::{Rng as _, SeedableRng};

/// A seeded generator: a failure reproduces.
struct Rng(rand::rngs::StdRng);

impl Rng {
    fn seeded(seed: u64) -> Self {
        Self(rand::rngs::StdRng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.random()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }
}

const SEEDS: &[&str] = &[
    r#"{"type":"join","room":"r1","from":"alice"}"#,
    r#"{"type":"offer","to":"bob","sdp":{"type":"offer","sdp":"v=0\r\n"}}"#,
    r#"{"type":"candidate","to":"bob","candidate":{"candidate":"c","sdpMid":"0"}}"#,
    r#"{"type":"hangup","to":"bob"}"#,
    r#"{"type":"room_members","room":"r","members":["a","b"]}"#,
    r#"{"type":"error","code":"room_full","error":"full"}"#,
    r#"{"name":"Ada","roomId":null,"userImage":"data:image/png;base64,iVBOR"}"#,
    r#"{"iceServers":[{"urls":["turn:h:3478"],"username":"u","credential":"p"}],"bundlePolicy":"balanced"}"#,
    r#"{"type":"state","name":"Ann","muted":false,"cameraOff":true,"screen":false}"#,
    r#"{"type":"chat","text":"hello"}"#,
    r#"{"type":"bye"}"#,
    "liveloop://join/team-42?server=wss://calls.example/ws",
    "https://calls.example/r/standup?x=1",
    "liveloop://join/lan?server=ws://192.168.1.20:8080/ws",
    "http://10.0.0.2:8080/r/team",
];

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
    "1e999",
    "-0",
    "\\u0000",
    "\\ud800",
    "type",
    "join",
    "offer",
    "é",
    "🎥",
    "\"to\":",
    "\"sdp\":{}",
    "\"room\":\"\"",
    "\"from\":[]",
];

fn mutate(rng: &mut Rng, input: &str) -> String {
    let mut s: Vec<char> = input.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(s.len() + 1);
        match rng.below(4) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(8)).min(s.len());
                s.drain(at.min(end)..end);
            }
            1 => {
                let token: Vec<char> = TOKENS[rng.below(TOKENS.len())].chars().collect();
                s.splice(at..at, token);
            }
            2 if at < s.len() => s[at] = char::from_u32(rng.below(0x3000) as u32).unwrap_or('x'),
            _ if !s.is_empty() => {
                let from = rng.below(s.len());
                let len = rng.below(16).min(s.len() - from);
                let copy: Vec<char> = s[from..from + len].to_vec();
                s.splice(at..at, copy);
            }
            _ => {}
        }
    }
    s.into_iter().collect()
}

fn check(input: &str) {
    if let Ok(msg) = ClientMessage::parse(input) {
        let again = ClientMessage::from_wire(msg.to_wire());
        assert_eq!(again.as_ref(), Ok(&msg), "client round trip of {input:?}");
    }
    if let Ok(msg) = ServerMessage::parse(input) {
        let json = msg.to_json();
        assert!(
            ServerMessage::parse(&json).is_ok(),
            "server round trip of {input:?} via {json}"
        );
    }
    if let Ok(r) = serde_json::from_str::<RequestRoom>(input) {
        let _ = r.validate();
    }
    let _ = matchmaking::validate_chat(input);
    let _ = matchmaking::is_valid_image(input);
    let _ = RtcConfig::parse(input);
    // The data channel is remote bytes too; and links come from web pages.
    if let Some(msg) = PeerMessage::parse(input) {
        assert_eq!(
            PeerMessage::parse(&msg.to_json()),
            Some(msg),
            "peer message round trip of {input:?}"
        );
    }
    if let Ok(link) = liveloop_proto::link::parse_link(input) {
        assert!(liveloop_proto::is_valid_id(&link.room), "{input:?}");
        // Never a call in the clear beyond the local network.
        if let Some(server) = &link.server {
            assert!(
                server.starts_with("wss://")
                    || liveloop_proto::link::server_host(server)
                        .is_some_and(liveloop_proto::link::is_local_host),
                "{input:?} → {server}"
            );
        }
    }
}

#[test]
fn parsers_never_panic_on_mutated_or_random_input() {
    let mut rng = Rng::seeded(0x5eed_1234_abcd_0001);
    for round in 0..40_000 {
        let input = mutate(&mut rng, SEEDS[round % SEEDS.len()]);
        check(&input);
    }
    for _ in 0..5_000 {
        let len = rng.below(64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&String::from_utf8_lossy(&bytes));
    }
    // Deep nesting must not overflow the stack (serde_json's recursion limit applies).
    check(&format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)));
    check(&format!(
        r#"{{"type":"offer","to":"b","sdp":{}1{}}}"#,
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    ));
}
