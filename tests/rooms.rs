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

use anyhow::Result;
use futures_util::SinkExt;
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
    assert_eq!(
        bob.next().await?,
        json!({"type":"joined","room":"r1","from":"bob"})
    );
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

    // 2 MB: a clear error, then the socket is closed with 1009.
    bad.send_text(format!(
        r#"{{"type":"ping","pad":"{}"}}"#,
        "a".repeat(2 * 1024 * 1024)
    ))
    .await?;
    bad.expect_error("message_too_large").await?;
    assert_eq!(bad.closed_with().await?, Some(1009));
    // A binary frame over 1 MB is too large just as text is: the error, then 1009.
    let mut binary = RoomClient::join(addr, "chaos", "binary").await?;
    binary
        .ws
        .send(tokio_tungstenite::tungstenite::Message::Binary(
            vec![0u8; 2 * 1024 * 1024].into(),
        ))
        .await?;
    binary.expect_error("message_too_large").await?;
    assert_eq!(binary.closed_with().await?, Some(1009));
    // 16 MB: beyond what the server reads at all; the socket is dropped.
    let mut huge = RoomClient::join(addr, "chaos", "huge").await?;
    let _ = huge.send_text("x".repeat(16 * 1024 * 1024)).await;
    let _ = huge.closed_with().await;

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
    // The burst of 50 (plus what refilled meanwhile) is served; the excess is refused, and
    // one rate_limited error answers a whole run of refused messages.
    assert!((50..70).contains(&pongs), "{pongs} pongs");
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
    // `dead` joins and then never reads again, so it never answers pings.
    let _dead = RoomClient::join(addr, "r", "dead").await?;
    alive.expect("room_members").await?;
    // `alive` keeps reading (tungstenite answers pings) and sees `dead` leave.
    let left = alive.expect("room_members").await?;
    assert_eq!(left["members"], json!(["alive"]));
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
    let config = RoomsConfig {
        send_timeout: Duration::from_millis(500),
        ..RoomsConfig::default()
    };
    let (_e, addr) = server(config).await?;
    let mut sender = RoomClient::join(addr, "r", "sender").await?;
    let _slow = RoomClient::join(addr, "r", "slow").await?; // never reads again
    let mut other = RoomClient::join(addr, "r", "other").await?;
    sender.expect("room_members").await?;
    sender.expect("room_members").await?;
    // 40 offers of 900 KB: far more than socket buffers hold, so sends to `slow` stall.
    let sdp = json!({"type":"offer","sdp":"a".repeat(900 * 1024)});
    for _ in 0..40 {
        sender
            .send(&json!({"type":"offer","to":"slow","sdp":sdp}))
            .await?;
    }
    // `other` keeps getting service and sees `slow` evicted.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let msg = other
            .next_within(deadline.saturating_duration_since(tokio::time::Instant::now()))
            .await?;
        if msg["type"] == "room_members" && msg["members"] == json!(["other", "sender"]) {
            break;
        }
    }
    sender.send(&json!({"type":"hangup","to":"other"})).await?;
    assert_eq!(other.expect("hangup").await?["from"], "sender");
    Ok(())
}
