//! The room service over real loopback sockets with a real WebSocket client.

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio_tungstenite::tungstenite::Message;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use liveloop_core::rooms::Limits;
use liveloop_e2e::rooms_client::RoomClient;
use liveloop_server::embedded::{self, Embedded};
use liveloop_server::matchmaking::MatchmakingConfig;
use liveloop_server::rooms::{AllowedOrigins, RoomsConfig};
use serde_json::{Value, json};

async fn server(config: RoomsConfig) -> Result<(Embedded, SocketAddr)> {
    let e = embedded::start(
        [127, 0, 0, 1].into(),
        (0, 0),
        MatchmakingConfig::default(),
        config,
    )
    .await?;
    let addr = e.rooms;
    Ok((e, addr))
}

/// Reads a socket that stopped reading until the server's close frame: the error codes it was
/// sent on the way (other messages are skipped) and the close code (`None`: no close frame).
async fn codes_until_close(c: &mut RoomClient) -> Result<(Vec<String>, Option<u16>)> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut codes = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, c.ws.next())
            .await
            .context("socket still open")?;
        match frame {
            Some(Ok(Message::Text(t))) => {
                // Skip the big relayed messages without parsing them.
                if t.len() < 4096 {
                    let v: Value = serde_json::from_str(t.as_str())?;
                    if v["type"] == "error" {
                        codes.push(v["code"].as_str().unwrap_or_default().to_owned());
                    }
                }
            }
            Some(Ok(Message::Close(frame))) => {
                return Ok((codes, frame.map(|f| u16::from(f.code))));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return Ok((codes, None)),
        }
    }
}

/// Waits until `c` sees `room_members` equal to `members`.
async fn until_members(c: &mut RoomClient, members: Value) -> Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let msg = c
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await
            .with_context(|| format!("waiting for members {members}"))?;
        if msg["type"] == "room_members" && msg["members"] == members {
            return Ok(());
        }
    }
}

async fn get(addr: SocketAddr, path: &str) -> Result<(u16, String)> {
    let url = format!("http://{addr}{path}");
    let out = tokio::task::spawn_blocking(move || -> Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = agent.get(&url).call()?;
        Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
    });
    out.await?
}

#[tokio::test]
async fn http_endpoints() -> Result<()> {
    let rtc = liveloop_proto::rtc_config::RtcConfig::parse(
        r#"{"iceServers":[{"urls":"turn:t.example:3478","username":"u","credential":"p"}]}"#,
    )?;
    let (_e, addr) = server(RoomsConfig {
        rtc_config: rtc,
        ..RoomsConfig::default()
    })
    .await?;
    assert_eq!(get(addr, "/healthz").await?, (200, "ok".into()));
    let (status, body) = get(addr, "/ws").await?;
    assert_eq!(status, 426, "{body}");
    let (status, js) = get(addr, "/config.js").await?;
    assert_eq!(status, 200);
    assert!(
        js.starts_with("window.RTC_CONFIG = ") && js.contains("turn:t.example:3478"),
        "{js}"
    );
    let (_, json) = get(addr, "/api/rtc-config").await?;
    let v: serde_json::Value = serde_json::from_str(&json)?;
    assert_eq!(v["iceServers"][0]["username"], "u");

    // Stats count what is there: two members of one room, and a socket that joined nothing.
    let (_, json) = get(addr, "/api/stats").await?;
    let v: Value = serde_json::from_str(&json)?;
    assert_eq!(v, json!({"connections": 0, "rooms": 0, "members": 0}));
    let _a = RoomClient::join(addr, "r", "a").await?;
    let _b = RoomClient::join(addr, "r", "b").await?;
    let mut idle = RoomClient::connect(addr, None).await?;
    idle.send(&json!({"type":"ping"})).await?;
    idle.expect("pong").await?;
    let (status, json) = get(addr, "/api/stats").await?;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&json)?;
    assert_eq!(v, json!({"connections": 3, "rooms": 1, "members": 2}));
    Ok(())
}

#[tokio::test]
async fn origins_outside_the_list_get_403() -> Result<()> {
    let config = RoomsConfig {
        allowed_origins: AllowedOrigins::parse("localhost,app.example.com"),
        ..RoomsConfig::default()
    };
    let (_e, addr) = server(config).await?;
    let refused = RoomClient::connect(addr, Some("https://evil.example")).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("403"), "{message}");
    assert!(
        RoomClient::connect(addr, Some("http://localhost:8080"))
            .await
            .is_ok()
    );
    assert!(
        RoomClient::connect(addr, Some("https://app.example.com"))
            .await
            .is_ok()
    );
    assert!(
        RoomClient::connect(addr, None).await.is_ok(),
        "native clients send no Origin"
    );
    Ok(())
}

