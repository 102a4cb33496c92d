//! Interop with a second real browser: Debian's Firefox ESR (headless, fake camera and
//! microphone by prefs, driven by puppeteer-core over WebDriver BiDi) runs the browser client
//! and calls a native `liveloop-cli` peer, whoever offers.
//!
//! Firefox as Debian ships it cannot use H.264 (that needs Cisco's OpenH264 plugin, which
//! Firefox downloads at run time and Debian does not package): it offers VP8, VP9 and AV1
//! only. LiveLoop sends and receives VP8 for such a peer, so the call carries video, audio
//! and chat both ways, whoever offers. Firefox gathers candidates only on the interface of
//! its default route (never loopback), so it runs in a `netlab` namespace, the native peer
//! in another, the server in the root namespace. Needs root, as CI runs it.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::time::Duration;

use liveloop_e2e::browser::{Browser, BrowserOptions};
use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::netlab::{NetLab, root_addr};
use liveloop_e2e::{artifacts_dir, workspace_bin};
use liveloop_proto::rtc_config::RtcConfig;
use liveloop_server::embedded::{self, Embedded};
use liveloop_server::matchmaking::MatchmakingConfig;
use liveloop_server::rooms::RoomsConfig;
use serde_json::Value;

const SECOND: Duration = Duration::from_secs(1);

/// A lab named `prefix` with a namespace per client (Firefox goes in the first) and the
/// servers in the root namespace, without STUN (there is no internet here).
async fn lab_and_server(prefix: &str, clients: &[&str]) -> (NetLab, Embedded) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test makes network namespaces: run the tests as root"
    );
    let lab = NetLab::start(prefix, clients, 0).expect("the network lab");
    let rooms = RoomsConfig {
        rtc_config: RtcConfig {
            ice_servers: Vec::new(),
            ..RtcConfig::default()
        },
        ..RoomsConfig::default()
    };
    let server = embedded::start(
        root_addr().into(),
        (0, 0),
        MatchmakingConfig::default(),
        rooms,
    )
    .await
    .unwrap();
    (lab, server)
}

