//! The app in calls, driven through its window (tauri-driver + WebKitWebDriver under Xvfb)
//! against the real servers and a `liveloop-cli` peer: a room by link (video both ways, the
//! remote tile's pixels moving, audio, chat both ways, mute, camera, hang up), a test call
//! with the in-app echo peer, then random chat (connect, Next, Stop). Screenshots of each view
//! are saved.

// Test code: indexing JSON values (Null when absent) and failing loudly are intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::webdriver::Session;
use liveloop_e2e::{ChildGuard, artifacts_dir, wait_for, workspace_bin};
use liveloop_server::embedded;
use serde_json::{Value, json};

fn js(s: &Session, script: &str) -> Value {
    s.execute(script, &[]).unwrap()
}

/// Clicks `css` like a user. WebKitWebDriver now and then answers "element not interactable"
/// while the layout is changing (a view just swapped); the click is retried for up to 2 s.
fn click(s: &Session, css: &str) {
    wait_for(
        &format!("{css} to take a click"),
        Duration::from_secs(2),
        || s.click(&s.find(css).ok()?).ok(),
    )
    .unwrap();
}

fn shot(s: &Session, name: &str) {
    let path = artifacts_dir().unwrap().join(name);
    s.screenshot(&path).unwrap();
    assert!(
        std::fs::metadata(&path).unwrap().len() > 1000,
        "empty screenshot"
    );
    eprintln!("screenshot: {}", path.display());
}

fn wait_view(s: &Session, view: &str) {
    wait_for(&format!("the {view} view"), Duration::from_secs(20), || {
        (js(s, "return document.body.dataset.view") == view).then_some(())
    })
    .unwrap();
}

