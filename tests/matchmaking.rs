//! The matchmaking service over loopback with real socket.io clients: rust_socketio here, and the
//! official JavaScript socket.io-client running the seed's own example flow.

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use anyhow::{Context, Result};
use liveloop_core::matchmaker::Config;
use liveloop_e2e::sio_client::SioClient;
use liveloop_server::embedded::{self, Embedded};
use liveloop_server::matchmaking::MatchmakingConfig;
use liveloop_server::rooms::RoomsConfig;
use serde_json::{Value, json};

/// A matchmaking service that lists who is waiting in `/api/status` (`status_names`), so
/// that the tests can see who was queued.
async fn server(matcher: Config) -> Result<(Embedded, String)> {
    let e = server_with(MatchmakingConfig {
        matcher,
        status_names: true,
        ..MatchmakingConfig::default()
    })
    .await?;
    let url = e.matchmaking_url();
    Ok((e, url))
}

/// The built-in servers on loopback, matchmaking configured as given.
async fn server_with(config: MatchmakingConfig) -> Result<Embedded> {
    Ok(embedded::start(
        [127, 0, 0, 1].into(),
        (0, 0),
        config,
        RoomsConfig::default(),
    )
    .await?)
}

async fn get_json(url: String) -> Result<Value> {
    tokio::task::spawn_blocking(move || -> Result<Value> {
        let mut r = ureq::get(&url).call()?;
        Ok(r.body_mut().read_json()?)
    })
    .await?
}

fn request(name: &str) -> Value {
    json!({"name": name, "roomId": null, "userImage": ""})
}

/// Two clients matched with each other.
struct Pair {
    /// Queued first: sends the offer.
    a: SioClient,
    b: SioClient,
    room: String,
    a_sock: String,
    b_sock: String,
}

async fn matched_pair(url: &str) -> Result<Pair> {
    let mut a = SioClient::connect(url).await?;
    let mut b = SioClient::connect(url).await?;
    a.emit("request-room", request("Ada")).await?;
    // Make sure Ada is queued first.
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.emit("request-room", request("Bob")).await?;
    let done_a = a.expect("match-done").await?;
    let done_b = b.expect("match-done").await?;
    assert_eq!(done_a["roomId"], done_b["roomId"]);
    assert_eq!(done_a["remoteUserDetails"]["userName"], "Bob");
    assert_eq!(done_b["remoteUserDetails"]["userName"], "Ada");
    assert_eq!(
        (done_a["makeOffer"].as_bool(), done_b["makeOffer"].as_bool()),
        (Some(true), Some(false)),
        "the earlier-queued user offers"
    );
    let room = done_a["roomId"].as_str().context("roomId")?.to_owned();
    let b_sock = done_a["remoteUserDetails"]["socket"]
        .as_str()
        .context("socket")?
        .to_owned();
    let a_sock = done_b["remoteUserDetails"]["socket"]
        .as_str()
        .context("socket")?
        .to_owned();
    assert_ne!(a_sock, b_sock);
    Ok(Pair {
        a,
        b,
        room,
        a_sock,
        b_sock,
    })
}

#[tokio::test]
async fn http_status_endpoints() -> Result<()> {
    let e = server_with(MatchmakingConfig::default()).await?;
    let url = e.matchmaking_url();
    let root = get_json(format!("{url}/")).await?;
    assert_eq!(root["status"], "OK");
    assert!(root["message"].is_string());
    let waiting = SioClient::connect(&url).await?;
    waiting.emit("request-room", request("Wanda")).await?;
    let status = wait_status(&url, |s| s["queue"]["size"] == 1).await?;
    assert_eq!(
        status["queue"],
        json!({"size": 1}),
        "counts, never who is waiting"
    );
    assert_eq!(status["rooms"], json!({"active": 0, "total": 0}));
    let ts = status["timestamp"].as_str().unwrap_or_default();
    assert!(
        ts.len() >= 20 && ts.as_bytes()[10] == b'T' && ts.ends_with('Z'),
        "ISO-8601 UTC: {ts}"
    );
    Ok(())
}

