//! Two clients meet through the real room server over loopback and hold a call: signaling by
//! `liveloop-signal`, media by `liveloop-rtc`, synthetic H.264 and chat. The server is restarted
//! mid-call: media keeps flowing peer to peer, the clients reconnect and rejoin the room.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use liveloop_e2e::{free_port, next_event};
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::synthetic::{SyntheticCamera, read_stamp};
use liveloop_proto::rooms::RelayKind;
use liveloop_rtc::{ConnectionState, Peer, PeerEvent, PeerOptions, VideoCodec};
use liveloop_server::embedded::{self, Embedded};
use liveloop_signal::matchmaking::{MatchClient, MatchEvent};
use liveloop_signal::rooms::{RoomClient, SignalEvent};
use tokio::sync::mpsc;

async fn start_server(rooms_port: u16) -> Embedded {
    liveloop_e2e::start_servers_on(rooms_port).await
}

/// One participant: a signaling client and, once the other member shows up, a peer.
struct Participant {
    peer: Arc<Peer>,
    media: mpsc::Receiver<PeerEvent>,
    signal_events: mpsc::UnboundedReceiver<SignalEvent>,
}

/// Joins `room` as `me` and calls `other` once both are in: the side whose id sorts lower is
/// impolite and offers (seed 001's rule: polite when `me > other`).
async fn join_and_call(url: &str, room: &str, me: &str, other: &str) -> Participant {
    let (client, mut events) =
        RoomClient::start(url.to_owned(), room.to_owned(), me.to_owned()).unwrap();
    let polite = me > other;
    let (peer_tx, mut peer_rx) = mpsc::channel(4096);
    let options = PeerOptions {
        polite,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..PeerOptions::default()
    };
    let peer = Arc::new(Peer::new(options, peer_tx).await.unwrap());
    let (media_tx, media) = mpsc::channel(4096);
    let (sig_tx, signal_events) = mpsc::unbounded_channel();
    // Peer → signaling.
    let out = client.clone();
    let other_id = other.to_owned();
    tokio::spawn(async move {
        while let Some(ev) = peer_rx.recv().await {
            match ev {
                PeerEvent::LocalDescription(d) => {
                    let kind = if d["type"] == "offer" {
                        RelayKind::Offer
                    } else {
                        RelayKind::Answer
                    };
                    let _ = out.relay(kind, &other_id, Some(d)).await;
                }
                PeerEvent::LocalCandidate(c) => {
                    let _ = out.relay(RelayKind::Candidate, &other_id, Some(c)).await;
                }
                other => {
                    let _ = media_tx.send(other).await;
                }
            }
        }
    });
    // Signaling → peer.
    let p = peer.clone();
    let other_id = other.to_owned();
    tokio::spawn(async move {
        let mut offered = false;
        while let Some(ev) = events.recv().await {
            match &ev {
                SignalEvent::Members(m) if !polite && !offered && m.contains(&other_id) => {
                    offered = true;
                    p.start_offer().await.unwrap();
                }
                SignalEvent::Relay {
                    kind: RelayKind::Offer | RelayKind::Answer,
                    payload: Some(d),
                    ..
                } => p.handle_description(d).await.unwrap(),
                SignalEvent::Relay {
                    kind: RelayKind::Candidate,
                    payload: Some(c),
                    ..
                } => p.add_candidate(c).await.unwrap(),
                _ => {}
            }
            let _ = sig_tx.send(ev);
        }
    });
    Participant {
        peer,
        media,
        signal_events,
    }
}

async fn next_media(p: &mut Participant, pred: impl Fn(&PeerEvent) -> bool) -> PeerEvent {
    next_event(&mut p.media, "a peer event", Duration::from_secs(10), pred).await
}

