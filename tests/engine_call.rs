//! The engine end to end over loopback, against the real servers and with synthetic media:
//! call quality over 10 s (frames, PSNR, speech correlation, chat), mute / camera / hang-up
//! with nothing left running, random chat among four clients (pairs, next, stop), and a call
//! that outlives a restart of the room server.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use liveloop_e2e::{free_port, next_event};
use liveloop_engine::{
    Command, EngineConfig, EngineEvent, EngineHandle, Media, State, join_room, random_chat,
};
use liveloop_media::quality::{aligned_correlation, psnr, rms};
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice, find_marks};
use liveloop_server::embedded::{self, Embedded};
use liveloop_server::matchmaking::MatchmakingConfig;
use liveloop_server::rooms::RoomsConfig;
use tokio::sync::mpsc;

struct Client {
    name: String,
    handle: EngineHandle,
    events: mpsc::Receiver<EngineEvent>,
}

impl Client {
    async fn until(
        &mut self,
        what: &str,
        mut pred: impl FnMut(&EngineEvent) -> bool,
    ) -> EngineEvent {
        next_event(
            &mut self.events,
            &format!("{}: {what}", self.name),
            Duration::from_secs(20),
            |e| {
                if std::env::var_os("ENGINE_TRACE").is_some()
                    && !matches!(
                        e,
                        EngineEvent::AudioPlayout { .. } | EngineEvent::FrameDecoded { .. }
                    )
                {
                    eprintln!("{}: {e:?}", self.name);
                }
                pred(e)
            },
        )
        .await
    }

    async fn send(&self, command: Command) {
        self.handle.send(command).await.unwrap();
    }
}

fn config(name: &str) -> EngineConfig {
    EngineConfig {
        name: name.to_owned(),
        bitrate_bps: 1_000_000,
        udp_addrs: vec!["127.0.0.1:0".into()],
        ..EngineConfig::default()
    }
}

async fn server_on(rooms_port: u16) -> Embedded {
    liveloop_e2e::start_servers_on(rooms_port).await
}

fn join(url: &str, room: &str, id: &str, camera: SyntheticCamera) -> Client {
    let mic = SyntheticMic::new(Voice::Speech, true);
    let (handle, events) = join_room(
        config(id),
        url.to_owned(),
        room.to_owned(),
        id.to_owned(),
        Box::new(camera),
        Box::new(mic),
    )
    .unwrap();
    Client {
        name: id.to_owned(),
        handle,
        events,
    }
}

/// What one side received from the other over the measured window.
#[derive(Default)]
struct Received {
    numbers: BTreeSet<u32>,
    psnr_min: f64,
    psnr_sum: f64,
    audio: Vec<f32>,
    chat: Vec<String>,
}