async fn wait_status(url: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
    for _ in 0..250 {
        let s = get_json(format!("{url}/api/status")).await?;
        if pred(&s) {
            return Ok(s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    anyhow::bail!("status never matched")
}

#[tokio::test]
async fn a_full_call_offer_answer_ice_chat_stop() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        room,
        a_sock,
        b_sock,
    } = matched_pair(&url).await?;
    assert_eq!(
        wait_status(&url, |_| true).await?["rooms"],
        json!({"active": 1, "total": 1})
    );

    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    a.emit(
        "negotiation-call-offer",
        json!({"offer": offer, "roomId": room, "name": "Ada", "remoteSocketId": b_sock}),
    )
    .await?;
    let got = b.expect("negotiation-call-offer").await?;
    assert_eq!(
        got,
        json!({"remoteUserDetails": {"socket": a_sock, "userName": "Ada"}, "roomId": room, "offer": offer})
    );

    let ans = json!({"type": "answer", "sdp": "v=0"});
    b.emit(
        "negotiation-call-answer",
        json!({"ans": ans, "roomId": room, "name": "Bob", "remoteSocketId": a_sock}),
    )
    .await?;
    let got = a.expect("negotiation-call-answer").await?;
    assert_eq!(
        got,
        json!({"ans": ans, "roomId": room, "name": "Bob", "remoteSocketId": b_sock})
    );

    let cand = json!({"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host", "sdpMid": "0", "sdpMLineIndex": 0});
    a.emit(
        "send-new-ice-candidates",
        json!({"to": b_sock, "candidate": cand}),
    )
    .await?;
    assert_eq!(b.expect("new-ice-candidates").await?["candidate"], cand);
    b.emit(
        "send-new-ice-candidates",
        json!({"to": a_sock, "candidate": cand}),
    )
    .await?;
    assert_eq!(a.expect("new-ice-candidates").await?["from"], b_sock);

    a.emit(
        "newMessage",
        json!({"message": "hello 👋", "roomId": room, "remoteSocket": b_sock}),
    )
    .await?;
    for c in [&mut a, &mut b] {
        assert_eq!(
            c.expect("Message:recived").await?,
            json!({"from": a_sock, "message": "hello 👋"})
        );
    }

    // Stop: Bob hears it and goes back into the queue; Ada is idle.
    a.emit(
        "stop-call",
        json!({"roomId": room, "remoteSocketId": b_sock, "name": "Ada"}),
    )
    .await?;
    b.expect("stop-by-remote-user").await?;
    let s = wait_status(&url, |s| s["queue"]["size"] == 1).await?;
    assert_eq!(s["queue"]["users"], json!(["Bob"]));
    assert_eq!(s["rooms"]["active"], 0);
    // Signaling after the call ended is refused.
    a.emit("newMessage", json!({"message": "anyone?"})).await?;
    a.expect_error("not_in_call").await?;
    Ok(())
}

// Several worker threads, as the server binary has: on one thread, spawned handler tasks
// happen to run in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_sockets_events_arrive_in_the_order_it_sent_them() -> Result<()> {
    // A burst larger than the default (200), so that all 301 relays pass the rate limit.
    let (_e, url) = server(Config {
        relay_burst: 400,
        ..Config::default()
    })
    .await?;
    let Pair {
        a,
        mut b,
        room,
        b_sock,
        ..
    } = matched_pair(&url).await?;
    // An offer, then at once 300 candidates and 10 chat messages, as a browser trickles.
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    a.emit(
        "negotiation-call-offer",
        json!({"offer": offer, "roomId": room, "name": "Ada", "remoteSocketId": b_sock}),
    )
    .await?;
    for i in 0..300 {
        a.emit(
            "send-new-ice-candidates",
            json!({"to": b_sock, "candidate": {"candidate": format!("c{i}"), "sdpMid": "0"}}),
        )
        .await?;
    }
    for i in 0..10 {
        a.emit(
            "newMessage",
            json!({"message": format!("m{i}"), "roomId": room}),
        )
        .await?;
    }
    let mut got = Vec::new();
    while got.len() < 311 {
        let (event, payload) = b.next().await?;
        match event.as_str() {
            "negotiation-call-offer" => got.push("offer".to_owned()),
            "new-ice-candidates" => got.push(
                payload["candidate"]["candidate"]
                    .as_str()
                    .context("candidate")?
                    .to_owned(),
            ),
            "Message:recived" => {
                got.push(payload["message"].as_str().context("message")?.to_owned());
            }
            _ => {}
        }
    }
    let expected: Vec<String> = std::iter::once("offer".to_owned())
        .chain((0..300).map(|i| format!("c{i}")))
        .chain((0..10).map(|i| format!("m{i}")))
        .collect();
    let misplaced = got.iter().zip(&expected).filter(|(g, e)| g != e).count();
    assert_eq!(
        misplaced, 0,
        "{misplaced} of 311 events out of order: {got:?}"
    );
    Ok(())
}

