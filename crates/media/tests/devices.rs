//! The real device code on a headless machine: cpal through a PulseAudio null sink, xcap on
//! Xvfb, nokhwa without a camera. The test command (`./dev test`) starts the PulseAudio server
//! (setting `PULSE_SERVER`) and runs everything under Xvfb (`DISPLAY`).

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::process::Command;
use std::time::Duration;

use liveloop_media::convert::i420_to_rgba;
use liveloop_media::device::audio::{Microphone, Speaker, list_microphones, list_speakers};
use liveloop_media::device::{camera, screen};
use liveloop_media::quality::aligned_correlation;
use liveloop_media::synthetic::{SyntheticMic, Voice, find_marks};
use liveloop_media::{AudioSource, MediaError, VideoSource};

#[test]
fn audio_plays_into_a_null_sink_and_is_captured_from_its_monitor() {
    assert!(
        std::env::var_os("PULSE_SERVER").is_some(),
        "PULSE_SERVER is not set: run under ./dev test, which starts PulseAudio with a null sink"
    );
    let speakers = list_speakers().unwrap();
    let mics = list_microphones().unwrap();
    assert!(
        speakers
            .iter()
            .any(|d| d.name.contains("liveloop_null") || d.id.contains("liveloop_null")),
        "{speakers:?}"
    );
    assert!(
        mics.iter()
            .any(|d| d.id.contains("liveloop_null.monitor") || d.name.contains("liveloop_null")),
        "{mics:?}"
    );

    let lead_in = vec![0.0f32; 24_000];
    let (speaker, mut feed) = Speaker::open(None, lead_in.len() + 3 * 48_000).unwrap();
    let mut mic = Microphone::open(None).unwrap();
    let voice = SyntheticMic::new(Voice::Speech, true);
    let played: Vec<f32> = (0..3 * 48_000).map(|n| voice.sample(n)).collect();
    // Half a second of silence first: both streams start up (and may glitch, on a busy machine)
    // before the clip plays. Queue it all at once, so a delayed test cannot starve playout.
    assert_eq!(feed.write(&lead_in), lead_in.len());
    assert_eq!(feed.write(&played), played.len());
    let mut captured = vec![0.0f32; 4 * 48_000 + lead_in.len()];
    for chunk in captured.chunks_mut(960) {
        mic.read(chunk).unwrap();
    }
    drop(speaker);
    let (delay, c) = aligned_correlation(&played, &captured, 48_000);
    // A capture client starved by a busy machine can lose a few milliseconds, which shifts
    // everything after it; so judge the loop in half-second pieces, each aligned on its own
    // near the overall delay. Broken capture or playout fails every piece.
    let mut pieces = Vec::new();
    for start in (0..played.len() - 24_000).step_by(24_000) {
        let piece = &played[start..start + 24_000];
        let from = (start + delay).saturating_sub(2_400);
        let window = &captured
            [from.min(captured.len())..(start + delay + 24_000 + 2_400).min(captured.len())];
        pieces.push(aligned_correlation(piece, window, 4_800).1);
    }
    let good = pieces.iter().filter(|p| **p >= 0.9).count();
    eprintln!(
        "cpal loop through PulseAudio: correlation {c:.3} overall, delay {:.1} ms; per half second {pieces:.3?}",
        delay as f64 / 48.0
    );
    assert!(
        good * 5 >= pieces.len() * 4,
        "half-second pieces at correlation >= 0.9: {good} of {}",
        pieces.len()
    );
    let marks = find_marks(&captured);
    assert!(
        marks.len() >= 2,
        "timing marks found in the capture: {marks:?}"
    );
    // As with the pieces, one glitch (a starved client at start-up) may shift one interval.
    let intervals = marks.len() - 1;
    let on_time = marks
        .windows(2)
        .filter(|w| w[1].abs_diff(w[0]).abs_diff(48_000) < 480)
        .count();
    assert!(
        on_time >= 1 && on_time + 1 >= intervals,
        "marks one second apart: {marks:?}"
    );
}

/// Paints the root window. Needs an X server started with `-noreset` (as `./dev test` does):
/// otherwise the server resets when xsetroot, its last client, disconnects.
fn paint_root(colour: &str) {
    let ok = Command::new("xsetroot")
        .args(["-solid", colour])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "xsetroot failed (apt package x11-xserver-utils)");
    std::thread::sleep(Duration::from_millis(300));
}

fn corner_colour(src: &mut screen::ScreenSource) -> [u8; 3] {
    let frame = src.next_frame(0).unwrap();
    let rgba = i420_to_rgba(&frame).unwrap();
    let (w, h) = (frame.width as usize, frame.height as usize);
    // Bottom-right corner: away from any window the other tests open at the top left.
    let i = ((h - 8) * w + (w - 8)) * 4;
    [rgba[i], rgba[i + 1], rgba[i + 2]]
}

#[test]
fn xcap_captures_the_xvfb_screen() {
    assert!(
        std::env::var_os("DISPLAY").is_some(),
        "no DISPLAY: run under Xvfb (./dev test does)"
    );
    let screens = screen::list().unwrap();
    let monitor = screens
        .iter()
        .find(|d| d.id.starts_with("monitor:"))
        .expect("a monitor");
    let mut src = screen::ScreenSource::open(Some(&monitor.id), None, 10.0).unwrap();
    let format = src.format();
    assert!(format.width >= 640 && format.height >= 480, "{format:?}");
    for (colour, rgb) in [
        ("#3366cc", [0x33, 0x66, 0xcc]),
        ("#cc3300", [0xcc, 0x33, 0x00]),
    ] {
        paint_root(colour);
        let got = corner_colour(&mut src);
        let close = got.iter().zip(rgb).all(|(a, b)| a.abs_diff(b) <= 12);
        assert!(close, "painted {colour}, captured {got:?}");
    }
    // Scaled capture keeps the aspect and the content.
    let mut small = screen::ScreenSource::open(Some(&monitor.id), Some((640, 640)), 10.0).unwrap();
    let f = small.next_frame(0).unwrap();
    assert_eq!(f.width, 640);
    assert_eq!(f.height, (640 * format.height / format.width) & !1);
    assert!(matches!(
        screen::ScreenSource::open(Some("window:999999999"), None, 10.0),
        Err(MediaError::UnknownDevice { .. })
    ));
}

#[test]
fn no_camera_means_a_clear_error() {
    let cameras = camera::list().unwrap();
    match camera::Camera::open(None) {
        Err(e @ MediaError::NoDevice { .. }) => {
            assert!(cameras.is_empty());
            let text = e.to_string();
            assert!(text.starts_with("no camera found"), "{text}");
        }
        Ok(mut cam) => {
            assert!(!cameras.is_empty());
            assert!(cam.next_frame(0).is_ok());
        }
        Err(other) => panic!("unexpected camera error: {other}"),
    }
    assert!(matches!(
        camera::Camera::open(Some("no-such-camera")),
        Err(MediaError::NoDevice { .. } | MediaError::UnknownDevice { .. })
    ));
}