#[tokio::test]
async fn join_relay_leave_follow_the_seed() -> Result<()> {
    let (_e, addr) = server(RoomsConfig::default()).await?;
    let mut bob = RoomClient::connect(addr, None).await?;
    bob.send(&json!({"type":"join","room":"r1","from":"bob"}))
        .await?;
    let mut joined = bob.next().await?;
    // LiveLoop's extension: `joined` carries the id's resume secret.
    let secret = joined
        .as_object_mut()
        .and_then(|o| o.remove("secret"))
        .context("joined without a secret")?;
    assert!(
        secret
            .as_str()
            .is_some_and(liveloop_proto::rooms::is_valid_secret),
        "{secret}"
    );
    assert_eq!(joined, json!({"type":"joined","room":"r1","from":"bob"}));
    assert_eq!(
        bob.next().await?,
        json!({"type":"room_members","room":"r1","members":["bob"]})
    );
    let mut alice = RoomClient::join(addr, "r1", "alice").await?;
    assert_eq!(
        bob.next().await?,
        json!({"type":"room_members","room":"r1","members":["alice","bob"]})
    );

    // The server overwrites `from` and relays to the named member only.
    let sdp = json!({"type":"offer","sdp":"v=0\r\n"});
    alice
        .send(&json!({"type":"offer","to":"bob","from":"mallory","sdp":sdp}))
        .await?;
    assert_eq!(
        bob.next().await?,
        json!({"type":"offer","room":"r1","from":"alice","to":"bob","sdp":sdp})
    );
    bob.send(&json!({"type":"answer","to":"alice","sdp":{"type":"answer","sdp":"v=0"}}))
        .await?;
    assert_eq!(alice.expect("answer").await?["from"], "bob");
    alice.send(&json!({"type":"candidate","to":"bob","candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"}})).await?;
    assert_eq!(bob.expect("candidate").await?["candidate"]["sdpMid"], "0");
    // End-of-candidates (docs/signaling.md): `candidate: null` is relayed as null.
    alice
        .send(&json!({"type":"candidate","to":"bob","candidate":null}))
        .await?;
    let end = bob.expect("candidate").await?;
    assert_eq!(end.get("candidate"), Some(&Value::Null), "{end}");
    assert_eq!(end["from"], "alice");
    alice.send(&json!({"type":"hangup","to":"bob"})).await?;
    assert_eq!(bob.expect("hangup").await?["from"], "alice");
    alice.send(&json!({"type":"ping"})).await?;
    assert_eq!(alice.next().await?, json!({"type":"pong"}));

    alice.send(&json!({"type":"leave"})).await?;
    assert_eq!(
        bob.next().await?,
        json!({"type":"room_members","room":"r1","members":["bob"]})
    );
    // Closing the socket counts as leaving too.
    let mut carol = RoomClient::join(addr, "r1", "carol").await?;
    bob.expect("room_members").await?;
    carol.ws.close(None).await?;
    assert_eq!(bob.expect("room_members").await?["members"], json!(["bob"]));
    Ok(())
}

#[tokio::test]
async fn a_member_cannot_reach_another_room() -> Result<()> {
    let (_e, addr) = server(RoomsConfig::default()).await?;
    let mut victim = RoomClient::join(addr, "private", "victim").await?;
    let mut intruder = RoomClient::join(addr, "lobby", "intruder").await?;
    intruder
        .send(&json!({"type":"offer","to":"victim","sdp":{"type":"offer","sdp":"x"}}))
        .await?;
    intruder.expect_error("target_not_found").await?;
    // Naming the room in the message changes nothing: membership comes from the join.
    intruder
        .send(&json!({"type":"candidate","room":"private","to":"victim","candidate":{}}))
        .await?;
    intruder.expect_error("target_not_found").await?;
    let mut outsider = RoomClient::connect(addr, None).await?;
    outsider
        .send(&json!({"type":"hangup","to":"victim"}))
        .await?;
    outsider.expect_error("not_joined").await?;
    victim.expect_silence(Duration::from_millis(300)).await?;
    Ok(())
}