#[tokio::test]
async fn an_oversized_offer_is_refused_not_forwarded() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        room,
        b_sock,
        ..
    } = matched_pair(&url).await?;
    // Over the 256 KB an event may have, under the 1 MB the server reads at all.
    let offer = json!({"type": "offer", "sdp": "a".repeat(512 * 1024)});
    a.emit(
        "negotiation-call-offer",
        json!({"offer": offer, "roomId": room, "name": "Ada", "remoteSocketId": b_sock}),
    )
    .await?;
    let err = a.expect_error("invalid_payload").await?;
    assert_eq!(err["event"], "negotiation-call-offer");
    b.expect_silence(Duration::from_millis(500)).await?;
    // The call goes on: a normal offer still gets through.
    let offer = json!({"type": "offer", "sdp": "v=0\r\n"});
    a.emit(
        "negotiation-call-offer",
        json!({"offer": offer, "roomId": room, "name": "Ada", "remoteSocketId": b_sock}),
    )
    .await?;
    assert_eq!(b.expect("negotiation-call-offer").await?["offer"], offer);
    Ok(())
}

#[tokio::test]
async fn an_oversized_or_unreadable_stop_call_ends_nothing() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        room,
        b_sock,
        ..
    } = matched_pair(&url).await?;
    // 300 KB, over MAX_EVENT_BYTES: refused, not read, and the call stays up.
    a.emit(
        "stop-call",
        json!({"roomId": room, "remoteSocketId": b_sock, "name": "x".repeat(300 * 1024)}),
    )
    .await?;
    let err = a.expect_error("invalid_payload").await?;
    assert_eq!(err["event"], "stop-call");
    // A payload that is not an object of stop-call's shape: refused too.
    for bad in [json!("stop"), json!([room]), json!({"roomId": 5})] {
        a.emit("stop-call", bad.clone()).await?;
        let err = a.expect_error("invalid_payload").await.context(bad)?;
        assert_eq!(err["event"], "stop-call");
    }
    b.expect_silence(Duration::from_millis(300)).await?;
    a.emit("newMessage", json!({"message": "still here"}))
        .await?;
    assert_eq!(b.expect("Message:recived").await?["message"], "still here");
    assert_eq!(
        wait_status(&url, |_| true).await?["rooms"]["active"],
        1,
        "the call is up"
    );
    // A stop-call with no payload at all is a stop.
    a.client
        .emit("stop-call", rust_socketio::Payload::Text(Vec::new()))
        .await?;
    b.expect("stop-by-remote-user").await?;
    Ok(())
}

/// A request over HTTP without treating 4xx/5xx as errors: (status, body).
async fn http(method: &'static str, url: String, body: String) -> Result<(u16, String)> {
    tokio::task::spawn_blocking(move || -> Result<(u16, String)> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .into();
        let mut r = if method == "POST" {
            agent
                .post(&url)
                .header("content-type", "text/plain;charset=UTF-8")
                .send(body)?
        } else {
            agent.get(&url).call()?
        };
        Ok((r.status().as_u16(), r.body_mut().read_to_string()?))
    })
    .await?
}

