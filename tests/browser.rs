//! Interop with a real browser: Debian's Chromium (headless, fake camera and microphone) runs
//! the browser client the room service serves, and calls native `liveloop-cli` peers in the
//! same rooms.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::PathBuf;
use std::time::Duration;

use liveloop_e2e::browser::Browser;
use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::{artifacts_dir, temp_dir};
use liveloop_media::synthetic::{SyntheticMic, Voice};
use liveloop_proto::rtc_config::RtcConfig;
use liveloop_server::embedded::{self, Embedded};
use liveloop_server::matchmaking::MatchmakingConfig;
use liveloop_server::rooms::RoomsConfig;
use serde_json::Value;

/// The servers on loopback, with no STUN server (there is no internet here: host candidates
/// are all a loopback call needs).
async fn servers() -> Embedded {
    let rooms = RoomsConfig {
        rtc_config: RtcConfig {
            ice_servers: Vec::new(),
            ..RtcConfig::default()
        },
        ..RoomsConfig::default()
    };
    embedded::start(
        std::net::Ipv4Addr::LOCALHOST.into(),
        (0, 0),
        MatchmakingConfig::default(),
        rooms,
    )
    .await
    .unwrap()
}

/// Ten seconds of synthetic speech for Chromium's fake microphone.
fn speech_wav(dir: &std::path::Path) -> PathBuf {
    let mic = SyntheticMic::new(Voice::Speech, false);
    let samples: Vec<f32> = (0..48_000 * 10).map(|n| mic.sample(n)).collect();
    let path = dir.join("speech.wav");
    liveloop_media::file::write_wav(&path, &samples).unwrap();
    path
}

fn browser(label: &str) -> Browser {
    let dir = temp_dir(label).unwrap();
    let wav = speech_wav(&dir);
    let log = artifacts_dir()
        .unwrap()
        .join(format!("{label}-console.log"));
    Browser::start(Some(&wav), &log).unwrap()
}

fn cli_join(server: &Embedded, room: &str, id: &str, extra: &[&str]) -> CliPeer {
    CliPeer::join(&format!("ws://{}/ws", server.rooms), room, id, extra)
}

fn stats_of<'a>(stats: &'a Value, peer: &str) -> &'a Value {
    &stats[peer]
}

const SECOND: Duration = Duration::from_secs(1);