#[tokio::test]
async fn join_errors_use_the_seed_codes() -> Result<()> {
    let limits = Limits {
        max_rooms: 2,
        max_members: 2,
        ..Limits::default()
    };
    let (_e, addr) = server(RoomsConfig {
        limits,
        ..RoomsConfig::default()
    })
    .await?;
    let mut a = RoomClient::join(addr, "r", "a").await?;
    let _b = RoomClient::join(addr, "r", "b").await?;
    let mut c = RoomClient::connect(addr, None).await?;
    for (msg, code) in [
        (json!({"type":"join","room":"r","from":"c"}), "room_full"),
        (json!({"type":"join","room":"r","from":"a"}), "duplicate_id"),
        (
            json!({"type":"join","room":"has space","from":"c"}),
            "invalid_room",
        ),
        (
            json!({"type":"join","room":"x".repeat(65),"from":"c"}),
            "invalid_room",
        ),
        (json!({"type":"join","room":"s","from":"c/d"}), "invalid_id"),
        (json!({"type":"join","from":"c"}), "room_missing"),
        (json!({"type":"join","room":"s","to":"a"}), "invalid_join"),
        (json!({"type":"leave"}), "not_joined"),
        (json!({"type":"offer","sdp":{}}), "invalid_target"),
        (json!({"type":"teleport"}), "unknown_type"),
    ] {
        c.send(&msg).await?;
        c.expect_error(code).await?;
    }
    c.send(&json!({"type":"join","room":"s","from":"c"}))
        .await?;
    c.expect("joined").await?;
    let mut d = RoomClient::connect(addr, None).await?;
    d.send(&json!({"type":"join","room":"t","from":"d"}))
        .await?;
    d.expect_error("room_limit_reached").await?;
    a.send(&json!({"type":"join","room":"s","from":"a"}))
        .await?;
    a.expect_error("already_joined").await?;
    a.send(&json!({"type":"leave"})).await?;
    a.send(&json!({"type":"join","room":"s","from":"zed"}))
        .await?;
    a.expect_error("identity_locked").await?;
    a.send(&json!({"type":"hangup","to":"a"})).await?;
    a.expect_error("not_joined").await?;
    Ok(())
}

#[tokio::test]
async fn malformed_input_gets_errors_and_others_are_undisturbed() -> Result<()> {
    let (e, addr) = server(RoomsConfig::default()).await?;
    let mut bystander = RoomClient::join(addr, "calm", "x").await?;
    let mut peer = RoomClient::join(addr, "calm", "y").await?;
    bystander.expect("room_members").await?;
    let mut bad = RoomClient::join(addr, "chaos", "bad").await?;
    for (text, code) in [
        ("{not json", "invalid_message"),
        ("[]", "invalid_message"),
        ("\"join\"", "invalid_message"),
        (r#"{"type":null}"#, "invalid_message"),
        (r#"{"type":"join","room":["a"]}"#, "invalid_message"),
        (r#"{"type":"offer","to":"y"}"#, "invalid_message"),
        (
            r#"{"type":"candidate","to":"y","candidate":"text"}"#,
            "invalid_message",
        ),
        (r#"{"type":"\u0000\u0001"}"#, "unknown_type"),
    ] {
        bad.send_text(text.to_owned()).await?;
        bad.expect_error(code).await?;
    }
    bad.ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![0u8; 64].into(),
        ))
        .await?;
    bad.expect_error("invalid_message").await?;

    // The limit is the seed's 1 MB, inclusive: a 1 MiB message is read...
    let pad = 1024 * 1024 - r#"{"type":"ping","pad":""}"#.len();
    bad.send_text(format!(r#"{{"type":"ping","pad":"{}"}}"#, "a".repeat(pad)))
        .await?;
    bad.expect("pong").await?;
    // ...one byte more is refused from the frame's header, without reading the rest: a clear
    // error, then the close frame with 1009. (The client is still writing the body the server
    // never reads, so its connection may be reset before it reads the close frame.)
    bad.send_text(format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "a".repeat(pad + 1)
    ))
    .await?;
    bad.expect_error("message_too_large").await?;
    let close = bad.closed_with().await?;
    assert!(matches!(close, Some(1009) | None), "{close:?}");
    // A binary frame over 1 MB is too large just as text is: the error, then 1009.
    let mut binary = RoomClient::join(addr, "chaos", "binary").await?;
    binary
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![0u8; 2 * 1024 * 1024].into(),
        ))
        .await?;
    binary.expect_error("message_too_large").await?;
    let close = binary.closed_with().await?;
    assert!(matches!(close, Some(1009) | None), "{close:?}");
    // 16 MB: beyond what the server reads at all. The frame's header is enough: the same
    // error and 1009. (The header and a little of the body are written by hand, so that the
    // client is not still pushing 16 MB into a connection the server has closed.)
    let mut huge = RoomClient::join(addr, "chaos", "huge").await?;
    let mut header = vec![0x81, 0xff]; // FIN + text; masked, 64-bit length
    header.extend_from_slice(&(16u64 * 1024 * 1024).to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]); // the mask
    header.extend_from_slice(&[b'x'; 1024]);
    match huge.ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => {
            tokio::io::AsyncWriteExt::write_all(tcp, &header).await?;
        }
        _ => anyhow::bail!("a plain TCP connection was expected"),
    }
    let (codes, close) = codes_until_close(&mut huge).await?;
    assert_eq!(codes, ["message_too_large"]);
    assert_eq!(close, Some(1009));

    // The calm room still works.
    bystander.send(&json!({"type":"hangup","to":"y"})).await?;
    assert_eq!(peer.expect("hangup").await?["from"], "x");
    assert_eq!(
        e.rooms_service.stats().rooms,
        1,
        "chaos room is gone, calm stays"
    );
    Ok(())
}