#[tokio::test]
async fn a_long_polling_body_over_256_kb_is_refused() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    // The engine.io handshake over HTTP long-polling: `0{"sid":…}`.
    let base = format!("{url}/socket.io/?EIO=4&transport=polling");
    let (status, open) = http("GET", base.clone(), String::new()).await?;
    assert_eq!(status, 200, "{open}");
    let open: Value = serde_json::from_str(open.strip_prefix('0').context("open packet")?)?;
    let sid = open["sid"].as_str().context("sid")?;
    let session = format!("{base}&sid={sid}");
    // A small body is taken (the socket.io CONNECT to `/`)...
    let (status, body) = http("POST", session.clone(), "40".into()).await?;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // ...so is one just under 256 KB (the limit is ours, not engineioxide's default)...
    let event = |kb: usize| {
        format!(
            r#"42["newMessage",{{"message":"{}"}}]"#,
            "x".repeat(kb * 1024)
        )
    };
    let (status, body) = http("POST", session.clone(), event(250)).await?;
    assert_eq!((status, body.as_str()), (200, "ok"));
    // ...a 300 KB one is refused...
    let (status, _) = http("POST", session.clone(), event(300)).await?;
    assert_eq!(status, 413);
    // ...and the session is over: polling it again is an unknown session, not the CONNECT
    // acknowledgement that is waiting there.
    let (status, body) = http("GET", session, String::new()).await?;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Session ID unknown"), "{body}");
    Ok(())
}

#[tokio::test]
async fn disconnect_mid_call_tells_the_peer_and_requeues_it() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair { a, mut b, .. } = matched_pair(&url).await?;
    a.disconnect().await?;
    b.expect("stop-by-remote-user").await?;
    let s = wait_status(&url, |s| s["queue"]["size"] == 1).await?;
    assert_eq!(s["queue"]["users"], json!(["Bob"]));
    // A newcomer is matched with Bob.
    let mut c = SioClient::connect(&url).await?;
    c.emit("request-room", request("Cy")).await?;
    assert_eq!(
        c.expect("match-done").await?["remoteUserDetails"]["userName"],
        "Bob"
    );
    assert_eq!(
        b.expect("match-done").await?["remoteUserDetails"]["userName"],
        "Cy"
    );
    Ok(())
}

#[tokio::test]
async fn a_third_socket_cannot_inject_into_a_call() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        room,
        a_sock,
        b_sock,
    } = matched_pair(&url).await?;
    let mut eve = SioClient::connect(&url).await?;
    let evil = json!({"type": "offer", "sdp": "evil"});
    eve.emit(
        "negotiation-call-offer",
        json!({"offer": evil, "roomId": room, "name": "Eve", "remoteSocketId": b_sock}),
    )
    .await?;
    eve.expect_error("not_in_call").await?;
    eve.emit(
        "send-new-ice-candidates",
        json!({"to": a_sock, "candidate": {}}),
    )
    .await?;
    eve.expect_error("not_in_call").await?;
    eve.emit(
        "newMessage",
        json!({"message": "hi", "roomId": room, "remoteSocket": a_sock}),
    )
    .await?;
    eve.expect_error("not_in_call").await?;

    // Eve in a call of her own still cannot reach into Ada and Bob's.
    let mut fay = SioClient::connect(&url).await?;
    eve.emit("request-room", request("Eve")).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    fay.emit("request-room", request("Fay")).await?;
    let eve_done = eve.expect("match-done").await?;
    eve.emit("negotiation-call-offer", json!({"offer": evil, "roomId": eve_done["roomId"], "name": "Eve", "remoteSocketId": b_sock})).await?;
    eve.expect_error("invalid_target").await?;
    eve.emit(
        "negotiation-call-answer",
        json!({"ans": evil, "roomId": room, "name": "Eve", "remoteSocketId": a_sock}),
    )
    .await?;
    eve.expect_error("invalid_target").await?;
    a.expect_silence(Duration::from_millis(300)).await?;
    b.expect_silence(Duration::from_millis(10)).await?;
    fay.expect("match-done").await?;
    fay.expect_silence(Duration::from_millis(10)).await?;
    Ok(())
}