/// Waits until the tile of a remote participant (not `self`) has drawn `frames` frames;
/// returns its id.
fn remote_tile(s: &Session, frames: u64) -> String {
    let found = wait_for(
        "a remote tile drawing video",
        Duration::from_secs(30),
        || {
            let tiles = js(s, "return window.__liveloop.tiles()");
            tiles.as_object()?.iter().find_map(|(id, t)| {
                (id != "self" && t["frames"].as_u64().unwrap_or(0) >= frames).then(|| id.clone())
            })
        },
    );
    found.unwrap_or_else(|e| {
        shot(s, "app-failure.png");
        let info = js(
            s,
            "return {tiles: window.__liveloop.tiles(), state: window.__liveloop.state, \
             peers: window.__liveloop.peers(), toast: document.getElementById('toast').textContent, \
             listen: window.__liveloop.listenError ?? null}",
        );
        panic!("{e:#}: {info}");
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_calls_a_cli_peer_in_a_room_and_in_random_chat() {
    let server = embedded::start_loopback().await.unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let recordings = liveloop_e2e::temp_dir("app-recordings").unwrap();
    let settings = json!({
        "displayName": "App User",
        "matchmakingUrl": server.matchmaking_url(),
        "roomsUrl": server.rooms_url(),
        "recordingDir": recordings,
        // Issue 19: the Settings switch reaches the engine (checked in the test call).
        "noiseSuppression": false,
    });
    let env = [
        ("LIVELOOP_VIDEO", "synthetic:640x360@30"),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let (_driver, s, _dir) =
        liveloop_e2e::app::open_app("app-call", &env, Some(&settings)).unwrap();
    wait_view(&s, "home");
    shot(&s, "app-home.png");

    // --- The device check: camera picture, microphone level, test sound, your picture.
    click(&s, "#check-devices");
    wait_for("the camera preview", Duration::from_secs(20), || {
        (js(&s, "return window.__liveloop.previewFrames()").as_u64()? > 5).then_some(())
    })
    .unwrap();
    wait_for("the microphone level", Duration::from_secs(10), || {
        (js(&s, "return document.getElementById('level').value").as_f64()? > -40.0).then_some(())
    })
    .unwrap();
    click(&s, "#test-sound");
    click(&s, "#take-picture");
    wait_for("the picture saved", Duration::from_secs(10), || {
        let settings = std::fs::read_to_string(_dir.join("settings.json")).ok()?;
        let v: Value = serde_json::from_str(&settings).ok()?;
        v["avatar"]
            .as_str()?
            .starts_with("data:image/jpeg;base64,")
            .then_some(())
    })
    .unwrap();
    shot(&s, "app-device-check.png");
    let toast = js(&s, "return document.getElementById('toast').className");
    assert_ne!(toast, "error", "the check showed an error");

    // --- A room, by link, with a CLI peer sending synthetic video and chat.
    let cli = CliPeer::spawn(
        "app-room-peer",
        &[
            "join",
            "--server",
            &ws,
            "--room",
            "app-room",
            "--id",
            "cli",
            "--name",
            "CLI Peer",
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            "120",
            "--chat",
            "hello app",
        ],
    )
    .unwrap();
    let link = format!("liveloop://join/app-room?server={ws}");
    s.execute(
        "document.getElementById('join-link').value = arguments[0]",
        &[json!(link)],
    )
    .unwrap();
    click(&s, "#join-room");
    wait_view(&s, "call");
    // Private mode is off by default in rooms: nothing to say.
    assert_eq!(
        js(&s, "return document.getElementById('private-state').hidden"),
        true
    );
    let remote = remote_tile(&s, 10);
    assert_eq!(remote, "cli");
    // The remote tile's pixels change from frame to frame: a checksum is taken after the next
    // draw each time one is asked for.
    let checksum = || {
        js(&s, "window.__liveloop.checksum('cli')");
        std::thread::sleep(Duration::from_millis(300));
        js(&s, "return window.__liveloop.checksum('cli')")
    };
    let (first, second) = (checksum(), checksum());
    assert!(
        first.is_u64() && second.is_u64(),
        "no checksum: {first} {second}"
    );
    assert_ne!(first, second, "the remote picture does not move");
    // The CLI talks (the app's own microphone is synthetic speech too): someone is marked as
    // the active speaker.
    wait_for("an active speaker", Duration::from_secs(10), || {
        let n = js(
            &s,
            "return document.querySelectorAll('.tile.speaking').length",
        );
        (n.as_u64()? == 1).then_some(())
    })
    .unwrap();
    // The CLI receives the app's video and speech.
    let app_id = cli.seen("the app's frames", |v| {
        v["event"] == "frame"
            && v["from"]
                .as_str()
                .is_some_and(|f| f.starts_with("AppUser-"))
    })["from"]
        .as_str()
        .unwrap()
        .to_owned();
    cli.seen("the app's speech", |v| {
        v["event"] == "audio" && v["from"] == app_id.as_str() && v["rms"].as_f64().unwrap() > 0.01
    });
    // Chat both ways.
    wait_for("the CLI's chat in the app", Duration::from_secs(20), || {
        let m = js(&s, "return window.__liveloop.messages()");
        m.as_array()?.iter().any(|t| t == "hello app").then_some(())
    })
    .unwrap();
    s.execute(
        "document.getElementById('chat-input').value = 'hello cli'",
        &[],
    )
    .unwrap();
    click(&s, "#chat-form button");
    cli.seen("the app's chat", |v| {
        v["event"] == "chat" && v["text"] == "hello cli"
    });
    // The CLI's name and the self tile.
    wait_for(
        "the CLI's name on its tile",
        Duration::from_secs(10),
        || {
            let text = s.text(&s.find("[data-id='cli'] .name").ok()?).ok()?;
            (text == "CLI Peer").then_some(())
        },
    )
    .unwrap();
    shot(&s, "app-room-call.png");
    // Mute and camera off show at the CLI.
    click(&s, "#btn-mute");
    cli.seen("the app muted", |v| {
        v["event"] == "peer_state" && v["id"] == app_id.as_str() && v["muted"] == true
    });
    click(&s, "#btn-camera");
    cli.seen("the app's camera off", |v| {
        v["event"] == "peer_state" && v["id"] == app_id.as_str() && v["cameraOff"] == true
    });
    click(&s, "#quality");
    wait_for("stats in the panel", Duration::from_secs(10), || {
        let rows = js(
            &s,
            "return document.querySelectorAll('#stats-body tr').length",
        );
        (rows.as_u64()? >= 1).then_some(())
    })
    .unwrap();
    // The send side: what we send and the estimate it fits (the camera is off now: no video,
    // audio at its rate).
    wait_for(
        "the send line in the panel",
        Duration::from_secs(10),
        || {
            let line = js(
                &s,
                "return document.getElementById('stats-send').textContent",
            );
            let line = line.as_str()?.to_owned();
            line.contains("audio 64 kb/s").then_some(line)
        },
    )
    .unwrap();
    shot(&s, "app-room-muted-stats.png");
    // Record three seconds of the call: a file named after the room and the time, that
    // ffprobe reads, in the folder from Settings.
    click(&s, "#btn-record");
    wait_for("recording", Duration::from_secs(5), || {
        (js(
            &s,
            "return document.getElementById('btn-record').getAttribute('aria-pressed')",
        ) == "true")
            .then_some(())
    })
    .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    click(&s, "#btn-record");
    let saved = wait_for("the saved recording", Duration::from_secs(10), || {
        let v = js(&s, "return window.__liveloop.lastRecording ?? null");
        (!v.is_null()).then_some(v)
    })
    .unwrap();
    eprintln!("the app recorded {saved}");
    let path = std::path::PathBuf::from(saved["path"].as_str().unwrap());
    assert!(path.starts_with(&recordings), "{path:?}");
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.starts_with("LiveLoop app-room ") && name.ends_with(".mkv"),
        "{name}"
    );
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "format=duration",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .unwrap();
    let seconds: f64 = String::from_utf8_lossy(&probe.stdout)
        .trim()
        .parse()
        .unwrap();
    assert!(
        probe.status.success() && (2.5..6.0).contains(&seconds),
        "{seconds} s"
    );

    // Share the screen from the picker (screens and windows with thumbnails): the CLI gets it
    // as a second stream at the screen's size; stopping ends it there too.
    click(&s, "#btn-share");
    wait_for("the share picker", Duration::from_secs(20), || {
        (js(
            &s,
            "return document.querySelectorAll('#share-list button').length",
        )
        .as_u64()?
            >= 1)
            .then_some(())
    })
    .unwrap();
    assert_eq!(
        js(
            &s,
            "return document.querySelector('#share-list img')?.src.startsWith('data:image/jpeg') ?? false"
        ),
        true,
        "the picker shows a thumbnail"
    );
    shot(&s, "app-share-picker.png");
    click(&s, "#share-list button[data-id^='monitor:']");
    let screen_id = format!("{app_id}#screen");
    cli.seen("the app's shared screen", |v| {
        v["event"] == "frame" && v["from"] == screen_id.as_str() && v["width"] == 1920
    });
    cli.seen("the app sharing", |v| {
        v["event"] == "peer_state" && v["id"] == app_id.as_str() && v["screen"] == true
    });
    shot(&s, "app-sharing.png");
    click(&s, "#btn-share");
    cli.seen("the app's share ended", |v| {
        v["event"] == "peer_state" && v["id"] == app_id.as_str() && v["screen"] == false
    });
    wait_for("the Share button back", Duration::from_secs(5), || {
        (js(
            &s,
            "return document.getElementById('btn-share').getAttribute('aria-pressed')",
        ) == "false")
            .then_some(())
    })
    .unwrap();
    // Hang up: back home; the CLI sees the app leave.
    click(&s, "#btn-hangup");
    wait_view(&s, "home");
    cli.seen("the app left", |v| {
        v["event"] == "peer_left" && v["id"] == app_id.as_str()
    });
    drop(cli);

    // --- A test call: our own video comes back from the in-app echo peer, with its round trip.
    click(&s, "#test-call");
    wait_view(&s, "call");
    remote_tile(&s, 10);
    let round_trip = wait_for("the measured round trip", Duration::from_secs(20), || {
        let text = js(
            &s,
            "return document.getElementById('round-trip').textContent",
        );
        text.as_str()
            .filter(|t| t.starts_with("Round trip"))
            .map(str::to_owned)
    })
    .unwrap();
    eprintln!("test call: {round_trip}");
    shot(&s, "app-test-call.png");

    // --- Issue 19: the microphone's switches reach the capture thread, which says what it
    // applies; the in-call menu changes them and they are remembered; speech into the muted
    // microphone (the synthetic voice) shows "You are muted".
    let in_effect = |want: &str| {
        wait_for(
            &format!("the audio menu to say {want:?}"),
            Duration::from_secs(10),
            || {
                (js(
                    &s,
                    "return document.getElementById('audio-state').textContent",
                ) == want)
                    .then_some(())
            },
        )
        .unwrap_or_else(|e| {
            panic!(
                "{e:#}: {}",
                js(
                    &s,
                    "return document.getElementById('audio-state').textContent"
                )
            )
        });
    };
    in_effect("In effect: echo cancellation, automatic gain");
    click(&s, "#btn-audio");
    click(&s, "#call-aec");
    in_effect("In effect: automatic gain");
    let saved: Value =
        serde_json::from_str(&std::fs::read_to_string(_dir.join("settings.json")).unwrap())
            .unwrap();
    assert_eq!(
        (
            &saved["echoCancellation"],
            &saved["noiseSuppression"],
            &saved["autoGain"]
        ),
        (&json!(false), &json!(false), &json!(true)),
        "{saved}"
    );
    click(&s, "#call-aec");
    in_effect("In effect: echo cancellation, automatic gain");
    shot(&s, "app-audio-menu.png");
    click(&s, "#audio-menu-close");
    let hint_shown = || js(&s, "return !document.getElementById('muted-hint').hidden");
    assert_eq!(hint_shown(), json!(false));
    click(&s, "#btn-mute");
    wait_for("You are muted", Duration::from_secs(10), || {
        (hint_shown() == json!(true)).then_some(())
    })
    .unwrap();
    shot(&s, "app-muted-hint.png");
    click(&s, "#btn-mute");
    // The click goes through the engine and back: wait for it, not for a fixed time.
    wait_for("unmuting hides the hint", Duration::from_secs(5), || {
        (hint_shown() == json!(false)).then_some(())
    })
    .unwrap();
    click(&s, "#btn-hangup");
    wait_view(&s, "home");

    // --- Random chat with a CLI peer: connect, Next, Stop.
    let random = CliPeer::spawn(
        "random-peer",
        &[
            "random",
            &server.matchmaking_url(),
            "--name",
            "Stranger",
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            "120",
        ],
    )
    .unwrap();
    click(&s, "#start-random");
    wait_view(&s, "call");
    // Private mode is on by default in random chat, but these servers have no TURN relay:
    // the call goes ahead and says it is not private.
    let pill = js(
        &s,
        "const p = document.getElementById('private-state'); \
         return {hidden: p.hidden, text: p.textContent}",
    );
    assert_eq!(
        pill,
        json!({"hidden": false, "text": "Not private"}),
        "{pill}"
    );
    remote_tile(&s, 10);
    random.seen("connected to the app", |v| v["event"] == "peer_connected");
    shot(&s, "app-random-call.png");
    // Next: the only other user is the CLI, so after the re-pair grace it comes back.
    click(&s, "#btn-next");
    wait_for(
        "a second call with the CLI",
        Duration::from_secs(30),
        || (random.count(|v| v["event"] == "peer_connected") >= 2).then_some(()),
    )
    .unwrap();
    remote_tile(&s, 10);
    // Stop: the app goes home, the CLI's call ends.
    let left_before = random.count(|v| v["event"] == "peer_left");
    click(&s, "#btn-stop");
    wait_view(&s, "home");
    wait_for("the CLI's call to end", Duration::from_secs(20), || {
        (random.count(|v| v["event"] == "peer_left") > left_before).then_some(())
    })
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_starts_the_app_in_the_room_and_a_second_link_goes_to_the_running_app() {
    let server = embedded::start_loopback().await.unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let settings = json!({
        "displayName": "Linked",
        "matchmakingUrl": server.matchmaking_url(),
        "roomsUrl": server.rooms_url(),
    });
    let env = [
        ("LIVELOOP_VIDEO", "synthetic:320x180@15"),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let peer = |room: &str, id: &str| {
        CliPeer::spawn(
            &format!("link-{id}"),
            &[
                "join",
                "--server",
                &ws,
                "--room",
                room,
                "--id",
                id,
                "--video",
                "synthetic:320x180@15",
                "--seconds",
                "90",
            ],
        )
        .unwrap()
    };
    let _first_peer = peer("first", "cli-one");
    let first = format!("liveloop://join/first?server={ws}");
    let (_driver, s, config_dir) = liveloop_e2e::app::open_app_with_args(
        "app-link",
        &env,
        Some(&settings),
        &["--join", &first],
    )
    .unwrap();
    // Started by the link: straight into the room, with the peer's video.
    wait_view(&s, "call");
    assert_eq!(remote_tile(&s, 5), "cli-one");
    // A second launch with another link hands it to the running app and exits.
    let _second_peer = peer("second", "cli-two");
    let second = format!("liveloop://join/second?server={ws}");
    let mut launch = Command::new(workspace_bin("liveloop").unwrap());
    launch
        .arg(&second)
        .env("LIVELOOP_CONFIG_DIR", &config_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("second liveloop", &mut launch).unwrap();
    let status = wait_for("the second launch to exit", Duration::from_secs(20), || {
        guard.child.try_wait().ok().flatten()
    })
    .unwrap();
    assert!(status.success(), "second launch: {status}");
    // A link never ends the running call without asking.
    let prompt = wait_for("the link prompt", Duration::from_secs(20), || {
        let p = js(
            &s,
            "const p = document.getElementById('link-prompt'); \
             return p.hidden ? null : [document.getElementById('link-prompt-title').textContent, \
               document.getElementById('link-prompt-text').textContent]",
        );
        (!p.is_null()).then_some(p)
    })
    .unwrap();
    let host = server.rooms.to_string();
    assert_eq!(prompt[0], format!("Join room “second” on {host}?"));
    assert_eq!(prompt[1], "Joining ends your current call.", "{prompt}");
    shot(&s, "app-link-prompt.png");
    click(&s, "#link-join");
    wait_for(
        "the running app to switch rooms",
        Duration::from_secs(20),
        || {
            let title = js(
                &s,
                "return document.getElementById('call-title').textContent",
            );
            (title == "Room second").then_some(())
        },
    )
    .unwrap();
    wait_for(
        "the second room's peer on screen",
        Duration::from_secs(30),
        || {
            let tiles = js(&s, "return window.__liveloop.tiles()");
            (tiles["cli-two"]["frames"].as_u64()? >= 5).then_some(())
        },
    )
    .unwrap();
    assert!(
        js(&s, "return window.__liveloop.tiles()")["cli-one"].is_null(),
        "the first room was left"
    );
    shot(&s, "app-opened-by-link.png");

    // A link to a server this app has not set up (another port) names it and asks; declining
    // keeps the call.
    let foreign = "liveloop://join/elsewhere?server=ws://127.0.0.1:9/ws";
    let mut launch = Command::new(workspace_bin("liveloop").unwrap());
    launch
        .arg(foreign)
        .env("LIVELOOP_CONFIG_DIR", &config_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut guard = ChildGuard::spawn("third liveloop", &mut launch).unwrap();
    wait_for("the third launch to exit", Duration::from_secs(20), || {
        guard.child.try_wait().ok().flatten()
    })
    .unwrap();
    let text = wait_for("the foreign-server prompt", Duration::from_secs(20), || {
        let p = js(
            &s,
            "const p = document.getElementById('link-prompt'); \
             return p.hidden ? null : document.getElementById('link-prompt').textContent",
        );
        p.as_str().map(str::to_owned)
    })
    .unwrap();
    assert!(
        text.contains("Join room “elsewhere” on 127.0.0.1:9?")
            && text.contains("a server you have not set up")
            && text.contains("ends your current call"),
        "{text}"
    );
    click(&s, "#link-cancel");
    let frames =
        |s: &Session| js(s, "return window.__liveloop.tiles()")["cli-two"]["frames"].as_u64();
    let before = frames(&s).unwrap_or(0);
    wait_for("the call to go on", Duration::from_secs(20), || {
        (frames(&s)? > before + 10).then_some(())
    })
    .unwrap();
    assert_eq!(
        js(
            &s,
            "return [document.getElementById('link-prompt').hidden, \
               document.getElementById('call-title').textContent]"
        ),
        json!([true, "Room second"])
    );
}