/// Correlation of `received` (the playout of a synthetic speaker) with what that speaker sent,
/// per second after delay alignment: a timing mark fixes the phase within a second, the first
/// window finds which second it is, and each later second is aligned on its own (the jitter
/// buffer may stretch or shrink the timeline between seconds, as a real one does).
fn speech_correlation(received: &[f32]) -> Vec<f64> {
    const SEC: usize = 48_000;
    const PAD: usize = 960;
    let mic = SyntheticMic::new(Voice::Speech, true);
    let marks = find_marks(received);
    let onset = *marks
        .iter()
        .find(|m| **m >= SEC)
        .expect("a timing mark after the first second");
    // The speech of each second, without its first 30 ms: that holds the timing mark, a
    // 2.4 kHz burst that is a measuring aid, not speech.
    const SKIP: usize = 1_440;
    let window = |k: u64, at: usize| -> (u64, f64) {
        let reference: Vec<f32> = (SKIP as u64..SEC as u64)
            .map(|n| mic.sample(k * SEC as u64 + n))
            .collect();
        let Some(segment) = received.get(at + SKIP - PAD..at + SEC + PAD) else {
            return (k, f64::NAN);
        };
        (k, aligned_correlation(&reference, segment, 2 * PAD).1)
    };
    let (k0, c0) = (0..40u64)
        .map(|k| window(k, onset))
        .fold((0, f64::MIN), |best, w| if w.1 > best.1 { w } else { best });
    // Each later second is found by its own timing mark: the jitter buffer may stretch or
    // skip 20 ms now and then (that is timing, not speech quality), which would move a window
    // placed by counting seconds from the first mark.
    let mut out = vec![c0];
    for &m in marks.iter().filter(|m| **m > onset + SEC / 2) {
        let k = k0 + ((m - onset + SEC / 2) / SEC) as u64;
        let (_, c) = window(k, m);
        if c.is_nan() {
            break;
        }
        out.push(c);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_for_ten_seconds_meet_the_quality_bar() {
    let server = server_on(0).await;
    let url = format!("ws://{}/ws", server.rooms);
    let camera = SyntheticCamera::new(640, 360, 30.0);
    let mut a = join(&url, "quality", "alice", camera.clone());
    let mut b = join(&url, "quality", "bob", camera.clone());
    for c in [&mut a, &mut b] {
        c.until("connected", |e| {
            matches!(e, EngineEvent::PeerConnected { .. })
        })
        .await;
    }
    // Let the chat channel open, then measure for 10 s with chat both ways.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.send(Command::SendChat("hello bob".into())).await;
    b.send(Command::SendChat("hello alice".into())).await;
    let mut got = [Received::default(), Received::default()];
    for r in &mut got {
        r.psnr_min = f64::MAX;
    }
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        let (i, ev) = tokio::select! {
            Some(ev) = a.events.recv() => (0, ev),
            Some(ev) = b.events.recv() => (1, ev),
            () = tokio::time::sleep(Duration::from_millis(100)) => continue,
        };
        let r = &mut got[i];
        match ev {
            EngineEvent::FrameDecoded {
                frame,
                stamp: Some(stamp),
                ..
            } if r.numbers.insert(stamp.number) => {
                let sent =
                    camera.render(u64::from(stamp.number), u64::from(stamp.capture_ms) * 1000);
                let p = psnr(&sent, &frame);
                r.psnr_min = r.psnr_min.min(p);
                r.psnr_sum += p;
            }
            EngineEvent::AudioPlayout { pcm, .. } => r.audio.extend(pcm),
            EngineEvent::Chat { text, .. } => r.chat.push(text),
            _ => {}
        }
    }
    for (who, r, chat) in [
        ("alice", &got[0], "hello alice"),
        ("bob", &got[1], "hello bob"),
    ] {
        let (first, last) = (*r.numbers.first().unwrap(), *r.numbers.last().unwrap());
        let span = f64::from(last - first + 1);
        let ratio = r.numbers.len() as f64 / span;
        let per_second = speech_correlation(&r.audio);
        // The median second: a second with a playout adjustment inside it (a 20 ms stretch or
        // skip of the jitter buffer) no longer lines up with the reference; twice in full runs
        // one such second scored 0.46 and pulled the mean under 0.9 while the other seconds
        // scored 0.85-0.96. No second may be lost outright, though.
        let mut sorted = per_second.clone();
        sorted.sort_by(f64::total_cmp);
        let corr = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
        let worst = sorted.first().copied().unwrap_or(f64::NAN);
        eprintln!("{who}: speech correlation per second {per_second:.3?}");
        eprintln!(
            "{who}: decoded {} of {span} frames ({:.1}%), PSNR min {:.1} dB mean {:.1} dB, \
             speech correlation {corr:.3}, {:.1} s of audio",
            r.numbers.len(),
            100.0 * ratio,
            r.psnr_min,
            r.psnr_sum / r.numbers.len() as f64,
            r.audio.len() as f64 / 48_000.0
        );
        // 10 s at 30 fps, all but the first frames inside the window.
        assert!(span >= 270.0, "{who} saw frames over only {span} numbers");
        assert!(ratio >= 0.9, "{who} decoded {:.1}%", 100.0 * ratio);
        assert!(r.psnr_min >= 30.0, "{who}: PSNR {:.1} dB", r.psnr_min);
        assert!(
            per_second.len() >= 7,
            "{who}: {} s of speech compared",
            per_second.len()
        );
        assert!(corr >= 0.9, "{who}: speech correlation {corr:.3}");
        assert!(worst >= 0.3, "{who}: a second of speech scored {worst:.3}");
        assert_eq!(r.chat, vec![chat.to_owned()], "{who}'s chat");
    }
    for c in [&a, &b] {
        c.send(Command::Leave).await;
    }
}

/// Threads the engine names: encoders and per-participant decoders.
fn engine_threads() -> Vec<String> {
    let mut names = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        let comm = comm.trim();
        if comm.starts_with("video-encode")
            || comm.starts_with("audio-encode")
            || comm.starts_with("decode-")
        {
            names.push(comm.to_owned());
        }
    }
    names
}