#[tokio::test]
async fn invalid_payloads_and_unknown_events_get_errors() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let mut c = SioClient::connect(&url).await?;
    c.emit(
        "request-room",
        json!({"name": "   ", "roomId": null, "userImage": ""}),
    )
    .await?;
    let e = c.expect_error("invalid_payload").await?;
    assert_eq!(e["event"], "request-room");
    let mut d = SioClient::connect(&url).await?;
    d.emit(
        "request-room",
        json!({"name": "Dee", "userImage": "data:image/gif;base64,R0lG"}),
    )
    .await?;
    d.expect_error("invalid_payload").await?;
    let mut f = SioClient::connect(&url).await?;
    f.emit("request-room", json!("just a string")).await?;
    f.expect_error("invalid_payload").await?;
    let mut g = SioClient::connect(&url).await?;
    g.emit("request-room", json!({"name": 42})).await?;
    g.expect_error("invalid_payload").await?;
    c.emit("no-such-event", json!({"x": 1})).await?;
    let e = c.expect_error("unknown_event").await?;
    assert_eq!(e["event"], "no-such-event");
    c.emit("negotiation-call-offer", json!([1, 2, 3])).await?;
    c.expect_error("invalid_payload").await?;
    // A user is never paired with itself, however often it asks.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let h = SioClient::connect(&url).await?;
    h.emit("request-room", request("Hal")).await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.emit("request-room", request("Cal")).await?;
    assert_eq!(
        c.expect("match-done").await?["remoteUserDetails"]["userName"],
        "Hal"
    );
    h.emit("stop-call", json!(null)).await?;
    c.expect("stop-by-remote-user").await?;
    // Cal now waits alone; Cal asking again is refused, not paired with Cal.
    tokio::time::sleep(Duration::from_secs(5)).await;
    c.emit("request-room", request("Cal")).await?;
    c.expect_error("already_queued").await?;
    c.expect_silence(Duration::from_millis(300)).await?;
    c.disconnect().await?;
    wait_status(&url, |s| s["queue"]["size"] == 0).await?;

    // Too long a chat message, even a 4 MB one, is refused; the call goes on and nothing
    // reaches the peer.
    let Pair { mut a, mut b, .. } = matched_pair(&url).await?;
    a.emit("newMessage", json!({"message": "x".repeat(1001)}))
        .await?;
    a.expect_error("invalid_payload").await?;
    a.emit("newMessage", json!({"message": "y".repeat(512 * 1024)}))
        .await?;
    a.expect_error("invalid_payload").await?;
    b.expect_silence(Duration::from_millis(200)).await?;
    a.emit("newMessage", json!({"message": "still here"}))
        .await?;
    assert_eq!(b.expect("Message:recived").await?["message"], "still here");
    Ok(())
}