#[tokio::test]
async fn floods_are_rate_limited_per_socket() -> Result<()> {
    let (_e, addr) = server(RoomsConfig::default()).await?;
    let mut flooder = RoomClient::join(addr, "r", "flood").await?;
    let mut calm = RoomClient::join(addr, "r", "calm").await?;
    flooder.expect("room_members").await?;
    for _ in 0..120 {
        flooder.send(&json!({"type":"ping"})).await?;
    }
    let mut pongs = 0;
    let mut limited = 0;
    while let Ok(msg) = flooder.next_within(Duration::from_millis(500)).await {
        match msg["type"].as_str() {
            Some("pong") => pongs += 1,
            Some("error") if msg["code"] == "rate_limited" => limited += 1,
            _ => {}
        }
    }
    // The burst of 50, less the token the join took, plus what refilled meanwhile (nothing
    // when the pings arrive within a few milliseconds, as they do without Nagle's delay) is
    // served; the excess is refused, and one rate_limited error answers a whole run of
    // refused messages.
    assert!((49..70).contains(&pongs), "{pongs} pongs");
    assert_eq!(limited, 1, "{limited} rate_limited errors");
    // A second later the flooder is served again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    flooder.send(&json!({"type":"ping"})).await?;
    flooder.expect("pong").await?;
    // The calm socket has its own budget.
    calm.send(&json!({"type":"ping"})).await?;
    assert_eq!(calm.expect("pong").await?, json!({"type":"pong"}));
    Ok(())
}

#[tokio::test]
async fn silent_clients_are_dropped_by_the_heartbeat() -> Result<()> {
    let config = RoomsConfig {
        ping_interval: Duration::from_millis(100),
        pong_wait: Duration::from_millis(300),
        ..RoomsConfig::default()
    };
    let (_e, addr) = server(config).await?;
    let mut alive = RoomClient::join(addr, "r", "alive").await?;
    // `dead` joins and then stops reading, so it never answers pings.
    let mut dead = RoomClient::join(addr, "r", "dead").await?;
    alive.expect("room_members").await?;
    // `alive` keeps reading (tungstenite answers pings) and sees `dead` leave.
    let left = alive.expect("room_members").await?;
    assert_eq!(left["members"], json!(["alive"]));
    // What `dead` would find on reading again: pings, then the close frame, with 1001.
    assert_eq!(dead.closed_with().await?, Some(1001));
    // And `alive`, which keeps reading (and so answering pings), is still there later.
    alive.expect_silence(Duration::from_millis(800)).await?;
    alive.send(&json!({"type":"ping"})).await?;
    alive.expect("pong").await?;
    Ok(())
}

#[tokio::test]
async fn a_silent_client_is_dropped_after_pong_wait_not_at_the_next_ping() -> Result<()> {
    // Pings every 10 s, silence allowed for 1 s: the documented rule is the silence, so the
    // silent client goes after about 1 s, long before the next ping would have noticed.
    let config = RoomsConfig {
        ping_interval: Duration::from_secs(10),
        pong_wait: Duration::from_secs(1),
        ..RoomsConfig::default()
    };
    let (_e, addr) = server(config).await?;
    let mut alive = RoomClient::join(addr, "r", "alive").await?;
    let joined = std::time::Instant::now();
    let _dead = RoomClient::join(addr, "r", "dead").await?; // never reads or sends again
    // `alive` keeps talking (it would be silent too) until `dead` is gone.
    let left = loop {
        alive.send(&json!({"type":"ping"})).await?;
        if let Ok(msg) = alive.next_within(Duration::from_millis(200)).await
            && msg["type"] == "room_members"
            && msg["members"] == json!(["alive"])
        {
            break msg;
        }
        assert!(
            joined.elapsed() < Duration::from_secs(6),
            "the silent client was not dropped before the next ping"
        );
    };
    assert_eq!(left["members"], json!(["alive"]));
    eprintln!("silent client dropped after {:?}", joined.elapsed());
    Ok(())
}

#[tokio::test]
async fn a_slow_reader_is_evicted_and_the_room_goes_on() -> Result<()> {
    // The slow socket is evicted after 1 s of a stuck send, and has 1 s more to take the rest
    // and the close frame.
    // A queue far larger than what is sent: only the send timeout can evict here.
    let config = RoomsConfig {
        send_timeout: Duration::from_secs(1),
        outbound_buffer: 1024,
        ..RoomsConfig::default()
    };
    let (_e, addr) = server(config).await?;
    let mut sender = RoomClient::join(addr, "r", "sender").await?;
    let mut slow = RoomClient::join(addr, "r", "slow").await?; // stops reading
    let mut other = RoomClient::join(addr, "r", "other").await?;
    let mut helpers = Vec::new();
    for id in ["sender2", "sender3"] {
        helpers.push(RoomClient::join(addr, "r", id).await?);
    }
    // 135 offers of 60 KB (8 MB, each sender within its burst of 50 and its share of the
    // queue): far more than socket buffers hold, so sends to `slow` stall.
    let sdp = json!({"type":"offer","sdp":"a".repeat(60 * 1024)});
    let offer = json!({"type":"offer","to":"slow","sdp":sdp});
    for c in std::iter::once(&mut sender).chain(helpers.iter_mut()) {
        for _ in 0..45 {
            c.send(&offer).await?;
        }
    }
    // `other` keeps getting service and sees `slow` evicted.
    until_members(&mut other, json!(["other", "sender", "sender2", "sender3"])).await?;
    sender.send(&json!({"type":"hangup","to":"other"})).await?;
    assert_eq!(other.expect("hangup").await?["from"], "sender");
    // `slow`, reading again at once, finds the rest of what was on its way, then why it was
    // dropped and the close code.
    let (codes, close) = codes_until_close(&mut slow).await?;
    assert_eq!(codes, ["membership_lost"]);
    assert_eq!(close, Some(1008));
    Ok(())
}