/// The page's view of its calls, for failure messages.
const DIAGNOSE: &str = "return [...state.peers.values()].map((p) => ({ id: p.id, polite: p.polite, \
    signaling: p.pc.signalingState, ice: p.pc.iceConnectionState, gathering: p.pc.iceGatheringState, \
    connection: p.pc.connectionState, collisions: p.collisions, sent: p.candidatesSent, \
    received: p.candidatesReceived, errors: p.candidateErrors, \
    local: p.pc.localDescription?.type, remote: p.pc.remoteDescription?.type, \
    sdp: p.pc.localDescription?.sdp.split('\\r\\n').filter((l) => /^(m=|a=mid|a=ice-ufrag|a=group)/.test(l)) }))";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_a_native_peer_call_with_h264_opus_and_chat() {
    let server = servers().await;
    let b = browser("browser-1to1");
    let base = format!("http://{}", server.rooms);
    b.open("web", &format!("{base}/r/interop?id=b-web"))
        .await
        .unwrap();
    b.eval(
        "web",
        r#"state.name = "Chromium"; return connect("interop", "b-web")"#,
    )
    .await
    .unwrap();
    b.wait("web", "return state.roomState === 'joined'", 10 * SECOND)
        .await
        .unwrap();
    let mut native = cli_join(
        &server,
        "interop",
        "a-native",
        &[
            "--video",
            "synthetic:640x360@30",
            "--chat",
            "hello from native",
            "--seconds",
            "40",
        ],
    );
    native
        .next("connected", 20 * SECOND, |e| e["event"] == "peer_connected")
        .await;
    // Chromium decodes the native H.264 (the codec both sides agreed) for 10 s.
    let first = b
        .wait(
            "web",
            "const s = (await callStats())['a-native']; \
             return s && s.video.framesDecoded > 30 && s",
            20 * SECOND,
        )
        .await
        .unwrap();
    let t0 = std::time::Instant::now();
    tokio::time::sleep(10 * SECOND).await;
    let stats = b.eval("web", "return await callStats()").await.unwrap();
    let elapsed = t0.elapsed().as_secs_f64();
    let s = stats_of(&stats, "a-native");
    eprintln!("Chromium's view of the native peer: {s}");
    assert_eq!(s["video"]["codecIn"], "video/H264");
    let fmtp = s["video"]["fmtpIn"].as_str().unwrap();
    assert!(
        fmtp.contains("packetization-mode=1") && fmtp.contains("profile-level-id=42e01f"),
        "{fmtp}"
    );
    assert_eq!(s["audio"]["codecIn"], "audio/opus");
    assert_eq!(
        s["video"]["codecOut"], "video/H264",
        "Chromium sends H.264 too"
    );
    let decoded = s["video"]["framesDecoded"].as_f64().unwrap()
        - first["video"]["framesDecoded"].as_f64().unwrap();
    let fps = decoded / elapsed;
    eprintln!("Chromium decoded {decoded} native frames in {elapsed:.1} s: {fps:.1} fps");
    assert!(
        fps >= 25.0,
        "Chromium decoded the native video at {fps:.1} fps"
    );
    assert!(
        s["audio"]["totalAudioEnergy"].as_f64().unwrap() > 0.01,
        "Chromium hears the native peer"
    );

    // Chat both ways.
    b.wait(
        "web",
        "return state.chat.some((m) => m.from === 'a-native' && m.text === 'hello from native')",
        5 * SECOND,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("web", "return sendChat('hello from Chromium')")
            .await
            .unwrap(),
        1
    );
    native
        .next("Chromium's chat", 5 * SECOND, |e| {
            e["event"] == "chat" && e["from"] == "b-web" && e["text"] == "hello from Chromium"
        })
        .await;

    // Chromium hangs up; what it sent until then is what the native peer could decode.
    let sent = b
        .eval(
            "web",
            "const s = (await callStats())['a-native']; hangupPeer('a-native'); return s",
        )
        .await
        .unwrap();
    native
        .next("Chromium's hang-up", 5 * SECOND, |e| {
            e["event"] == "peer_left"
        })
        .await;
    let frames_sent = sent["video"]["framesSent"].as_f64().unwrap();
    let events = native.all();
    let decoded = events
        .iter()
        .filter(|e| e["event"] == "frame" && e["from"] == "b-web")
        .count() as f64;
    let heard = events
        .iter()
        .filter(|e| {
            e["event"] == "audio" && e["from"] == "b-web" && e["rms"].as_f64().unwrap() > 0.01
        })
        .count();
    let seconds_in_call = events
        .iter()
        .filter(|e| e["event"] == "audio" && e["from"] == "b-web")
        .count();
    eprintln!(
        "the native peer decoded {decoded} of Chromium's {frames_sent} frames ({}x{}), heard {heard} of {seconds_in_call} s",
        sent["video"]["sentWidth"], sent["video"]["sentHeight"]
    );
    assert!(frames_sent > 100.0, "Chromium sent {frames_sent} frames");
    assert!(
        decoded >= 0.9 * frames_sent,
        "decoded {decoded} of {frames_sent}"
    );
    assert!(
        heard + 2 >= seconds_in_call && heard >= 8,
        "the native peer heard Chromium in {heard} of {seconds_in_call} s"
    );
    b.screenshot("web", &artifacts_dir().unwrap().join("browser-1to1.png"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_and_a_native_peer_calling_at_the_same_moment_get_one_call() {
    let server = servers().await;
    let b = browser("browser-glare");
    let base = format!("http://{}", server.rooms);
    b.open("web", &format!("{base}/r/glare")).await.unwrap();
    // Chromium joins, then the native peer: the native side calls the moment it sees Chromium
    // in the member list (its id sorts first: it is the impolite side), and Chromium calls
    // (callPeer) the moment it sees the native peer in the same list.
    b.eval(
        "web",
        r#"const original = onMembers;
           onMembers = function (members) {
             original(members);
             if (members.includes("a-native") && !window.called) {
               window.called = true;
               callPeer("a-native");
             }
           };
           return connect("glare", "z-web")"#,
    )
    .await
    .unwrap();
    b.wait("web", "return state.roomState === 'joined'", 10 * SECOND)
        .await
        .unwrap();
    let mut native = cli_join(
        &server,
        "glare",
        "a-native",
        &["--video", "synthetic:320x180@30", "--seconds", "30"],
    );
    let connected = tokio::time::timeout(20 * SECOND, async {
        while let Some(e) = native.events.recv().await {
            if e["event"] == "peer_connected" {
                return;
            }
        }
    })
    .await;
    if connected.is_err() {
        let page = b.eval("web", DIAGNOSE).await.unwrap_or_default();
        let seen: Vec<String> = native
            .all()
            .iter()
            .filter(|e| e["event"] != "audio")
            .map(ToString::to_string)
            .collect();
        panic!("no call after the collision; the page: {page:#}\nthe native peer: {seen:#?}");
    }
    let s = b
        .wait(
            "web",
            "const s = (await callStats())['a-native']; \
             return s && s.state === 'connected' && s.video.framesDecoded > 30 && s",
            20 * SECOND,
        )
        .await
        .unwrap();
    eprintln!("after the collision: {s}");
    assert!(
        s["collisions"].as_u64().unwrap() >= 1,
        "both sides offered at once (the browser saw the native offer cross its own)"
    );
    assert_eq!(
        b.eval("web", "return state.peers.size").await.unwrap(),
        1,
        "one call"
    );
    // Chat works on it (the channel the native side brought).
    b.wait(
        "web",
        "return state.peers.get('a-native')?.dc?.readyState === 'open'",
        10 * SECOND,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("web", "return sendChat('after the collision')")
            .await
            .unwrap(),
        1
    );
    native
        .next("chat after the collision", 5 * SECOND, |e| {
            e["event"] == "chat" && e["text"] == "after the collision"
        })
        .await;
    // Media flows both ways on that one call.
    tokio::time::sleep(2 * SECOND).await;
    let frames = native
        .all()
        .iter()
        .filter(|e| e["event"] == "frame" && e["from"] == "z-web")
        .count();
    assert!(frames > 20, "the native peer decoded {frames} frames");
    assert_eq!(
        native
            .all()
            .iter()
            .filter(|e| e["event"] == "peer_connected")
            .count(),
        1,
        "the native peer connected once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_chromium_pages_and_two_native_peers_all_receive_each_other() {
    let server = servers().await;
    let b = browser("browser-mesh");
    let base = format!("http://{}", server.rooms);
    for page in ["web1", "web2"] {
        b.open(page, &format!("{base}/r/mesh")).await.unwrap();
        b.eval(
            page,
            &format!(
                "state.name = '{page}'; \
                 state.videoConstraints = {{ width: 320, height: 180, frameRate: 15 }}; \
                 return connect('mesh', '{page}')"
            ),
        )
        .await
        .unwrap();
    }
    let natives: Vec<CliPeer> = ["native1", "native2"]
        .iter()
        .map(|id| {
            cli_join(
                &server,
                "mesh",
                id,
                &[
                    "--video",
                    "synthetic:320x180@15",
                    "--bitrate",
                    "300",
                    "--seconds",
                    "30",
                ],
            )
        })
        .collect();
    let everyone = ["web1", "web2", "native1", "native2"];
    for page in ["web1", "web2"] {
        let others: Vec<&str> = everyone.iter().copied().filter(|o| *o != page).collect();
        let deadline = std::time::Instant::now() + 40 * SECOND;
        let s = loop {
            let s = b.eval(page, "return await callStats()").await.unwrap();
            let done = others.iter().all(|o| {
                s[o]["video"]["framesDecoded"].as_u64().unwrap_or(0) > 30
                    && s[o]["audio"]["totalSamplesReceived"].as_u64().unwrap_or(0) > 48_000
            });
            if done {
                break s;
            }
            if std::time::Instant::now() > deadline {
                for n in &natives {
                    let seen: Vec<String> = n
                        .all()
                        .iter()
                        .filter(|e| e["event"] != "frame" && e["event"] != "audio")
                        .map(ToString::to_string)
                        .collect();
                    eprintln!("{}: {seen:#?}", n.name);
                }
                panic!("{page} does not receive everyone: {s:#}");
            }
            tokio::time::sleep(SECOND / 2).await;
        };
        for o in &others {
            eprintln!(
                "{page} ← {o}: {} frames, {} audio samples",
                s[o]["video"]["framesDecoded"], s[o]["audio"]["totalSamplesReceived"]
            );
        }
    }
    b.screenshot("web1", &artifacts_dir().unwrap().join("browser-mesh.png"))
        .await
        .unwrap();
    // The native peers, until they leave (--seconds), decode video and hear speech from all.
    for native in natives {
        let me = native.name.clone();
        let events = native.finish(60 * SECOND).await.unwrap();
        for other in everyone.iter().filter(|o| **o != me) {
            let frames = events
                .iter()
                .filter(|e| e["event"] == "frame" && e["from"] == *other)
                .count();
            let heard = events
                .iter()
                .filter(|e| {
                    e["event"] == "audio"
                        && e["from"] == *other
                        && e["rms"].as_f64().unwrap() > 0.01
                })
                .count();
            eprintln!("{me} ← {other}: {frames} frames, {heard} s of sound");
            assert!(frames > 30, "{me} decoded {frames} frames from {other}");
            assert!(heard >= 3, "{me} heard {other} for {heard} s");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_client_serves_seed_001s_api() {
    let server = servers().await;
    let base = format!("http://{}", server.rooms);
    // The files the seed lists, with their types; the room link serves the page.
    for (path, kind) in [
        ("/", "text/html"),
        ("/r/api-room", "text/html"),
        ("/styles.css", "text/css"),
        ("/app.js", "application/javascript"),
        ("/app.rtc.js", "application/javascript"),
        ("/app.media.js", "application/javascript"),
        ("/app.ui.js", "application/javascript"),
        ("/config.js", "application/javascript"),
    ] {
        let resp = ureq::get(&format!("{base}{path}")).call().unwrap();
        let ct = resp
            .headers()
            .get("content-type")
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
    }
    for path in ["/app.nope.js", "/index.html", "/r/", "/r/a/b"] {
        let err = ureq::get(&format!("{base}{path}")).call().unwrap_err();
        assert!(matches!(err, ureq::Error::StatusCode(404)), "{path}: {err}");
    }

    let b = browser("browser-api");
    b.open("web", &format!("{base}/r/api-room")).await.unwrap();
    // The state object, before joining.
    let s = b
        .eval(
            "web",
            "return { keys: Object.keys(state), peersIsMap: state.peers instanceof Map, \
              roomState: state.roomState, ws: state.ws, \
              fns: ['connect','disconnect','callPeer','hangupPeer','hangupAll','toggleMute', \
                'toggleCamera','startScreenShare','stopScreenShare','startRecording', \
                'stopRecording','sendChat','setRoomState'].filter((f) => typeof window[f] !== 'function') }",
        )
        .await
        .unwrap();
    for key in [
        "myId",
        "ws",
        "roomId",
        "roomState",
        "localStream",
        "screenStream",
        "usingScreen",
        "muted",
        "cameraOff",
        "peers",
        "recorder",
        "recordedChunks",
    ] {
        assert!(
            s["keys"].as_array().unwrap().iter().any(|k| k == key),
            "state.{key}"
        );
    }
    assert_eq!(s["peersIsMap"], true);
    assert_eq!(s["roomState"], "idle");
    assert_eq!(s["ws"], Value::Null);
    assert_eq!(s["fns"], serde_json::json!([]), "missing functions");

    // Bad input: a clear error, nothing joined.
    let bad = b
        .eval("web", "const ok = await connect('no spaces!', 'me'); return {ok, err: state.lastError, rs: state.roomState}")
        .await
        .unwrap();
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["err"]["code"], "invalid_room");
    assert_eq!(bad["rs"], "idle");
    let bad = b
        .eval("web", "const ok = await connect('api-room', 'no spaces!'); return {ok, err: state.lastError, rs: state.roomState}")
        .await
        .unwrap();
    assert_eq!(bad["ok"], false);
    assert_eq!(bad["err"]["code"], "invalid_id");
    assert_eq!(bad["rs"], "idle");

    // `?id=` and `?name=` prefill the join form.
    b.open("prefill", &format!("{base}/r/prefill-room?id=pre&name=Pat"))
        .await
        .unwrap();
    b.eval(
        "prefill",
        "document.getElementById('join-form').requestSubmit(); return true",
    )
    .await
    .unwrap();
    b.wait(
        "prefill",
        "return state.roomState === 'joined' && state.myId === 'pre' && state.name === 'Pat' \
         && state.roomId === 'prefill-room'",
        10 * SECOND,
    )
    .await
    .unwrap();
    b.eval("prefill", "disconnect(); return true")
        .await
        .unwrap();

    // The setRoomState hook sees every change; connect joins.
    b.eval(
        "web",
        "window.seen = []; const original = setRoomState; \
         setRoomState = function (s) { seen.push(s); original(s); }; \
         return connect('api-room', 'web')",
    )
    .await
    .unwrap();
    b.wait("web", "return state.roomState === 'joined'", 10 * SECOND)
        .await
        .unwrap();
    // "Open in the LiveLoop app" hands this room to the app.
    let want = format!("liveloop://join/api-room?server=ws://{}/ws", server.rooms);
    assert_eq!(
        b.eval(
            "web",
            "return [document.getElementById('open-app').href, appLink()]"
        )
        .await
        .unwrap(),
        serde_json::json!([want, want])
    );
    assert_eq!(
        b.eval(
            "web",
            "return [state.myId, state.roomId, state.ws instanceof WebSocket]"
        )
        .await
        .unwrap(),
        serde_json::json!(["web", "api-room", true])
    );

    let mut native = cli_join(
        &server,
        "api-room",
        "native",
        &["--video", "synthetic:320x180@30", "--seconds", "90"],
    );
    native
        .next("connected", 20 * SECOND, |e| e["event"] == "peer_connected")
        .await;
    b.wait("web", "return state.roomState === 'calling'", 10 * SECOND)
        .await
        .unwrap();
    assert_eq!(
        b.eval("web", "return seen").await.unwrap(),
        serde_json::json!(["connecting", "joined", "calling"])
    );

    // Mute and camera: the native peer is told (the data channel's state message).
    assert_eq!(b.eval("web", "return toggleMute()").await.unwrap(), true);
    native
        .next("muted", 5 * SECOND, |e| {
            e["event"] == "peer_state" && e["muted"] == true
        })
        .await;
    assert_eq!(b.eval("web", "return toggleMute()").await.unwrap(), false);
    native
        .next("unmuted", 5 * SECOND, |e| {
            e["event"] == "peer_state" && e["muted"] == false
        })
        .await;
    assert_eq!(b.eval("web", "return toggleCamera()").await.unwrap(), true);
    native
        .next("camera off", 5 * SECOND, |e| {
            e["event"] == "peer_state" && e["cameraOff"] == true
        })
        .await;
    assert_eq!(b.eval("web", "return toggleCamera()").await.unwrap(), false);
    native
        .next("camera on", 5 * SECOND, |e| {
            e["event"] == "peer_state" && e["cameraOff"] == false
        })
        .await;

    // Screen share replaces the camera in the call; the native peer decodes it.
    let started = b.eval("web", "return startScreenShare()").await.unwrap();
    assert_eq!(started, true, "getDisplayMedia gave a stream");
    assert_eq!(
        b.eval(
            "web",
            "return [state.usingScreen, state.screenStream instanceof MediaStream]"
        )
        .await
        .unwrap(),
        serde_json::json!([true, true])
    );
    let before = native
        .all()
        .iter()
        .filter(|e| e["event"] == "frame")
        .count();
    tokio::time::sleep(2 * SECOND).await;
    let during = native
        .all()
        .iter()
        .filter(|e| e["event"] == "frame")
        .count();
    assert!(
        during > before + 10,
        "frames kept coming during the share ({before} → {during})"
    );
    assert_eq!(
        b.eval("web", "return stopScreenShare()").await.unwrap(),
        true
    );
    assert_eq!(
        b.eval("web", "return [state.usingScreen, state.screenStream]")
            .await
            .unwrap(),
        serde_json::json!([false, null])
    );
    // Ending the share from the browser's own control ends it here too.
    assert_eq!(
        b.eval("web", "return startScreenShare()").await.unwrap(),
        true
    );
    b.eval(
        "web",
        "const t = state.screenStream.getVideoTracks()[0]; t.stop(); \
         t.dispatchEvent(new Event('ended')); return true",
    )
    .await
    .unwrap();
    b.wait(
        "web",
        "return state.usingScreen === false && state.screenStream === null",
        5 * SECOND,
    )
    .await
    .unwrap();

    // Recording: a file with the call's video and audio is downloaded.
    assert_eq!(
        b.eval("web", "return startRecording()").await.unwrap(),
        true
    );
    assert_eq!(
        b.eval("web", "return state.recorder !== null")
            .await
            .unwrap(),
        true
    );
    tokio::time::sleep(3 * SECOND).await;
    let dir = temp_dir("browser-recording").unwrap();
    let got = b
        .download("web", "return stopRecording()", &dir)
        .await
        .unwrap();
    let path = PathBuf::from(got["path"].as_str().unwrap());
    eprintln!("recording: {got}");
    assert!(
        path.file_name()
            .unwrap()
            .to_string_lossy()
            .contains("api-room")
    );
    assert!(got["size"].as_u64().unwrap() > 10_000, "{got}");
    assert_eq!(
        b.eval("web", "return state.recorder").await.unwrap(),
        Value::Null
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe (the test command installs ffmpeg)");
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    assert!(
        streams.contains("video") && streams.contains("audio"),
        "{streams}"
    );

    // Chat.
    assert_eq!(
        b.eval("web", "return sendChat('api chat')").await.unwrap(),
        1
    );
    native
        .next("chat", 5 * SECOND, |e| {
            e["event"] == "chat" && e["text"] == "api chat"
        })
        .await;
    assert_eq!(
        b.eval("web", "return sendChat('')").await.unwrap(),
        0,
        "empty chat refused"
    );
    assert_eq!(
        b.eval("web", "return sendChat('x'.repeat(1001))")
            .await
            .unwrap(),
        0,
        "chat over 1000 characters refused"
    );
    // Reading the data channel as the native client does (crates/proto/src/peer.rs): chat
    // cut at 1000 characters, empty chat ignored, a field of the wrong type ignores the
    // message.
    let read = b
        .eval(
            "web",
            "const p = state.peers.get('native'); const feed = (m) => p.dc.onmessage({ data: JSON.stringify(m) }); \
             const chats = state.chat.length, name = p.name; \
             feed({ type: 'chat', text: 'é'.repeat(2000) }); feed({ type: 'chat', text: '' }); feed({ type: 'chat' }); \
             feed({ type: 'state', name: 'Mallory', muted: 'yes' }); \
             return { added: state.chat.length - chats, last: Array.from(state.chat.at(-1).text).length, \
               nameKept: p.name === name, muted: p.muted }",
        )
        .await
        .unwrap();
    assert_eq!(
        read,
        serde_json::json!({"added": 1, "last": 1000, "nameKept": true, "muted": false})
    );

    // Hang up, call again (the native peer takes the call), hang up everyone.
    assert_eq!(
        b.eval("web", "return hangupPeer('native')").await.unwrap(),
        true
    );
    native
        .next("hang-up", 5 * SECOND, |e| e["event"] == "peer_left")
        .await;
    b.wait(
        "web",
        "return state.roomState === 'joined' && state.peers.size === 0",
        5 * SECOND,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("web", "return callPeer('native')").await.unwrap(),
        true
    );
    native
        .next("called again", 20 * SECOND, |e| {
            e["event"] == "peer_connected"
        })
        .await;
    b.wait(
        "web",
        "return state.roomState === 'calling' && state.peers.get('native')?.dc?.readyState === 'open'",
        10 * SECOND,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("web", "return sendChat('called back')")
            .await
            .unwrap(),
        1
    );
    native
        .next("chat after calling back", 5 * SECOND, |e| {
            e["event"] == "chat" && e["text"] == "called back"
        })
        .await;
    assert_eq!(
        b.eval("web", "return callPeer('nobody')").await.unwrap(),
        false
    );
    b.eval("web", "hangupAll(); return null").await.unwrap();
    native
        .next("hang-up of all", 5 * SECOND, |e| e["event"] == "peer_left")
        .await;

    // Disconnect leaves the room.
    b.eval("web", "disconnect(); return null").await.unwrap();
    assert_eq!(
        b.eval(
            "web",
            "return [state.roomState, state.ws, state.peers.size, state.localStream]"
        )
        .await
        .unwrap(),
        serde_json::json!(["idle", null, 0, null])
    );
    b.screenshot(
        "web",
        &artifacts_dir().unwrap().join("browser-api-idle.png"),
    )
    .await
    .unwrap();
}