async fn next_signal(p: &mut Participant, pred: impl Fn(&SignalEvent) -> bool) -> SignalEvent {
    next_event(
        &mut p.signal_events,
        "a signaling event",
        Duration::from_secs(15),
        pred,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_call_through_the_room_server_and_survive_its_restart() {
    let port = free_port().unwrap();
    let server = start_server(port).await;
    let url = format!("ws://{}/ws", SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    let mut alice = join_and_call(&url, "call-room", "alice", "bob").await;
    let mut bob = join_and_call(&url, "call-room", "bob", "alice").await;
    for p in [&mut alice, &mut bob] {
        next_media(p, |e| {
            matches!(e, PeerEvent::Connection(ConnectionState::Connected))
        })
        .await;
        next_media(p, |e| matches!(e, PeerEvent::ChatOpen)).await;
    }
    alice.peer.send_chat("hi bob").await.unwrap();
    bob.peer.send_chat("hi alice").await.unwrap();
    assert_eq!(
        next_media(&mut bob, |e| matches!(e, PeerEvent::Chat(_))).await,
        PeerEvent::Chat("hi bob".into())
    );
    assert_eq!(
        next_media(&mut alice, |e| matches!(e, PeerEvent::Chat(_))).await,
        PeerEvent::Chat("hi alice".into())
    );

    // Alice sends 4 s of video; halfway through, the server goes away and comes back.
    const FRAMES: u64 = 120;
    let sender = alice.peer.clone();
    let send = tokio::spawn(async move {
        let cam = SyntheticCamera::new(640, 360, 30.0);
        let mut enc = H264Encoder::new(H264Config {
            bitrate_bps: 800_000,
            fps: 30.0,
        })
        .unwrap();
        let mut tick = tokio::time::interval(Duration::from_millis(33));
        for n in 0..FRAMES {
            tick.tick().await;
            let au = enc.encode(&cam.render(n, n * 33_000)).unwrap();
            sender
                .send_video(
                    VideoCodec::H264,
                    Bytes::from(au.data),
                    Duration::from_micros(33_333),
                )
                .await
                .unwrap();
        }
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.shutdown();
    drop(server);
    let restarted = start_server(port).await;

    let mut dec = H264Decoder::new().unwrap();
    let mut numbers = Vec::new();
    while numbers.last().is_none_or(|n| u64::from(*n) < FRAMES - 1) {
        let PeerEvent::Video { access_unit, .. } =
            next_media(&mut bob, |e| matches!(e, PeerEvent::Video { .. })).await
        else {
            unreachable!()
        };
        if let Ok(Some(frame)) = dec.decode(&access_unit)
            && let Some(stamp) = read_stamp(&frame)
        {
            numbers.push(stamp.number);
        }
    }
    send.await.unwrap();
    eprintln!(
        "bob decoded {} of {FRAMES} frames across the server restart",
        numbers.len()
    );
    assert!(
        numbers.len() as f64 >= 0.9 * FRAMES as f64,
        "decoded {} of {FRAMES}",
        numbers.len()
    );

    // Both noticed the outage, reconnected and rejoined; the room has both again.
    for p in [&mut alice, &mut bob] {
        next_signal(p, |e| matches!(e, SignalEvent::Reconnecting { .. })).await;
        next_signal(p, |e| matches!(e, SignalEvent::Joined { .. })).await;
    }
    next_signal(
        &mut alice,
        |e| matches!(e, SignalEvent::Members(m) if m.len() == 2),
    )
    .await;
    assert_eq!(restarted.rooms_service.stats().members, 2);
    alice.peer.close().await.unwrap();
    bob.peer.close().await.unwrap();
}

/// A random-chat participant: matchmaking client plus peer, glued the way the engine will.
struct RandomParticipant {
    client: Arc<MatchClient>,
    peer: Arc<Peer>,
    media: mpsc::Receiver<PeerEvent>,
    events: mpsc::Receiver<MatchEvent>,
}

async fn random_chat(url: &str, name: &str) -> RandomParticipant {
    let (client, mut events) = MatchClient::connect(url.into()).await.unwrap();
    let client = Arc::new(client);
    let (fwd_tx, fwd_events) = mpsc::channel(1024);
    let (media_tx, media) = mpsc::channel(4096);
    let (peer_tx, mut peer_rx) = mpsc::channel(4096);
    // The peer is made when the match is known: polite unless this side offers.
    let peer_slot: Arc<tokio::sync::OnceCell<Arc<Peer>>> = Arc::default();
    let (slot, c) = (peer_slot.clone(), client.clone());
    tokio::spawn(async move {
        while let Some(ev) = events.recv().await {
            match &ev {
                MatchEvent::Matched { make_offer, .. } => {
                    let options = PeerOptions {
                        polite: !make_offer,
                        udp_addrs: vec!["127.0.0.1:0".into()],
                        ..PeerOptions::default()
                    };
                    let peer = Arc::new(Peer::new(options, peer_tx.clone()).await.unwrap());
                    let _ = slot.set(peer.clone());
                    if *make_offer {
                        peer.start_offer().await.unwrap();
                    }
                }
                MatchEvent::Offer { sdp, .. } | MatchEvent::Answer { sdp, .. } => {
                    slot.get().unwrap().handle_description(sdp).await.unwrap()
                }
                MatchEvent::Candidate { candidate, .. } => {
                    slot.get().unwrap().add_candidate(candidate).await.unwrap()
                }
                _ => {}
            }
            let _ = fwd_tx.send(ev).await;
        }
    });
    tokio::spawn(async move {
        while let Some(ev) = peer_rx.recv().await {
            match ev {
                PeerEvent::LocalDescription(d) => {
                    let _ = if d["type"] == "offer" {
                        c.send_offer(d).await
                    } else {
                        c.send_answer(d).await
                    };
                }
                PeerEvent::LocalCandidate(cand) => {
                    let _ = c.send_candidate(cand).await;
                }
                other => {
                    let _ = media_tx.send(other).await;
                }
            }
        }
    });
    client.request(name, "").await.unwrap();
    let peer = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(p) = peer_slot.get() {
                return p.clone();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("matched within 10 s");
    RandomParticipant {
        client,
        peer,
        media,
        events: fwd_events,
    }
}

async fn next_peer_event(
    rx: &mut mpsc::Receiver<PeerEvent>,
    pred: impl Fn(&PeerEvent) -> bool,
) -> PeerEvent {
    next_event(rx, "a peer event", Duration::from_secs(10), pred).await
}

async fn next_match_event(
    rx: &mut mpsc::Receiver<MatchEvent>,
    pred: impl Fn(&MatchEvent) -> bool,
) -> MatchEvent {
    next_event(rx, "a matchmaking event", Duration::from_secs(10), pred).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_chat_through_the_matchmaking_server() {
    let server = embedded::start_loopback().await.unwrap();
    let url = server.matchmaking_url();
    let (mut ada, mut bob) = tokio::join!(random_chat(&url, "Ada"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        random_chat(&url, "Bob").await
    });
    for p in [&mut ada, &mut bob] {
        next_peer_event(&mut p.media, |e| {
            matches!(e, PeerEvent::Connection(ConnectionState::Connected))
        })
        .await;
    }
    // Video from Ada reaches Bob.
    let cam = SyntheticCamera::new(320, 180, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 300_000,
        fps: 30.0,
    })
    .unwrap();
    let mut dec = H264Decoder::new().unwrap();
    for n in 0..15 {
        let au = enc.encode(&cam.render(n, n * 33_000)).unwrap();
        ada.peer
            .send_video(
                VideoCodec::H264,
                Bytes::from(au.data),
                Duration::from_micros(33_333),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(33)).await;
    }
    let mut got = 0;
    while got < 15 {
        let PeerEvent::Video { access_unit, .. } =
            next_peer_event(&mut bob.media, |e| matches!(e, PeerEvent::Video { .. })).await
        else {
            unreachable!()
        };
        if let Ok(Some(f)) = dec.decode(&access_unit)
            && read_stamp(&f).is_some()
        {
            got += 1;
        }
    }
    // Chat through the matchmaking server reaches both.
    ada.client.send_chat("hi via socket.io").await.unwrap();
    for p in [&mut ada, &mut bob] {
        let msg = next_match_event(&mut p.events, |e| matches!(e, MatchEvent::Chat { .. })).await;
        assert!(matches!(msg, MatchEvent::Chat { message, .. } if message == "hi via socket.io"));
    }
    // Stop: Bob hears the call end and is queued again.
    ada.client.stop().await.unwrap();
    next_match_event(&mut bob.events, |e| matches!(e, MatchEvent::PeerLeft)).await;
    ada.peer.close().await.unwrap();
    bob.peer.close().await.unwrap();
}