#[tokio::test]
async fn a_member_too_slow_for_many_senders_is_evicted_with_1008() -> Result<()> {
    // The default queue of 64 and a send timeout that never fires: only the full queue can
    // evict. Six senders each stay within their share (half the queue), so it is the
    // receiver that is too slow, not a sender that floods it.
    let config = RoomsConfig {
        send_timeout: Duration::from_secs(30),
        ..RoomsConfig::default()
    };
    let (e, addr) = server(config).await?;
    let mut slow = RoomClient::join(addr, "r", "slow").await?; // stops reading
    let mut other = RoomClient::join(addr, "r", "other").await?;
    let mut senders = Vec::new();
    for i in 0..6 {
        senders.push(RoomClient::join(addr, "r", &format!("s{i}")).await?);
    }
    slow.expect("room_members").await?;
    // Until `slow`'s socket buffers are full its writer keeps up; then the queue fills.
    // 6 x 30 offers of 60 KB: 11 MB, far more than socket buffers (about 4 MB were seen) and
    // the queue hold.
    let sdp = json!({"type":"offer","sdp":"a".repeat(60 * 1024)});
    let offer = json!({"type":"offer","to":"slow","sdp":sdp});
    for s in &mut senders {
        for _ in 0..30 {
            s.send(&offer).await?;
        }
    }
    let rest = json!(["other", "s0", "s1", "s2", "s3", "s4", "s5"]);
    until_members(&mut other, rest.clone()).await?;
    let sender = senders.first_mut().context("a sender")?;
    until_members(sender, rest).await?;
    assert_eq!(e.rooms_service.stats().members, 7);
    let (codes, close) = codes_until_close(&mut slow).await?;
    assert_eq!(codes, ["membership_lost"]);
    assert_eq!(close, Some(1008));
    // The room goes on.
    sender.send(&json!({"type":"hangup","to":"other"})).await?;
    assert_eq!(other.expect("hangup").await?["from"], "s0");
    Ok(())
}

// Several worker threads, as the server binary has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_sockets_messages_are_relayed_in_the_order_it_sent_them() -> Result<()> {
    // A rate that lets 200 messages through at once, and a queue that holds them all (with
    // the default 64, the receiver would rightly be evicted as too slow for such a burst).
    let limits = Limits {
        rate_per_sec: 1000.0,
        burst: 500,
        ..Limits::default()
    };
    let (_e, addr) = server(RoomsConfig {
        limits,
        outbound_buffer: 512,
        ..RoomsConfig::default()
    })
    .await?;
    let mut a = RoomClient::join(addr, "r", "a").await?;
    let mut b = RoomClient::join(addr, "r", "b").await?;
    a.expect("room_members").await?;
    a.send(&json!({"type":"offer","to":"b","sdp":{"type":"offer","sdp":"v=0"}}))
        .await?;
    for i in 0..200 {
        a.send(&json!({"type":"candidate","to":"b","candidate":{"candidate":format!("c{i}")}}))
            .await?;
    }
    a.send(&json!({"type":"hangup","to":"b"})).await?;
    let mut got = Vec::new();
    while got.len() < 202 {
        let msg = b.next().await?;
        match msg["type"].as_str() {
            Some("offer") => got.push("offer".to_owned()),
            Some("candidate") => got.push(
                msg["candidate"]["candidate"]
                    .as_str()
                    .context("candidate")?
                    .to_owned(),
            ),
            Some("hangup") => got.push("hangup".to_owned()),
            _ => {}
        }
    }
    let expected: Vec<String> = std::iter::once("offer".to_owned())
        .chain((0..200).map(|i| format!("c{i}")))
        .chain(std::iter::once("hangup".to_owned()))
        .collect();
    assert_eq!(got, expected);
    Ok(())
}

#[tokio::test]
async fn shutting_down_closes_every_socket_with_1001() -> Result<()> {
    let (e, addr) = server(RoomsConfig::default()).await?;
    let mut a = RoomClient::join(addr, "r", "a").await?;
    let mut idle = RoomClient::connect(addr, None).await?;
    idle.send(&json!({"type":"ping"})).await?;
    idle.expect("pong").await?;
    e.shutdown();
    assert_eq!(a.closed_with().await?, Some(1001));
    assert_eq!(idle.closed_with().await?, Some(1001));
    Ok(())
}