#[tokio::test]
async fn rate_limits_and_queue_full() -> Result<()> {
    let (_e, url) = server(Config {
        queue_capacity: 1,
        ..Config::default()
    })
    .await?;
    let mut a = SioClient::connect(&url).await?;
    a.emit("request-room", request("Ada")).await?;
    a.emit("request-room", request("Ada")).await?;
    let e = a.expect_error("rate_limited").await?;
    let retry = e["retryAfterMs"].as_u64().unwrap_or_default();
    assert!((4000..=5000).contains(&retry), "retryAfterMs {retry}");

    // Queue full: with capacity 1, Bob waits and Ada, who just left him (so is not matched
    // with him at once), finds no room in the queue.
    let (_e2, url2) = server(Config {
        queue_capacity: 1,
        ..Config::default()
    })
    .await?;
    let Pair { mut a, mut b, .. } = matched_pair(&url2).await?;
    a.emit("stop-call", json!(null)).await?;
    b.expect("stop-by-remote-user").await?;
    // request-room allows one per 5 s.
    tokio::time::sleep(Duration::from_secs(5)).await;
    a.emit("request-room", request("Ada")).await?;
    a.expect_error("queue_full").await?;

    // Chat: 10 per minute.
    let (_e3, url3) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        b_sock,
        ..
    } = matched_pair(&url3).await?;
    for i in 0..10 {
        a.emit("newMessage", json!({"message": format!("m{i}")}))
            .await?;
    }
    for _ in 0..10 {
        b.expect("Message:recived").await?;
    }
    a.emit("newMessage", json!({"message": "m10"})).await?;
    let e = a.expect_error("rate_limited").await?;
    assert!(e["retryAfterMs"].as_u64().is_some_and(|ms| ms > 1000));
    // Offers, answers and candidates share one limit: 50 a second with bursts of 200, so the
    // candidates a call's start trickles all arrive...
    for i in 0..200 {
        a.emit(
            "send-new-ice-candidates",
            json!({"to": b_sock, "candidate": {"candidate": format!("c{i}")}}),
        )
        .await?;
    }
    for i in 0..200 {
        assert_eq!(
            b.expect("new-ice-candidates").await?["candidate"]["candidate"],
            format!("c{i}")
        );
    }
    // ...and a flood is cut to the rate, with one rate_limited a second (not one per refusal).
    let started = std::time::Instant::now();
    for i in 0..1000 {
        a.emit(
            "send-new-ice-candidates",
            json!({"to": b_sock, "candidate": {"candidate": format!("f{i}")}}),
        )
        .await?;
    }
    let mut errors = 0;
    let mut candidates = 0;
    while let Ok(Ok((event, payload))) = tokio::time::timeout(Duration::from_millis(700), async {
        tokio::select! {
            got = a.next() => got,
            got = b.next() => got,
        }
    })
    .await
    {
        match event.as_str() {
            "error" if payload["code"] == "rate_limited" => errors += 1,
            "new-ice-candidates" => candidates += 1,
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("flood of 1000 over {secs:.2} s: {candidates} forwarded, {errors} rate_limited");
    let allowed = 50.0f64.mul_add(secs, 5.0);
    assert!(
        f64::from(candidates) <= allowed,
        "{candidates} candidates forwarded in {secs:.2} s (allowed about {allowed:.0})"
    );
    assert!(
        errors >= 1 && f64::from(errors) <= secs + 1.0,
        "{errors} rate_limited errors in {secs:.2} s"
    );
    Ok(())
}

#[tokio::test]
async fn status_names_only_when_asked() -> Result<()> {
    let e = server_with(MatchmakingConfig {
        status_names: true,
        ..MatchmakingConfig::default()
    })
    .await?;
    let url = e.matchmaking_url();
    let waiting = SioClient::connect(&url).await?;
    waiting.emit("request-room", request("Wanda")).await?;
    let status = wait_status(&url, |s| s["queue"]["size"] == 1).await?;
    assert_eq!(status["queue"]["users"], json!(["Wanda"]));
    Ok(())
}

/// One engine.io long-polling exchange on `stream`: the body of the response, which must be
/// a 200.
async fn polling(
    stream: &mut tokio::net::TcpStream,
    port: u16,
    method: &str,
    query: &str,
    body: &str,
) -> Result<String> {
    let (status, body) = exchange(stream, port, method, query, body).await?;
    anyhow::ensure!(status == 200, "status {status}: {body}");
    Ok(body)
}

/// One engine.io long-polling exchange on `stream`: the status and body of the response.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    port: u16,
    method: &str,
    query: &str,
    body: &str,
) -> Result<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let request = format!(
        "{method} /socket.io/?EIO=4&transport=polling{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk))
            .await
            .context("no response")??;
        anyhow::ensure!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).into_owned();
        let Some((head, rest)) = text.split_once("\r\n\r\n") else {
            continue;
        };
        let length = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            })
            .context("no content-length")?;
        if rest.len() >= length {
            let status = head
                .split(' ')
                .nth(1)
                .and_then(|c| c.parse().ok())
                .context("no status")?;
            return Ok((status, rest[..length].to_owned()));
        }
    }
}

/// Opens a socket.io connection by long-polling from the local address `src`: `Ok(true)` when
/// the namespace accepted it, `Ok(false)` when it was refused (`connect_error`).
async fn sio_connect_from(
    port: u16,
    src: std::net::IpAddr,
) -> Result<(bool, tokio::net::TcpStream, String)> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::new(src, 0))?;
    let mut stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await?;
    let open = polling(&mut stream, port, "GET", "", "").await?;
    let handshake: Value = serde_json::from_str(open.strip_prefix('0').context("open")?)?;
    let sid = handshake["sid"].as_str().context("sid")?.to_owned();
    let query = format!("&sid={sid}");
    polling(&mut stream, port, "POST", &query, "40").await?;
    // The reply may carry other packets too (a ping), separated by 0x1e.
    let reply = polling(&mut stream, port, "GET", &query, "").await?;
    for packet in reply.split('\u{1e}') {
        if packet.starts_with("40") {
            return Ok((true, stream, sid));
        }
        if packet.starts_with("44") {
            assert!(packet.contains("too many connections"), "{packet}");
            return Ok((false, stream, sid));
        }
    }
    anyhow::bail!("unexpected reply {reply}")
}

