//! The engine in a 4-member room on the real room server: a full mesh where every member
//! decodes the other three's video and hears their audio, chat reaches everyone, mute and
//! camera state propagate, and leaving is seen by the others.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use liveloop_e2e::next_event;
use liveloop_engine::{Command, EngineConfig, EngineEvent, EngineHandle, State, join_room};
use liveloop_media::quality::rms;
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice};
use liveloop_server::embedded;
use tokio::sync::mpsc;

struct Client {
    id: &'static str,
    handle: EngineHandle,
    events: mpsc::Receiver<EngineEvent>,
}

async fn until(c: &mut Client, what: &str, pred: impl FnMut(&EngineEvent) -> bool) {
    next_event(
        &mut c.events,
        &format!("{}: {what}", c.id),
        Duration::from_secs(15),
        pred,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_members_form_a_mesh_with_chat_mute_camera_and_leave() {
    let server = embedded::start_loopback().await.unwrap();
    let url = format!("ws://{}/ws", server.rooms);
    let mut clients = Vec::new();
    for id in ["ann", "ben", "cat", "dan"] {
        let config = EngineConfig {
            name: id.to_uppercase(),
            bitrate_bps: 300_000,
            udp_addrs: vec!["127.0.0.1:0".into()],
            ..EngineConfig::default()
        };
        let camera = Box::new(SyntheticCamera::new(320, 180, 15.0));
        let mic = Box::new(SyntheticMic::new(Voice::Speech, true));
        let (handle, events) =
            join_room(config, url.clone(), "mesh".into(), id.into(), camera, mic).unwrap();
        clients.push(Client { id, handle, events });
    }
    // Everyone decodes stamped frames from, and hears speech from, all three others.
    for c in &mut clients {
        let mut counts: HashMap<String, usize> = HashMap::new();
        let mut heard: HashMap<String, usize> = HashMap::new();
        let me = c.id;
        until(
            c,
            "10 stamped frames and speech from each other member",
            |e| {
                match e {
                    EngineEvent::FrameDecoded {
                        from,
                        stamp: Some(_),
                        ..
                    } => *counts.entry(from.clone()).or_default() += 1,
                    EngineEvent::AudioPlayout { from, pcm } if rms(pcm) > 0.01 => {
                        *heard.entry(from.clone()).or_default() += 1;
                    }
                    _ => {}
                }
                counts.len() == 3
                    && counts.values().all(|n| *n >= 10)
                    && heard.len() == 3
                    && heard.values().all(|n| *n >= 10)
                    && !counts.contains_key(me)
            },
        )
        .await;
    }
    // Chat from ann reaches ben and cat.
    clients[0]
        .handle
        .send(Command::SendChat("hello mesh".into()))
        .await
        .unwrap();
    for c in &mut clients[1..] {
        until(c, "ann's chat", |e| matches!(e, EngineEvent::Chat { from, text } if from == "ann" && text == "hello mesh")).await;
    }
    // Ben mutes; cat turns the camera off: the others see both.
    clients[1]
        .handle
        .send(Command::SetMuted(true))
        .await
        .unwrap();
    clients[2]
        .handle
        .send(Command::SetCamera(false))
        .await
        .unwrap();
    // The two updates may arrive in either order: watch for both at once.
    let (mut ben_muted, mut cat_off) = (false, false);
    until(&mut clients[0], "ben muted and cat's camera off", |e| {
        match e {
            EngineEvent::PeerState {
                id,
                muted: true,
                name,
                ..
            } if id == "ben" && name == "BEN" => ben_muted = true,
            EngineEvent::PeerState {
                id,
                camera_off: true,
                ..
            } if id == "cat" => cat_off = true,
            _ => {}
        }
        ben_muted && cat_off
    })
    .await;
    until(
        &mut clients[2],
        "ben muted",
        |e| matches!(e, EngineEvent::PeerState { id, muted: true, .. } if id == "ben"),
    )
    .await;
    // With cat's camera off and ben muted, ann keeps getting ben's frames and cat's speech but
    // no new frames from cat and only silence from ben.
    tokio::time::sleep(Duration::from_millis(500)).await;
    while clients[0].events.try_recv().is_ok() {}
    let mut video_from: HashSet<String> = HashSet::new();
    let mut audio_from: HashMap<String, usize> = HashMap::new();
    let mut ben_frames = 0;
    until(
        &mut clients[0],
        "15 more frames from ben and 50 speech ticks from cat",
        |e| {
            match e {
                EngineEvent::FrameDecoded { from, .. } => {
                    video_from.insert(from.clone());
                    if from == "ben" {
                        ben_frames += 1;
                    }
                }
                EngineEvent::AudioPlayout { from, pcm } => {
                    assert_eq!(pcm.len(), 480, "10 ms of 48 kHz audio");
                    if rms(pcm) > 0.001 {
                        *audio_from.entry(from.clone()).or_default() += 1;
                    }
                }
                _ => {}
            }
            ben_frames >= 15 && audio_from.get("cat").is_some_and(|n| *n >= 50)
        },
    )
    .await;
    assert!(
        !video_from.contains("cat"),
        "frames from cat after camera off: {video_from:?}"
    );
    assert!(
        !audio_from.contains_key("ben"),
        "sound from ben while muted: {audio_from:?}"
    );
    // Cat leaves: the others see it, cat goes idle.
    clients[2].handle.send(Command::Leave).await.unwrap();
    until(&mut clients[2], "idle", |e| {
        matches!(e, EngineEvent::State(State::Idle))
    })
    .await;
    for i in [0, 1, 3] {
        until(
            &mut clients[i],
            "cat left",
            |e| matches!(e, EngineEvent::PeerLeft { id } if id == "cat"),
        )
        .await;
    }
    // Ann hangs up on ben alone (`hangup` to one member): those two part, dan keeps both
    // (ben unmuted, so that dan can hear him).
    clients[1]
        .handle
        .send(Command::SetMuted(false))
        .await
        .unwrap();
    clients[0]
        .handle
        .send(Command::HangUp(Some("ben".into())))
        .await
        .unwrap();
    until(
        &mut clients[0],
        "ben hung up on",
        |e| matches!(e, EngineEvent::PeerLeft { id } if id == "ben"),
    )
    .await;
    until(
        &mut clients[1],
        "ann hung up",
        |e| matches!(e, EngineEvent::PeerLeft { id } if id == "ann"),
    )
    .await;
    let mut heard: HashMap<String, usize> = HashMap::new();
    until(
        &mut clients[3],
        "speech from ann and ben after the hang-up",
        |e| {
            match e {
                EngineEvent::PeerLeft { id } => panic!("dan lost {id}"),
                EngineEvent::AudioPlayout { from, pcm } if rms(pcm) > 0.01 => {
                    *heard.entry(from.clone()).or_default() += 1;
                }
                _ => {}
            }
            ["ann", "ben"]
                .iter()
                .all(|id| heard.get(*id).is_some_and(|n| *n >= 10))
        },
    )
    .await;
    for i in [0, 1, 3] {
        clients[i].handle.send(Command::Leave).await.unwrap();
    }
}