/// Connects and joins `room` as `id`: the client (past `joined` and the first `room_members`)
/// and the resume secret `joined` gave.
async fn join_with_secret(addr: SocketAddr, room: &str, id: &str) -> Result<(RoomClient, String)> {
    let mut c = RoomClient::connect(addr, None).await?;
    c.send(&json!({"type":"join","room":room,"from":id}))
        .await?;
    let joined = c.expect("joined").await?;
    c.expect("room_members").await?;
    let secret = joined["secret"]
        .as_str()
        .context("joined without a secret")?
        .to_owned();
    assert!(liveloop_proto::rooms::is_valid_secret(&secret), "{secret}");
    Ok((c, secret))
}

/// A new connection's join: what the server answers first (`joined` or an error).
async fn try_join(addr: SocketAddr, frame: Value) -> Result<(RoomClient, Value)> {
    let mut c = RoomClient::connect(addr, None).await?;
    c.send(&frame).await?;
    let answer = c.next().await?;
    Ok((c, answer))
}

/// Issue 20: a member floods another with big relays to overflow its queue, get it evicted and
/// join under its id. The flood evicts the flooder instead, and the id cannot be taken.
#[tokio::test]
async fn a_flood_evicts_the_flooder_and_the_victims_id_cannot_be_taken() -> Result<()> {
    // A send timeout out of reach: the victim stops reading for the length of the flood, and
    // only a full queue (or a sender over its share) may evict anyone here.
    let config = RoomsConfig {
        send_timeout: Duration::from_secs(30),
        ..RoomsConfig::default()
    };
    let (e, addr) = server(config).await?;
    let (mut victim, secret) = join_with_secret(addr, "r", "victim").await?;
    let mut witness = RoomClient::join(addr, "r", "witness").await?;
    let attacker = RoomClient::join(addr, "r", "attacker").await?;
    until_members(&mut witness, json!(["attacker", "victim", "witness"])).await?;

    // The attacker relays 60 KB offers to the victim as fast as the rate allows (its burst of
    // 50, then just under 30 a second) until the server closes it. The victim reads nothing
    // meanwhile, so its socket buffers fill and its queue holds what the attacker sent.
    let (mut sink, mut stream) = attacker.ws.split();
    let reader = tokio::spawn(async move {
        let mut codes = Vec::new();
        while let Some(Ok(frame)) = stream.next().await {
            match frame {
                Message::Text(t) => {
                    let v: Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "error" {
                        codes.push(v["code"].as_str().unwrap_or_default().to_owned());
                    }
                }
                Message::Close(frame) => return (codes, frame.map(|f| u16::from(f.code))),
                _ => {}
            }
        }
        (codes, None)
    });
    let sdp = json!({"type":"offer","sdp":"a".repeat(60 * 1024)});
    let offer = json!({"type":"offer","to":"victim","sdp":sdp}).to_string();
    let rss_before = liveloop_e2e::rss_bytes()?;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut sent = 0u32;
    while !reader.is_finished() && tokio::time::Instant::now() < give_up {
        let send = sink.send(Message::Text(offer.clone().into()));
        match tokio::time::timeout(Duration::from_secs(2), send).await {
            Ok(Ok(())) => sent += 1,
            _ => break, // the server closed the attacker
        }
        if sent >= 49 {
            tokio::time::sleep(Duration::from_millis(35)).await;
        }
    }
    let (codes, close) = tokio::time::timeout(Duration::from_secs(10), reader).await??;
    let rss_after = liveloop_e2e::rss_bytes()?;
    eprintln!(
        "the attacker sent {sent} offers before it was evicted: {codes:?}; RSS {} -> {} KiB",
        rss_before / 1024,
        rss_after / 1024
    );
    // The victim's queue holds at most the attacker's share (32 relays of 60 KB, 2 MB),
    // whatever the attacker sends: the server and both clients are in this process.
    assert!(
        rss_after.saturating_sub(rss_before) < 24 * 1024 * 1024,
        "RSS grew by {} KiB during the flood",
        rss_after.saturating_sub(rss_before) / 1024
    );
    assert!(codes.contains(&"membership_lost".to_owned()), "{codes:?}");
    assert_eq!(
        close,
        Some(1008),
        "the flooder is evicted like a slow socket"
    );

    // The victim stays: still listed, and (reading again) still receiving.
    until_members(&mut witness, json!(["victim", "witness"])).await?;
    until_members(&mut victim, json!(["victim", "witness"])).await?;
    witness
        .send(&json!({"type":"hangup","to":"victim"}))
        .await?;
    assert_eq!(victim.expect("hangup").await?["from"], "witness");
    assert_eq!(e.rooms_service.stats().members, 2);

    // The attacker, on a new connection, cannot join as the victim: not without the secret,
    // not with a guessed one.
    let (_c, answer) = try_join(addr, json!({"type":"join","room":"r","from":"victim"})).await?;
    assert_eq!(answer["code"], "duplicate_id", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("secret"),
        "the refusal says why: {answer}"
    );
    let guess = "0".repeat(32);
    assert_ne!(guess, secret);
    let (_c, answer) = try_join(
        addr,
        json!({"type":"join","room":"r","from":"victim","secret":guess}),
    )
    .await?;
    assert_eq!(answer["code"], "duplicate_id", "{answer}");
    // Nothing changed for the victim.
    witness
        .send(&json!({"type":"hangup","to":"victim"}))
        .await?;
    assert_eq!(victim.expect("hangup").await?["from"], "witness");
    witness.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

#[tokio::test]
async fn a_member_that_drops_gets_its_id_back_only_with_its_secret() -> Result<()> {
    let (e, addr) = server(RoomsConfig::default()).await?;
    let (victim, secret) = join_with_secret(addr, "r", "victim").await?;
    let mut witness = RoomClient::join(addr, "r", "witness").await?;
    // The connection drops without `leave` (as in a network outage): the others see it go...
    drop(victim);
    until_members(&mut witness, json!(["witness"])).await?;
    assert_eq!(e.rooms_service.stats().reserved, 1);
    // ...but for 60 s the id is its own: refused without the secret, saying why...
    let (_c, answer) = try_join(addr, json!({"type":"join","room":"r","from":"victim"})).await?;
    assert_eq!(answer["code"], "duplicate_id", "{answer}");
    assert!(
        answer["error"]
            .as_str()
            .unwrap_or_default()
            .contains("reserved"),
        "{answer}"
    );
    // ...and with a wrong one.
    let (_c, answer) = try_join(
        addr,
        json!({"type":"join","room":"r","from":"victim","secret":"f".repeat(32)}),
    )
    .await?;
    assert_eq!(answer["code"], "duplicate_id", "{answer}");
    // The victim's rejoin with its secret gets the id back, with the same secret.
    let (mut back, answer) = try_join(
        addr,
        json!({"type":"join","room":"r","from":"victim","secret":secret}),
    )
    .await?;
    assert_eq!(answer["type"], "joined", "{answer}");
    assert_eq!(
        (&answer["from"], &answer["secret"]),
        (&json!("victim"), &json!(secret))
    );
    until_members(&mut witness, json!(["victim", "witness"])).await?;
    witness
        .send(&json!({"type":"hangup","to":"victim"}))
        .await?;
    assert_eq!(back.expect("hangup").await?["from"], "witness");
    assert_eq!(e.rooms_service.stats().reserved, 0);
    Ok(())
}

#[tokio::test]
async fn the_secret_takes_the_id_from_a_connection_that_still_looks_live() -> Result<()> {
    let (_e, addr) = server(RoomsConfig::default()).await?;
    // `old` stops reading, as a half-open connection would.
    let (mut old, secret) = join_with_secret(addr, "r", "victim").await?;
    let mut witness = RoomClient::join(addr, "r", "witness").await?;
    let (mut new, answer) = try_join(
        addr,
        json!({"type":"join","room":"r","from":"victim","secret":secret}),
    )
    .await?;
    assert_eq!(answer["type"], "joined", "{answer}");
    assert_eq!(answer["secret"], json!(secret));
    // The old connection is told why and closed with 4000; the member list is unchanged.
    let (codes, close) = codes_until_close(&mut old).await?;
    assert_eq!(codes, ["replaced"]);
    assert_eq!(close, Some(4000));
    until_members(&mut witness, json!(["victim", "witness"])).await?;
    witness
        .send(&json!({"type":"hangup","to":"victim"}))
        .await?;
    assert_eq!(new.expect("hangup").await?["from"], "witness");
    Ok(())
}

#[tokio::test]
async fn a_leave_frees_the_id_at_once_and_a_reservation_runs_out() -> Result<()> {
    // A short reservation stands in for 60 s (the core's unit tests use the real one).
    let limits = Limits {
        reservation: Duration::from_secs(1),
        ..Limits::default()
    };
    let (e, addr) = server(RoomsConfig {
        limits,
        ..RoomsConfig::default()
    })
    .await?;
    let mut a = RoomClient::join(addr, "r", "a").await?;
    a.send(&json!({"type":"leave"})).await?;
    a.send(&json!({"type":"ping"})).await?;
    a.expect("pong").await?;
    let (_c, answer) = try_join(addr, json!({"type":"join","room":"r","from":"a"})).await?;
    assert_eq!(
        answer["type"], "joined",
        "a leave releases the id: {answer}"
    );

    let (b, secret) = join_with_secret(addr, "r", "b").await?;
    drop(b);
    let noticed = tokio::time::Instant::now() + Duration::from_secs(5);
    while e.rooms_service.stats().reserved == 0 {
        assert!(
            tokio::time::Instant::now() < noticed,
            "the drop was not noticed"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (_c, answer) = try_join(addr, json!({"type":"join","room":"r","from":"b"})).await?;
    assert_eq!(answer["code"], "duplicate_id", "still reserved: {answer}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_taker, answer) = try_join(addr, json!({"type":"join","room":"r","from":"b"})).await?;
    assert_eq!(
        answer["type"], "joined",
        "the reservation ran out: {answer}"
    );
    assert_ne!(
        answer["secret"],
        json!(secret),
        "a new holder, a new secret"
    );
    // The old secret no longer brings the id back.
    let (_c, answer) = try_join(
        addr,
        json!({"type":"join","room":"r","from":"b","secret":secret}),
    )
    .await?;
    assert_eq!(answer["code"], "duplicate_id", "{answer}");
    Ok(())
}

#[tokio::test]
async fn a_relay_over_64_kib_is_refused_and_the_socket_stays_open() -> Result<()> {
    let (_e, addr) = server(RoomsConfig::default()).await?;
    let mut a = RoomClient::join(addr, "r", "a").await?;
    let mut b = RoomClient::join(addr, "r", "b").await?;
    a.expect("room_members").await?;
    let big = json!({"type":"offer","to":"b","sdp":{"type":"offer","sdp":"a".repeat(65 * 1024)}});
    a.send(&big).await?;
    let refused = a.expect_error("message_too_large").await?;
    assert!(
        refused["error"]
            .as_str()
            .unwrap_or_default()
            .contains("65536"),
        "{refused}"
    );
    // Still open: the socket answers and relays, and b never got the big offer.
    a.send(&json!({"type":"ping"})).await?;
    assert_eq!(a.next().await?, json!({"type":"pong"}));
    let fits = json!({"type":"offer","to":"b","sdp":{"type":"offer","sdp":"a".repeat(60 * 1024)}});
    a.send(&fits).await?;
    let offer = b.expect("offer").await?;
    assert_eq!(offer["sdp"]["sdp"].as_str().map(str::len), Some(60 * 1024));
    b.expect_silence(Duration::from_millis(200)).await?;
    Ok(())
}

/// Connects from `src` until it succeeds (a closed socket frees its place only once the
/// server has seen the close).
async fn connect_from_within(
    addr: SocketAddr,
    src: std::net::IpAddr,
    within: Duration,
) -> Result<RoomClient> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match RoomClient::connect_from(addr, src, None).await {
            Ok(c) => return Ok(c),
            Err(e) if tokio::time::Instant::now() > deadline => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

#[tokio::test]
async fn a_connection_flood_from_one_address_is_capped_while_another_connects() -> Result<()> {
    const CAP: usize = 20;
    let (_e, addr) = server(RoomsConfig {
        max_connections_per_ip: CAP,
        ..RoomsConfig::default()
    })
    .await?;
    let flooder: std::net::IpAddr = [127, 0, 0, 1].into();
    let neighbour: std::net::IpAddr = [127, 0, 0, 2].into();
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(RoomClient::connect_from(addr, flooder, None).await?);
    }
    // Past the cap every attempt gets 429 before any WebSocket exists, and memory stays put.
    let before = liveloop_e2e::rss_bytes()?;
    for _ in 0..500 {
        let refused = RoomClient::connect_from(addr, flooder, None).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("429"), "{message}");
    }
    let after = liveloop_e2e::rss_bytes()?;
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} -> {after} bytes after 500 refused connections (+{grown})");
    assert!(
        grown < 8 * 1024 * 1024,
        "500 refused connections grew RSS by {grown} bytes"
    );
    // Another address connects, and its member meets one of the flooder's in a room.
    let mut b = RoomClient::connect_from(addr, neighbour, None).await?;
    b.send(&json!({"type": "join", "room": "r", "from": "b"}))
        .await?;
    b.expect("joined").await?;
    let a = &mut held[0];
    a.send(&json!({"type": "join", "room": "r", "from": "a"}))
        .await?;
    a.expect("joined").await?;
    until_members(&mut b, json!(["a", "b"])).await?;
    // A closed connection gives its place back.
    let mut last = held.pop().context("held")?;
    last.ws.close(None).await?;
    drop(last);
    connect_from_within(addr, flooder, Duration::from_secs(5)).await?;
    Ok(())
}

#[tokio::test]
async fn the_built_in_servers_take_browsers_only_from_their_own_pages() -> Result<()> {
    let e = embedded::start_loopback().await?;
    let addr = e.rooms;
    let refused = RoomClient::connect(addr, Some("https://evil.example")).await;
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("403"), "{message}");
    let other_port = format!("http://127.0.0.1:{}", addr.port().wrapping_add(1));
    assert!(
        RoomClient::connect(addr, Some(&other_port)).await.is_err(),
        "another port is another origin"
    );
    RoomClient::connect(addr, Some(&format!("http://{addr}"))).await?;
    RoomClient::connect(addr, None).await?;
    Ok(())
}