#[tokio::test]
async fn a_socket_flood_from_one_address_is_capped_while_another_connects() -> Result<()> {
    const CAP: usize = 10;
    let e = server_with(MatchmakingConfig {
        max_connections_per_ip: CAP,
        // This test makes 210 handshakes in a second or two; their rate is the next test's.
        handshakes_per_ip_per_sec: 0,
        ..MatchmakingConfig::default()
    })
    .await?;
    let port = e.matchmaking.port();
    let flooder: std::net::IpAddr = [127, 0, 0, 1].into();
    let mut held = Vec::new();
    for _ in 0..CAP {
        let (accepted, stream, sid) = sio_connect_from(port, flooder).await?;
        assert!(accepted);
        held.push((stream, sid));
    }
    let before = liveloop_e2e::rss_bytes()?;
    for _ in 0..200 {
        let (accepted, _, _) = sio_connect_from(port, flooder).await?;
        assert!(!accepted, "over the cap");
    }
    let after = liveloop_e2e::rss_bytes()?;
    let grown = after.saturating_sub(before);
    eprintln!("RSS {before} -> {after} bytes after 200 refused sockets (+{grown})");
    assert!(grown < 8 * 1024 * 1024, "RSS grew by {grown} bytes");
    // Another address still gets in, with the real client too.
    let (accepted, _other, _) = sio_connect_from(port, [127, 0, 0, 2].into()).await?;
    assert!(accepted, "another address is not capped");
    // A socket that leaves gives its place back.
    let (mut stream, sid) = held.pop().context("held")?;
    polling(&mut stream, port, "POST", &format!("&sid={sid}"), "41").await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (accepted, _, _) = sio_connect_from(port, flooder).await?;
        if accepted {
            break;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::test]
async fn a_handshake_flood_from_one_address_is_rate_limited_while_another_connects() -> Result<()> {
    // Engine.io sessions that never connect a namespace are not counted as connections; one
    // keep-alive TCP connection can ask for thousands a second. Their rate is capped.
    const RATE: u32 = 4;
    const FLOOD: usize = 2_000;
    let e = server_with(MatchmakingConfig {
        handshakes_per_ip_per_sec: RATE,
        ..MatchmakingConfig::default()
    })
    .await?;
    let port = e.matchmaking.port();
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let before = liveloop_e2e::rss_bytes()?;
    let started = std::time::Instant::now();
    let (mut opened, mut refused) = (0usize, 0usize);
    for _ in 0..FLOOD {
        match exchange(&mut stream, port, "GET", "", "").await? {
            (200, body) => {
                assert!(body.starts_with('0'), "an engine.io open packet: {body}");
                opened += 1;
            }
            (429, body) => {
                assert!(body.contains("too many new connections"), "{body}");
                refused += 1;
            }
            (status, body) => anyhow::bail!("status {status}: {body}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let after = liveloop_e2e::rss_bytes()?;
    let grown = after.saturating_sub(before);
    eprintln!(
        "{FLOOD} handshakes in {elapsed:.1} s: {opened} opened, {refused} refused (429); RSS \
         +{grown} bytes"
    );
    // The burst (5 s worth) and the rate over the time the flood took, with a second's slack.
    let allowed = (RATE as f64 * (5.0 + elapsed + 1.0)) as usize;
    assert!(
        opened <= allowed,
        "{opened} sessions opened (at most {allowed})"
    );
    assert!(
        opened >= 5 * RATE as usize,
        "the burst was allowed ({opened})"
    );
    assert!(grown < 8 * 1024 * 1024, "RSS grew by {grown} bytes");
    // Another address still connects.
    let (accepted, _other, _) = sio_connect_from(port, [127, 0, 0, 2].into()).await?;
    assert!(accepted, "another address is not limited");
    Ok(())
}

#[tokio::test]
async fn a_message_over_1_mb_is_not_read_and_ends_only_its_senders_connection() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        a,
        mut b,
        room,
        b_sock,
        ..
    } = matched_pair(&url).await?;
    let offer = json!({"type": "offer", "sdp": "a".repeat(2 * 1024 * 1024)});
    a.emit(
        "negotiation-call-offer",
        json!({"offer": offer, "roomId": room, "name": "Ada", "remoteSocketId": b_sock}),
    )
    .await?;
    // The sender's connection is closed, which ends its call: the peer is told, never sent
    // the offer, and the service goes on for everyone else.
    b.expect("stop-by-remote-user").await?;
    // Bob is queued again and meets a newcomer.
    let mut c = SioClient::connect(&url).await?;
    c.emit("request-room", request("Cy")).await?;
    assert_eq!(
        c.expect("match-done").await?["remoteUserDetails"]["userName"],
        "Bob"
    );
    Ok(())
}

#[tokio::test]
async fn a_relay_over_64_kib_is_refused_and_the_call_goes_on() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let Pair {
        mut a,
        mut b,
        b_sock,
        ..
    } = matched_pair(&url).await?;
    let big = json!({"to": b_sock, "candidate": {"candidate": "c".repeat(70 * 1024)}});
    a.emit("send-new-ice-candidates", big).await?;
    let err = a.expect_error("invalid_payload").await?;
    assert_eq!(err["event"], "send-new-ice-candidates");
    b.expect_silence(Duration::from_millis(300)).await?;
    a.emit(
        "send-new-ice-candidates",
        json!({"to": b_sock, "candidate": {"candidate": "ok"}}),
    )
    .await?;
    assert_eq!(
        b.expect("new-ice-candidates").await?["candidate"]["candidate"],
        "ok"
    );
    Ok(())
}

/// The seed's own example flow, run by the official JavaScript socket.io-client.
#[tokio::test]
async fn seed_example_flow_with_the_js_client() -> Result<()> {
    let (_e, url) = server(Config::default()).await?;
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/seed_flow.mjs");
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&url)
        .output()
        .await
        .context("node (the test command installs it)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "node failed:\n{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(stdout.lines().last().unwrap_or_default()).context("report line")?;
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(
        report["steps"],
        json!(["match-done", "offer", "answer", "ice", "chat", "stop"])
    );
    Ok(())
}

/// Issue 17, point 5: the app's built-in servers take browser connections only from the pages
/// they serve themselves; native clients (no `Origin`) as before. Another site open in the
/// same browser cannot join rooms or queue for random chat through them.
#[tokio::test]
async fn the_built_in_servers_take_browsers_only_from_their_own_pages() -> Result<()> {
    let servers = embedded::start_loopback().await?;
    let (rooms, mm) = (servers.rooms, servers.matchmaking_url());
    let own_rooms_page = format!("http://{rooms}");
    assert!(
        liveloop_e2e::rooms_client::RoomClient::connect(rooms, Some(&own_rooms_page))
            .await
            .is_ok(),
        "the room service's own page"
    );
    assert!(
        liveloop_e2e::rooms_client::RoomClient::connect(rooms, None)
            .await
            .is_ok(),
        "native clients send no Origin"
    );
    for foreign in ["https://evil.example", "http://127.0.0.1:1", "null"] {
        let refused = liveloop_e2e::rooms_client::RoomClient::connect(rooms, Some(foreign)).await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("403"), "{foreign}: {message}");
    }
    SioClient::connect_from_page(&mm, Some(&mm))
        .await
        .context("the matchmaking service's own page")?;
    SioClient::connect_from_page(&mm, None)
        .await
        .context("a native client")?;
    for foreign in ["https://evil.example", own_rooms_page.as_str()] {
        assert!(
            SioClient::connect_from_page(&mm, Some(foreign))
                .await
                .is_err(),
            "{foreign} queued at the matchmaker"
        );
    }
    Ok(())
}