/// Firefox as `fox` and the native client as `native` in one room; the lower id is impolite
/// and makes the offer.
async fn firefox_and_native(prefix: &str, fox: &str, native_id: &str) {
    let (lab, server) = lab_and_server(prefix, &["ff", "cli"]).await;
    let log = artifacts_dir()
        .unwrap()
        .join(format!("firefox-{prefix}-console.log"));
    let b = Browser::start_with(
        &BrowserOptions {
            firefox: true,
            netns: Some(lab.namespaces[0].clone()),
            insecure_origin: Some(server.rooms.to_string()),
            ..BrowserOptions::default()
        },
        &log,
    )
    .unwrap();
    let room = format!("fox-{prefix}");
    b.open("web", &format!("http://{}/r/{room}?id={fox}", server.rooms))
        .await
        .unwrap();
    b.eval(
        "web",
        &format!(r#"state.name = "Firefox"; return connect("{room}", "{fox}")"#),
    )
    .await
    .unwrap();
    b.wait("web", "return state.roomState === 'joined'", 20 * SECOND)
        .await
        .unwrap();
    let cli = workspace_bin("liveloop-cli").unwrap();
    let mut cmd = lab.command(1, &cli);
    cmd.args(["join", "--server", &format!("ws://{}/ws", server.rooms)])
        .args(["--room", &room, "--id", native_id])
        .args(["--video", "synthetic:320x180@30"])
        .args(["--chat", "hello from native", "--seconds", "40"]);
    let mut native = CliPeer::spawn_command(&format!("firefox-{prefix}-native"), cmd).unwrap();
    native
        .next("connected", 30 * SECOND, |e| e["event"] == "peer_connected")
        .await;
    // Firefox sees and hears the native peer: its synthetic camera, as VP8.
    let heard = b
        .wait(
            "web",
            &format!(
                "const s = (await callStats())['{native_id}']; \
                 return s && s.audio.packetsReceived > 150 && s.video.framesDecoded > 60 && s"
            ),
            30 * SECOND,
        )
        .await
        .unwrap();
    eprintln!("Firefox's view of the native peer: {heard}");
    assert_eq!(heard["audio"]["codecIn"], "audio/opus");
    assert_eq!(heard["video"]["codecIn"], "video/VP8", "{heard}");
    assert_eq!(heard["video"]["frameWidth"], 320, "{heard}");
    assert!(
        heard["audio"]["totalAudioEnergy"]
            .as_f64()
            .is_some_and(|e| e > 0.01),
        "Firefox hears the native peer's voice"
    );

    // Chat both ways.
    b.wait(
        "web",
        &format!(
            "return state.chat.some((m) => m.from === '{native_id}' && m.text === 'hello from native')"
        ),
        10 * SECOND,
    )
    .await
    .unwrap();
    assert_eq!(
        b.eval("web", "return sendChat('hello from Firefox')")
            .await
            .unwrap(),
        1
    );
    native
        .next("Firefox's chat", 10 * SECOND, |e| {
            e["event"] == "chat" && e["from"] == fox && e["text"] == "hello from Firefox"
        })
        .await;
    // The native peer hears Firefox's fake microphone (a tone) for several seconds.
    tokio::time::sleep(4 * SECOND).await;
    b.eval("web", &format!("hangupPeer('{native_id}'); return true"))
        .await
        .unwrap();
    native
        .next("Firefox's hang-up", 10 * SECOND, |e| {
            e["event"] == "peer_left"
        })
        .await;
    let events = native.all();
    let audio: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "audio" && e["from"] == fox)
        .collect();
    let loud = audio
        .iter()
        .filter(|e| e["rms"].as_f64().unwrap_or(0.0) > 0.01)
        .count();
    let frames: Vec<&Value> = events
        .iter()
        .filter(|e| e["event"] == "frame" && e["from"] == fox)
        .collect();
    eprintln!(
        "the native peer heard Firefox in {loud} of {} s; {} video frames, the last {:?}",
        audio.len(),
        frames.len(),
        frames.last()
    );
    assert!(loud >= 3, "the native peer heard Firefox in {loud} s");
    // Firefox's fake camera, decoded from VP8: several seconds of it.
    assert!(
        frames.len() >= 60 && frames.iter().all(|f| f["width"].as_u64() > Some(0)),
        "the native peer saw Firefox: {} frames",
        frames.len()
    );
    let no_video = |e: &&Value| e["event"] == "error" && e["kind"] == "no_video_codec";
    assert_eq!(events.iter().filter(no_video).count(), 0, "{events:?}");
    server.shutdown();
    drop(lab);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_offers_and_the_call_has_video_audio_and_chat_both_ways() {
    firefox_and_native("llf", "a-fox", "b-native").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn native_offers_firefox_and_the_call_has_video_audio_and_chat_both_ways() {
    firefox_and_native("llg", "b-fox", "a-native").await;
}

/// Firefox and Chromium in one room through the browser client: the two browsers agree on a
/// codec of their own (VP8) and carry video, audio and chat both ways. Chromium runs in the
/// root namespace, where the lab's router reaches Firefox's namespace.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_and_chromium_in_one_room_see_and_hear_each_other() {
    let (lab, server) = lab_and_server("llh", &["ff"]).await;
    let artifacts = artifacts_dir().unwrap();
    let fox = Browser::start_with(
        &BrowserOptions {
            firefox: true,
            netns: Some(lab.namespaces[0].clone()),
            insecure_origin: Some(server.rooms.to_string()),
            ..BrowserOptions::default()
        },
        &artifacts.join("firefox-chromium-ff-console.log"),
    )
    .unwrap();
    let chromium = Browser::start_with(
        &BrowserOptions {
            extra_args: vec![format!(
                "--unsafely-treat-insecure-origin-as-secure=http://{}",
                server.rooms
            )],
            ..BrowserOptions::default()
        },
        &artifacts.join("firefox-chromium-cr-console.log"),
    )
    .unwrap();
    let url = format!("http://{}/r/browsers", server.rooms);
    for (b, id, name) in [
        (&fox, "a-fox", "Firefox"),
        (&chromium, "b-chromium", "Chromium"),
    ] {
        b.open("web", &format!("{url}?id={id}")).await.unwrap();
        b.eval(
            "web",
            &format!(r#"state.name = "{name}"; return connect("browsers", "{id}")"#),
        )
        .await
        .unwrap();
    }
    for (b, other) in [(&fox, "b-chromium"), (&chromium, "a-fox")] {
        let s = b
            .wait(
                "web",
                &format!(
                    "const s = (await callStats())['{other}']; \
                     return s && s.video.framesDecoded > 60 && s.audio.packetsReceived > 100 && s"
                ),
                40 * SECOND,
            )
            .await
            .unwrap();
        eprintln!("the view of {other}: {s}");
        assert_eq!(s["video"]["codecIn"], "video/VP8", "{s}");
        assert!(
            s["audio"]["totalAudioEnergy"]
                .as_f64()
                .is_some_and(|e| e > 0.01),
            "{other} is heard: {s}"
        );
    }
    assert_eq!(
        fox.eval("web", "return sendChat('hello from Firefox')")
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        chromium
            .eval("web", "return sendChat('hello from Chromium')")
            .await
            .unwrap(),
        1
    );
    for (b, other, text) in [
        (&fox, "b-chromium", "hello from Chromium"),
        (&chromium, "a-fox", "hello from Firefox"),
    ] {
        b.wait(
            "web",
            &format!("return state.chat.some((m) => m.from === '{other}' && m.text === '{text}')"),
            10 * SECOND,
        )
        .await
        .unwrap();
    }
    server.shutdown();
    drop(lab);
}
