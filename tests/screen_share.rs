//! Screen share under Xvfb: a native peer shares the display as a second video stream; the
//! other peer receives it apart from the camera, at full resolution, matching a screenshot;
//! stopping ends it on both sides.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::Command;
use std::time::Duration;

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::{artifacts_dir, temp_dir};
use liveloop_media::file::Y4mSource;
use liveloop_media::quality::psnr;
use liveloop_media::{VideoFrame, VideoSource};
use liveloop_server::embedded;

const SECOND: Duration = Duration::from_secs(1);

/// The display as ffmpeg's X11 grabber sees it, as I420.
fn screenshot(display: &str, width: u32, height: u32) -> VideoFrame {
    let dir = temp_dir("screenshot").unwrap();
    let raw = dir.join("shot.yuv");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-f", "x11grab", "-video_size"])
        .arg(format!("{width}x{height}"))
        .args([
            "-i",
            display,
            "-frames:v",
            "1",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
        ])
        .arg(&raw)
        .output()
        .expect("ffmpeg");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut frame = VideoFrame::blank(width, height);
    frame.data = std::fs::read(&raw).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_screen_arrives_as_its_own_stream_and_stops_on_both_sides() {
    let display = std::env::var("DISPLAY").expect("the test command runs the tests under Xvfb");
    // Something to recognise on the screen: a two-colour plaid on the root window (the test
    // command's Xvfb runs with -noreset, so it stays after xsetroot disconnects).
    let painted = Command::new("xsetroot")
        .args(["-mod", "16", "16", "-fg", "#ffcc00", "-bg", "#3366cc"])
        .status()
        .expect("xsetroot (x11-xserver-utils)");
    assert!(painted.success());
    let server = embedded::start_loopback().await.unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let record = temp_dir("screen-record").unwrap();
    let mut viewer = CliPeer::join(
        &ws,
        "screen",
        "b-viewer",
        &[
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            "14",
            "--record",
            record.to_str().unwrap(),
            "--record-call",
            record.join("call.mkv").to_str().unwrap(),
        ],
    );
    let mut sharer = CliPeer::join(
        &ws,
        "screen",
        "a-sharer",
        &[
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            "12",
            "--share-screen",
            "primary",
            "--share-seconds",
            "6",
        ],
    );
    sharer
        .next("sharing", 20 * SECOND, |e| {
            e["event"] == "screen_share" && e["sharing"] == true
        })
        .await;
    viewer
        .next("told of the share", 10 * SECOND, |e| {
            e["event"] == "peer_state" && e["id"] == "a-sharer" && e["screen"] == true
        })
        .await;
    // The share arrives beside the camera, at the screen's full size.
    let first = viewer
        .next("a screen frame", 20 * SECOND, |e| {
            e["event"] == "frame" && e["from"] == "a-sharer#screen"
        })
        .await;
    assert_eq!(
        (first["width"].as_u64(), first["height"].as_u64()),
        (Some(1920), Some(1080))
    );
    let shot = screenshot(&display, 1920, 1080);
    let spread = luma_spread(&shot);
    assert!(
        spread > 20.0,
        "the screen shows no pattern (luma spread {spread:.1})"
    );
    // Stop: the sharer says so, the viewer is told, and screen frames stop coming.
    sharer
        .next("stopped", 15 * SECOND, |e| {
            e["event"] == "screen_share" && e["sharing"] == false
        })
        .await;
    viewer
        .next("told the share ended", 10 * SECOND, |e| {
            e["event"] == "peer_state" && e["id"] == "a-sharer" && e["screen"] == false
        })
        .await;
    tokio::time::sleep(SECOND).await;
    let count = |peer: &CliPeer, from: &str| {
        peer.all()
            .iter()
            .filter(|e| e["event"] == "frame" && e["from"] == from)
            .count()
    };
    let (screen_at_stop, camera_at_stop) = (
        count(&viewer, "a-sharer#screen"),
        count(&viewer, "a-sharer"),
    );
    tokio::time::sleep(2 * SECOND).await;
    let (screen_after, camera_after) = (
        count(&viewer, "a-sharer#screen"),
        count(&viewer, "a-sharer"),
    );
    eprintln!(
        "screen frames: {screen_at_stop} during the share, {} after it; camera frames kept coming ({camera_at_stop} → {camera_after})",
        screen_after - screen_at_stop
    );
    assert!(
        screen_at_stop >= 10,
        "{screen_at_stop} screen frames in 6 s"
    );
    assert_eq!(
        screen_after, screen_at_stop,
        "screen frames after the share ended"
    );
    assert!(
        camera_after > camera_at_stop + 20,
        "the camera stream goes on"
    );

    // What arrived is what was on the screen.
    let events = viewer.finish(30 * SECOND).await.unwrap();
    assert_eq!(events.last().unwrap()["event"], "summary");
    let path = record.join("a-sharer_screen.y4m");
    let bytes = std::fs::metadata(&path).unwrap().len() as usize;
    let frame_bytes = 6 + 1920 * 1080 * 3 / 2;
    let frames = bytes / frame_bytes;
    let mut video = Y4mSource::open(&path).unwrap();
    let mut received = video.next_frame(0).unwrap();
    for _ in 1..frames / 2 {
        received = video.next_frame(0).unwrap();
    }
    let p = psnr(&received, &shot);
    eprintln!("received screen vs screenshot: PSNR {p:.1} dB");
    save_png(&received, "screen-share-received.png");
    save_png(&shot, "screen-share-screenshot.png");
    assert!(
        p >= 30.0,
        "the received screen differs from the screenshot: PSNR {p:.1} dB"
    );

    // The viewer's recording gave the share the large area (the left three quarters, 960x540
    // letterboxed at y 90) while it lasted, and the gallery back after it.
    let (w, h) = (960, 540);
    let expected = liveloop_media::convert::Scaler::new()
        .scale(&received, w, h)
        .unwrap();
    let raw = record.join("presenter.yuv");
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(record.join("call.mkv"))
        .args([
            "-vf",
            "fps=2,crop=960:540:0:90",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "rawvideo",
        ])
        .arg(&raw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bytes = std::fs::read(&raw).unwrap();
    let size = (w * h * 3 / 2) as usize;
    let scores: Vec<f64> = bytes
        .chunks_exact(size)
        .map(|chunk| {
            let mut f = VideoFrame::blank(w, h);
            f.data = chunk.to_vec();
            psnr(&f, &expected)
        })
        .collect();
    eprintln!("the recording's large area against the share, every 0.5 s: {scores:.1?}");
    let best = scores.iter().copied().fold(0.0, f64::max);
    assert!(
        best >= 28.0,
        "the share never filled the large area (best {best:.1} dB)"
    );
    let last = scores.last().copied().unwrap_or(f64::MAX);
    assert!(
        last < 20.0,
        "the share still filled the large area at the end ({last:.1} dB)"
    );
    // A passing run leaves nothing behind (the raw 1080p recording is about 500 MB).
    let _ = std::fs::remove_dir_all(&record);
}

/// A screen that is all one colour would match anything blank: make sure there is a pattern.
fn luma_spread(frame: &VideoFrame) -> f64 {
    let y = &frame.data[..(frame.width * frame.height) as usize];
    let mean = y.iter().map(|v| f64::from(*v)).sum::<f64>() / y.len() as f64;
    (y.iter()
        .map(|v| (f64::from(*v) - mean).powi(2))
        .sum::<f64>()
        / y.len() as f64)
        .sqrt()
}

fn save_png(frame: &VideoFrame, name: &str) {
    let path = artifacts_dir().unwrap().join(name);
    let raw = path.with_extension("yuv");
    std::fs::write(&raw, &frame.data).unwrap();
    let _ = Command::new("ffmpeg")
        .args([
            "-nostdin", "-v", "error", "-y", "-f", "rawvideo", "-pix_fmt", "yuv420p", "-s",
        ])
        .arg(format!("{}x{}", frame.width, frame.height))
        .arg("-i")
        .arg(&raw)
        .arg(&path)
        .status();
    let _ = std::fs::remove_file(raw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_window_that_closes_ends_the_share_on_both_sides() {
    use liveloop_e2e::{ChildGuard, wait_for, workspace_bin};
    // Windows are listed through the window manager (EWMH), as on a desktop.
    // The window manager of an earlier test may still be exiting: openbox then refuses to
    // start ("another window manager is running"); try again until one stays up.
    let mut wm = None;
    for _ in 0..10 {
        let mut guard =
            ChildGuard::spawn("openbox", Command::new("openbox").arg("--sm-disable")).unwrap();
        std::thread::sleep(SECOND / 2);
        if guard.child.try_wait().unwrap().is_none() {
            wm = Some(guard);
            break;
        }
    }
    let _wm = wm.expect("openbox stays up");
    // A window mapped while the window manager is still starting was seen to stay unlisted.
    wait_for("openbox to manage the display", 10 * SECOND, || {
        let out = Command::new("xprop")
            .args(["-root", "_NET_SUPPORTING_WM_CHECK"])
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout)
            .contains("window id")
            .then_some(())
    })
    .unwrap();
    let xmessage = ChildGuard::spawn(
        "xmessage",
        Command::new("xmessage").args([
            "-title",
            "LiveLoop share test",
            "-geometry",
            "640x360+100+100",
            "A window to share, then close",
        ]),
    )
    .unwrap();
    let mut window = Some(xmessage);
    let window_id = wait_for("the window in the share list", 20 * SECOND, || {
        let out = Command::new(workspace_bin("liveloop-cli").ok()?)
            .arg("screens")
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            // xcap names windows by their EWMH title and application class.
            (v["name"].as_str()?.contains("Xmessage"))
                .then(|| v["id"].as_str().map(str::to_owned))?
        })
    })
    .unwrap_or_else(|e| {
        let clients = Command::new("xprop")
            .args(["-root", "_NET_CLIENT_LIST"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let alive = window
            .as_mut()
            .map(|w| w.child.try_wait().map(|s| s.is_none()));
        let tree = Command::new("xwininfo")
            .args(["-root", "-tree"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        panic!("{e}; clients {clients:?}; xmessage running {alive:?}; windows {tree:?}");
    });
    let server = embedded::start_loopback().await.unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let mut viewer = CliPeer::join(
        &ws,
        "window",
        "b-viewer",
        &["--video", "synthetic:320x180@15", "--seconds", "20"],
    );
    let mut sharer = CliPeer::join(
        &ws,
        "window",
        "a-sharer",
        &[
            "--video",
            "synthetic:320x180@15",
            "--seconds",
            "20",
            "--share-screen",
            &window_id,
        ],
    );
    let first = viewer
        .next("a frame of the window", 20 * SECOND, |e| {
            e["event"] == "frame" && e["from"] == "a-sharer#screen"
        })
        .await;
    eprintln!("shared window {window_id}: {first}");
    assert!(
        first["width"].as_u64().unwrap() < 1920,
        "a window, not the screen: {first}"
    );
    // Close the window: the share ends with a reason, and the viewer is told.
    drop(window.take());
    let ended = sharer
        .next("the share ended", 10 * SECOND, |e| {
            e["event"] == "screen_share" && e["sharing"] == false
        })
        .await;
    eprintln!("{ended}");
    assert!(ended["reason"].is_string(), "it says why: {ended}");
    viewer
        .next("told the share ended", 10 * SECOND, |e| {
            e["event"] == "peer_state" && e["id"] == "a-sharer" && e["screen"] == false
        })
        .await;
    // The call itself goes on.
    let before = viewer
        .all()
        .iter()
        .filter(|e| e["event"] == "frame" && e["from"] == "a-sharer")
        .count();
    tokio::time::sleep(2 * SECOND).await;
    let after = viewer
        .all()
        .iter()
        .filter(|e| e["event"] == "frame" && e["from"] == "a-sharer")
        .count();
    assert!(
        after > before + 10,
        "the camera goes on after the share ({before} → {after})"
    );
}