async fn settle<T: PartialEq + std::fmt::Debug>(what: &str, want: T, mut now: impl FnMut() -> T) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = now();
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {got:?}, expected {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Speech frames (RMS above a whisper) from `from` within `window`.
async fn loud_frames(c: &mut Client, from: &str, window: Duration) -> (usize, usize) {
    let (mut loud, mut frames) = (0, 0);
    let end = Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end.into(), c.events.recv()).await {
        match ev {
            EngineEvent::AudioPlayout { from: f, pcm } if f == from && rms(&pcm) > 0.001 => {
                loud += 1;
            }
            EngineEvent::FrameDecoded { from: f, .. } if f == from => frames += 1,
            _ => {}
        }
    }
    (loud, frames)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mute_camera_and_hang_up_leave_no_tasks_or_threads() {
    // The server runs on a runtime of its own, so this runtime counts only the clients' tasks.
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = server_runtime.spawn(server_on(0)).await.unwrap();
    let url = format!("ws://{}/ws", server.rooms);
    let runtime = tokio::runtime::Handle::current();
    let tasks_before = runtime.metrics().num_alive_tasks();
    assert!(engine_threads().is_empty());
    let camera = SyntheticCamera::new(320, 180, 15.0);
    let mut a = join(&url, "controls", "ann", camera.clone());
    let mut b = join(&url, "controls", "ben", camera);
    for c in [&mut a, &mut b] {
        c.until("calling", |e| {
            matches!(e, EngineEvent::State(State::Calling))
        })
        .await;
    }
    let (loud, frames) = loud_frames(&mut b, "ann", Duration::from_secs(1)).await;
    assert!(
        loud > 20 && frames > 5,
        "before: {loud} speech frames, {frames} video frames"
    );
    // Mute: ben sees it, and hears nothing from ann (after what was in flight).
    a.send(Command::SetMuted(true)).await;
    b.until(
        "ann muted",
        |e| matches!(e, EngineEvent::PeerState { id, muted: true, .. } if id == "ann"),
    )
    .await;
    // What was in flight (and the jitter buffer's concealment after it) plays out first: wait
    // for 300 ms of silence, then nothing may be heard for a second.
    let mut quiet = 0;
    b.until("ann's audio to fall silent", |e| {
        if let EngineEvent::AudioPlayout { from, pcm } = e
            && from == "ann"
        {
            quiet = if rms(pcm) > 0.001 { 0 } else { quiet + 1 };
        }
        quiet >= 15
    })
    .await;
    let (loud, _) = loud_frames(&mut b, "ann", Duration::from_secs(1)).await;
    assert_eq!(loud, 0, "speech from ann while muted");
    // Camera off: ben sees it and gets no frames; video and audio come back afterwards.
    a.send(Command::SetCamera(false)).await;
    b.until(
        "ann's camera off",
        |e| matches!(e, EngineEvent::PeerState { id, camera_off: true, .. } if id == "ann"),
    )
    .await;
    // Frames already on their way (held for lip sync, at most 300 ms) arrive first.
    let _ = loud_frames(&mut b, "ann", Duration::from_millis(500)).await;
    let (_, frames) = loud_frames(&mut b, "ann", Duration::from_secs(1)).await;
    assert_eq!(frames, 0, "frames from ann with the camera off");
    a.send(Command::SetMuted(false)).await;
    a.send(Command::SetCamera(true)).await;
    b.until("ann back", |e| {
        matches!(e, EngineEvent::PeerState { id, muted: false, camera_off: false, .. } if id == "ann")
    })
    .await;
    let (loud, frames) = loud_frames(&mut b, "ann", Duration::from_secs(2)).await;
    assert!(
        loud > 20 && frames > 5,
        "after: {loud} speech frames, {frames} video frames"
    );
    // A device change mid-call: ben gets the new camera's frames (a new size, from a keyframe).
    a.send(Command::SetVideoSource(Box::new(SyntheticCamera::new(
        640, 360, 15.0,
    ))))
    .await;
    b.until("frames from ann's new camera", |e| {
        matches!(e, EngineEvent::FrameDecoded { from, frame, stamp: Some(_), .. }
            if from == "ann" && frame.width == 640 && frame.height == 360)
    })
    .await;
    // Hang up: both return to joined, the decoders are gone.
    a.send(Command::HangUp(None)).await;
    a.until("joined after hang-up", |e| {
        matches!(e, EngineEvent::State(State::Joined))
    })
    .await;
    b.until(
        "ann hung up",
        |e| matches!(e, EngineEvent::PeerLeft { id } if id == "ann"),
    )
    .await;
    b.until("joined after hang-up", |e| {
        matches!(e, EngineEvent::State(State::Joined))
    })
    .await;
    settle("decoder threads after hang-up", 0, || {
        engine_threads()
            .iter()
            .filter(|t| t.starts_with("decode-"))
            .count()
    })
    .await;
    // Leave: idle, and nothing of either client keeps running.
    for c in [&mut a, &mut b] {
        c.send(Command::Leave).await;
        c.until("idle", |e| matches!(e, EngineEvent::State(State::Idle)))
            .await;
    }
    settle(
        "engine threads after leaving",
        Vec::<String>::new(),
        engine_threads,
    )
    .await;
    settle(
        &format!("tokio tasks after leaving (before: {tasks_before})"),
        tasks_before,
        || runtime.metrics().num_alive_tasks().max(tasks_before),
    )
    .await;
    server.shutdown();
    server_runtime.shutdown_background();
}

async fn random(server: &Embedded, name: &str) -> Client {
    let media = Media {
        video: Some(Box::new(SyntheticCamera::new(320, 180, 15.0))),
        audio: Some(Box::new(SyntheticMic::new(Voice::Speech, true))),
        speaker: None,
    };
    let (handle, events) = random_chat(config(name), &server.matchmaking_url(), media)
        .await
        .unwrap();
    Client {
        name: name.to_owned(),
        handle,
        events,
    }
}

/// Waits until every client is in a call whose partner sends it frames; returns each
/// client's partner by name.
async fn paired(clients: &mut [Client]) -> HashMap<String, String> {
    let mut partners = HashMap::new();
    for c in clients.iter_mut() {
        let mut partner: Option<String> = None;
        let mut frames = 0;
        c.until("a partner and its video", |e| {
            match e {
                EngineEvent::PeerJoined { name, .. } => {
                    partner.clone_from(name);
                    frames = 0;
                }
                EngineEvent::FrameDecoded { stamp: Some(_), .. } => frames += 1,
                _ => {}
            }
            partner.is_some() && frames >= 10
        })
        .await;
        partners.insert(c.name.clone(), partner.unwrap());
    }
    for (me, other) in &partners {
        assert_eq!(
            partners.get(other),
            Some(me),
            "pairs are mutual: {partners:?}"
        );
    }
    partners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_chat_pairs_four_clients_then_next_and_stop() {
    let server = server_on(0).await;
    let mut clients = Vec::new();
    for name in ["p0", "p1", "p2", "p3"] {
        clients.push(random(&server, name).await);
    }
    let first = paired(&mut clients).await;
    eprintln!("pairs: {first:?}");
    // p0 presses Next, and so does someone from the other pair: everyone is re-paired, and
    // the server's grace keeps ex-partners apart.
    let other_pair = ["p1", "p2", "p3"]
        .into_iter()
        .find(|n| first["p0"] != *n)
        .unwrap();
    // Clients were made in name order: "pN" is clients[N].
    let idx = |n: &str| n[1..].parse::<usize>().unwrap();
    let (p0, q) = (idx("p0"), idx(other_pair));
    clients[p0].send(Command::Next).await;
    clients[q].send(Command::Next).await;
    let second = paired(&mut clients).await;
    eprintln!("pairs after next: {second:?}");
    for (me, partner) in &second {
        assert_ne!(first[me], *partner, "{me} got its old partner back");
    }
    // Stop: the call ends on both sides; p0 stops searching, its partner is queued again.
    let partner = second["p0"].clone();
    clients[p0].send(Command::Stop).await;
    clients[p0]
        .until("joined, not calling", |e| {
            matches!(e, EngineEvent::State(State::Joined))
        })
        .await;
    let pi = idx(&partner);
    clients[pi]
        .until("partner left", |e| {
            matches!(e, EngineEvent::PeerLeft { .. })
        })
        .await;
    clients[pi]
        .until("searching again", |e| {
            matches!(e, EngineEvent::State(State::Connecting))
        })
        .await;
    for c in &clients {
        c.send(Command::Leave).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_call_outlives_a_room_server_restart() {
    let port = free_port().unwrap();
    let server = server_on(port).await;
    let url = format!("ws://{}/ws", server.rooms);
    let camera = SyntheticCamera::new(320, 180, 15.0);
    let mut a = join(&url, "restart", "amy", camera.clone());
    let mut b = join(&url, "restart", "bea", camera);
    for c in [&mut a, &mut b] {
        c.until("calling", |e| {
            matches!(e, EngineEvent::State(State::Calling))
        })
        .await;
    }
    server.shutdown();
    drop(server);
    for c in [&mut a, &mut b] {
        c.until("reconnecting", |e| {
            matches!(e, EngineEvent::State(State::Reconnecting))
        })
        .await;
    }
    // With the server down, frames still flow peer to peer.
    let (_, frames) = loud_frames(&mut b, "amy", Duration::from_secs(1)).await;
    assert!(frames > 5, "{frames} frames while the server was down");
    let _server = server_on(port).await;
    for c in [&mut a, &mut b] {
        c.until("rejoined", |e| matches!(e, EngineEvent::Joined { .. }))
            .await;
        c.until("calling again", |e| {
            matches!(e, EngineEvent::State(State::Calling))
        })
        .await;
    }
    let (loud, frames) = loud_frames(&mut a, "bea", Duration::from_secs(1)).await;
    assert!(
        loud > 20 && frames > 5,
        "after the restart: {loud} speech frames, {frames} frames"
    );
    // The call is the same call: no one left.
    b.send(Command::SendChat("still here".into())).await;
    a.until(
        "chat after the restart",
        |e| matches!(e, EngineEvent::Chat { text, .. } if text == "still here"),
    )
    .await;
    for c in [&a, &b] {
        c.send(Command::Leave).await;
    }
}

fn wall_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// A synthetic microphone that logs when each read happened: the capture time of every sample.
struct TimedMic {
    mic: SyntheticMic,
    next: u64,
    reads: std::sync::Arc<std::sync::Mutex<Vec<(u64, u64)>>>,
}

impl liveloop_media::AudioSource for TimedMic {
    fn read(&mut self, out: &mut [f32]) -> Result<(), liveloop_media::MediaError> {
        self.reads.lock().unwrap().push((self.next, wall_us()));
        for s in out.iter_mut() {
            *s = self.mic.sample(self.next);
            self.next += 1;
        }
        Ok(())
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_and_video_play_in_sync() {
    let server = server_on(0).await;
    let url = format!("ws://{}/ws", server.rooms);
    let reads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mic = TimedMic {
        mic: SyntheticMic::new(Voice::Speech, true),
        next: 0,
        reads: reads.clone(),
    };
    let (sender, _sender_events) = join_room(
        config("sender"),
        url.clone(),
        "sync".into(),
        "sender".into(),
        Box::new(SyntheticCamera::new(640, 360, 30.0)),
        Box::new(mic),
    )
    .unwrap();
    let mut receiver = join(&url, "sync", "viewer", SyntheticCamera::new(160, 90, 15.0));
    receiver
        .until("connected", |e| {
            matches!(e, EngineEvent::PeerConnected { .. })
        })
        .await;
    // 8 s of what the receiver plays and shows, with the wall time it happened.
    let (mut audio, mut audio_times, mut video_lags) = (Vec::new(), Vec::new(), Vec::new());
    let end = Instant::now() + Duration::from_secs(8);
    while let Ok(Some(ev)) = tokio::time::timeout_at(end.into(), receiver.events.recv()).await {
        match ev {
            EngineEvent::AudioPlayout { from, pcm } if from == "sender" => {
                audio_times.push((audio.len(), wall_us()));
                audio.extend(pcm);
            }
            EngineEvent::FrameDecoded {
                from,
                stamp: Some(stamp),
                shown_ms,
                ..
            } if from == "sender" => {
                video_lags.push(f64::from(shown_ms.wrapping_sub(stamp.capture_ms)));
            }
            _ => {}
        }
    }
    // When each timing mark was captured (sample k·48000), from the microphone's read log.
    let reads = reads.lock().unwrap().clone();
    let captured: Vec<u64> = (1..)
        .map(|k: u64| k * 48_000)
        .map_while(|s| {
            reads
                .iter()
                .rev()
                .find(|(start, _)| *start <= s)
                .filter(|(start, _)| s - start < 960)
                .map(|(start, at)| at + (s - start) * 1_000_000 / 48_000)
        })
        .collect();
    // When each mark was played: its playout frame's time plus its place in that frame.
    let mut audio_lags = Vec::new();
    for mark in find_marks(&audio) {
        let Some((start, at)) = audio_times.iter().rev().find(|(s, _)| *s <= mark) else {
            continue;
        };
        let played = at + (mark - start) as u64 * 1_000_000 / 48_000;
        // The capture it belongs to: the latest one before it (marks are 1 s apart).
        if let Some(c) = captured.iter().rev().find(|c| **c <= played) {
            audio_lags.push((played - c) as f64 / 1000.0);
        }
    }
    assert!(audio_lags.len() >= 5, "{} marks heard", audio_lags.len());
    assert!(video_lags.len() >= 150, "{} frames shown", video_lags.len());
    let (audio_lag, video_lag) = (median(&mut audio_lags), median(&mut video_lags));
    let offset = audio_lag - video_lag;
    eprintln!(
        "capture → heard {audio_lag:.1} ms (marks: {audio_lags:.1?}), capture → shown \
         {video_lag:.1} ms: audio trails video by {offset:.1} ms"
    );
    assert!(offset.abs() <= 45.0, "audio and video {offset:.1} ms apart");
    sender.send(Command::Leave).await.unwrap();
    receiver.send(Command::Leave).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_arrive_as_typed_events() {
    use liveloop_engine::{ErrorKind, join_room_with};
    let rooms = RoomsConfig {
        limits: liveloop_core::rooms::Limits {
            max_members: 2,
            ..liveloop_core::rooms::Limits::default()
        },
        ..RoomsConfig::default()
    };
    let server = embedded::start(
        Ipv4Addr::LOCALHOST.into(),
        (0, 0),
        MatchmakingConfig::default(),
        rooms,
    )
    .await
    .unwrap();
    let url = format!("ws://{}/ws", server.rooms);
    let camera = SyntheticCamera::new(160, 90, 15.0);
    let mut a = join(&url, "small", "one", camera.clone());
    let mut b = join(&url, "small", "two", camera.clone());
    for c in [&mut a, &mut b] {
        c.until("joined", |e| matches!(e, EngineEvent::Joined { .. }))
            .await;
    }
    // A third member: the room is full.
    let mut c = join(&url, "small", "three", camera);
    c.until("room full", |e| {
        matches!(
            e,
            EngineEvent::Error {
                kind: ErrorKind::RoomFull,
                ..
            }
        )
    })
    .await;
    // No camera: joining works, turning the camera on is a clear error.
    let (handle, events) = join_room_with(
        config("nocam"),
        url.clone(),
        "other".into(),
        "nocam".into(),
        Media {
            video: None,
            audio: None,
            speaker: None,
        },
    )
    .unwrap();
    let mut nocam = Client {
        name: "nocam".into(),
        handle,
        events,
    };
    nocam
        .until("joined", |e| matches!(e, EngineEvent::Joined { .. }))
        .await;
    nocam.send(Command::SetCamera(true)).await;
    nocam
        .until("no camera", |e| {
            matches!(
                e,
                EngineEvent::Error {
                    kind: ErrorKind::NoDevice,
                    ..
                }
            )
        })
        .await;
    // A server that is not there: an error saying so, and the engine keeps trying.
    let port = free_port().unwrap();
    let mut lost = join(
        &format!("ws://127.0.0.1:{port}/ws"),
        "r",
        "lost",
        SyntheticCamera::new(160, 90, 15.0),
    );
    lost.until("server unreachable", |e| {
        matches!(
            e,
            EngineEvent::Error {
                kind: ErrorKind::ServerUnreachable,
                ..
            }
        )
    })
    .await;
    for x in [&a, &b, &c, &nocam, &lost] {
        x.send(Command::Leave).await;
    }
}

/// A simulated sound card: takes `FRAME` samples from the ring every `period_us` (read each
/// time, so the test can change the device's clock), on an absolute schedule like a real
/// device's, and keeps what it played.
fn simulated_speaker(
    mut drain: liveloop_media::audio::SpeakerDrain,
    period_us: std::sync::Arc<std::sync::atomic::AtomicU64>,
    played: std::sync::Arc<std::sync::Mutex<Vec<f32>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    use std::sync::atomic::Ordering;
    std::thread::spawn(move || {
        let mut next = Instant::now();
        let mut buf = vec![0.0f32; 960];
        while !stop.load(Ordering::Relaxed) {
            next += Duration::from_micros(period_us.load(Ordering::Relaxed));
            if let Some(wait) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            drain.fill(&mut buf);
            played.lock().unwrap().extend_from_slice(&buf);
        }
    })
}

/// The playout runs on the speaker's clock: what the speaker plays is the call's speech, and
/// when the device's clock runs faster than the sender's (here 25 % faster, far beyond real
/// drift, so that it cannot be mistaken for the 20 ms timer) the playout makes frames as fast
/// as the device takes them, not on a timer of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playout_follows_the_speaker_clock() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};
    let server = server_on(0).await;
    let url = format!("ws://{}/ws", server.rooms);
    let (feed, drain) = liveloop_media::audio::speaker_ring(9_600);
    let period = Arc::new(AtomicU64::new(20_000));
    let played = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let device = simulated_speaker(drain, period.clone(), played.clone(), stop.clone());
    let (handle, events) = liveloop_engine::join_room_with(
        config("listener"),
        url.clone(),
        "clock".into(),
        "listener".into(),
        Media {
            video: None,
            audio: None,
            speaker: Some(feed),
        },
    )
    .unwrap();
    let mut listener = Client {
        name: "listener".into(),
        handle,
        events,
    };
    let talker = join(&url, "clock", "talker", SyntheticCamera::new(160, 90, 5.0));
    listener
        .until("connected", |e| {
            matches!(e, EngineEvent::PeerConnected { .. })
        })
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    // At the device's nominal rate, the speaker plays the talker's speech.
    played.lock().unwrap().clear();
    let (loud, _) = loud_frames(&mut listener, "talker", Duration::from_secs(8)).await;
    let heard = std::mem::take(&mut *played.lock().unwrap());
    let per_second = speech_correlation(&heard);
    let mut sorted = per_second.clone();
    sorted.sort_by(f64::total_cmp);
    let corr = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    eprintln!(
        "speaker played {:.1} s, {loud} loud frames; speech correlation per second {per_second:.3?}",
        heard.len() as f64 / 48_000.0
    );
    assert!(
        per_second.len() >= 5,
        "{} s of speech compared",
        per_second.len()
    );
    assert!(corr >= 0.9, "speech on the speaker: correlation {corr:.3}");

    // A device clock 25 % fast: 960 samples every 16 ms.
    period.store(16_000, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Count from now: what was played out while the test slept is not in the window.
    while listener.events.try_recv().is_ok() {}
    let start = played.lock().unwrap().len();
    let window = Duration::from_secs(4);
    // Counted in the device's 20 ms units (the playout ticks every 10 ms).
    let mut samples = 0usize;
    let end = Instant::now() + window;
    while let Ok(Some(ev)) = tokio::time::timeout_at(end.into(), listener.events.recv()).await {
        if let EngineEvent::AudioPlayout { from, pcm } = &ev
            && from == "talker"
        {
            samples += pcm.len();
        }
    }
    let frames = samples / 960;
    let device_frames = (played.lock().unwrap().len() - start) / 960;
    let timer_frames = window.as_millis() as usize / 20;
    eprintln!(
        "device clock 25% fast: {frames} frames played out while the device took {device_frames} \
         (a 20 ms timer would make {timer_frames})"
    );
    assert!(
        frames.abs_diff(device_frames) <= device_frames / 20 + 2,
        "playout made {frames} frames while the device took {device_frames}"
    );
    assert!(
        frames > timer_frames * 11 / 10,
        "playout made {frames} frames, as a 20 ms timer would ({timer_frames})"
    );
    stop.store(true, Ordering::Relaxed);
    device.join().unwrap();
    for c in [&listener, &talker] {
        c.send(Command::Leave).await;
    }
}

/// A participant that comes back under its id from another peer connection (its app
/// restarted: a new DTLS certificate) is a new call, never the old one: the engine ends the
/// old call and takes the new one, whose media then flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_id_with_another_dtls_fingerprint_is_a_new_call() {
    use liveloop_e2e::cli_peer::CliPeer;
    let port = free_port().unwrap();
    let server = server_on(port).await;
    let url = format!("ws://{}/ws", server.rooms);
    // "bob" sorts first: it is the impolite side and offers to "zed" whenever it joins.
    let mut zed = join(&url, "again", "zed", SyntheticCamera::new(320, 180, 15.0));
    let args = ["--video", "synthetic:320x180@15", "--seconds", "60"];
    let mut bob = CliPeer::join(&url, "again", "bob", &args);
    zed.until(
        "bob connected",
        |e| matches!(e, EngineEvent::PeerConnected { id } if id == "bob"),
    )
    .await;
    // Bob's app dies (no goodbye), and while the room server restarts (so that the id is free
    // again) a new bob, with a new certificate, takes its place.
    bob.kill();
    server.shutdown();
    drop(server);
    let _server = server_on(port).await;
    let mut bob_again = CliPeer::join(&url, "again", "bob", &args);
    let mut left = false;
    zed.until(
        "the old call ended and the new one connected",
        |e| match e {
            EngineEvent::PeerLeft { id } if id == "bob" => {
                left = true;
                false
            }
            EngineEvent::PeerConnected { id } if id == "bob" => left,
            _ => false,
        },
    )
    .await;
    bob_again
        .next("connected to zed", Duration::from_secs(20), |e| {
            e["event"] == "peer_connected"
        })
        .await;
    let (loud, frames) = loud_frames(&mut zed, "bob", Duration::from_secs(2)).await;
    assert!(
        loud > 20 && frames > 10,
        "the new call's media: {loud} speech frames, {frames} frames"
    );
    zed.send(Command::Leave).await;
}
