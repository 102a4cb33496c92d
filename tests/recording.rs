//! Local recording (`liveloop-cli --record-call`): a three-person call recorded into Matroska
//! that ffprobe and ffmpeg accept, whose audio and video stay in sync and whose length is the
//! wall time; and a recorder killed with SIGKILL leaves a file that still plays.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use liveloop_e2e::cli_peer::CliPeer;
use liveloop_e2e::temp_dir;
use liveloop_media::VideoSource;
use liveloop_media::file::{WavSource, Y4mSource};
use liveloop_media::synthetic::{find_marks, read_stamp};
use liveloop_server::embedded;

const SECOND: Duration = Duration::from_secs(1);

fn ffmpeg(args: &[&str]) -> String {
    let out = Command::new("ffmpeg")
        .arg("-nostdin")
        .args(args)
        .output()
        .expect("ffmpeg (the test command installs it)");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "ffmpeg {args:?} failed: {err}");
    err
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .expect("ffprobe");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The end of the last packet of any stream, in seconds.
fn media_end(file: &Path) -> f64 {
    ffprobe(
        &[
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
        ],
        file,
    )
    .lines()
    .filter_map(|l| {
        let mut it = l.split(',');
        let pts: f64 = it.next()?.parse().ok()?;
        let dur: f64 = it.next().and_then(|d| d.parse().ok()).unwrap_or(0.0);
        Some(pts + dur)
    })
    .fold(0.0, f64::max)
}

/// A quiet 1 kHz sine (no timing marks) for the recorder's own microphone.
fn own_voice(dir: &Path) -> PathBuf {
    let samples: Vec<f32> = (0..48_000 * 30)
        .map(|n| 0.05 * (std::f32::consts::TAU * 1000.0 * n as f32 / 48_000.0).sin())
        .collect();
    let path = dir.join("own.wav");
    liveloop_media::file::write_wav(&path, &samples).unwrap();
    path
}

/// Energy of `freq` in `x` (Goertzel), normalised to the amplitude² of a pure sine.
fn tone_power(x: &[f32], freq: f32) -> f32 {
    let coeff = 2.0 * (std::f32::consts::TAU * freq / 48_000.0).cos();
    let (mut s1, mut s2) = (0.0f32, 0.0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 4.0 / (x.len() as f32 * x.len() as f32)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_three_person_call_plays_everywhere_in_sync() {
    let server = embedded::start_loopback().await.unwrap();
    let dir = temp_dir("recording").unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let join = |id: &str, video: &str, extra: &[&str]| {
        let mut args = vec!["--video", video];
        args.extend_from_slice(extra);
        CliPeer::join(&ws, "rec", id, &args)
    };
    // a-speaker sends stamped video and speech whose marks fall on whole wall-clock seconds.
    let _speaker = join(
        "a-speaker",
        "synthetic:640x360@30",
        &["--audio", "synthetic:clock", "--seconds", "30"],
    );
    let file = dir.join("call.mkv");
    let voice = own_voice(&dir);
    let recorder = join(
        "z-recorder",
        "synthetic:640x360@30",
        &[
            "--audio",
            voice.to_str().unwrap(),
            "--seconds",
            "12",
            "--record-call",
            file.to_str().unwrap(),
            "--record-separate",
        ],
    );
    // b-quiet joins a second later with its camera off and its microphone silent, and leaves
    // before the end: the gallery follows (and two cores have one video encoder less to run).
    tokio::time::sleep(SECOND).await;
    let _quiet = join("b-quiet", "none", &["--audio", "silence", "--seconds", "9"]);
    let events = recorder.finish(40 * SECOND).await.unwrap();
    let done = events
        .iter()
        .find(|e| e["event"] == "call_recording")
        .expect("the recorder says what it wrote")
        .clone();
    eprintln!("recording: {done}");
    let wall = done["duration_ms"].as_f64().unwrap() / 1000.0;

    // Players' view: both streams, and a full decode without a single error.
    let streams = ffprobe(
        &[
            "-show_entries",
            "stream=codec_name,width,height",
            "-of",
            "csv=p=0",
        ],
        &file,
    );
    assert!(
        streams.contains("h264,1280,720") && streams.contains("opus"),
        "{streams}"
    );
    let errors = ffmpeg(&[
        "-v",
        "error",
        "-i",
        file.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    let end = media_end(&file);
    eprintln!("media runs {end:.3} s for {wall:.3} s of wall time");
    assert!(
        (end - wall).abs() <= 0.01 * wall,
        "{end} s of media for {wall} s"
    );

    // Sync: the speaker's tile is the first (top left, 640x360, unscaled), so its stamps say
    // when each shown frame was captured; its marks say when each second of audio was.
    let crop = dir.join("tile.y4m");
    let mix = dir.join("mix.wav");
    ffmpeg(&[
        "-v",
        "error",
        "-i",
        file.to_str().unwrap(),
        "-vf",
        // The left column: the speaker's tile is at its top with three or four people, and
        // centred in it (y 180) with two.
        "crop=640:720:0:0",
        "-pix_fmt",
        "yuv420p",
        // Every frame once, as stored: its time comes from the file's own timestamps below.
        "-fps_mode",
        "passthrough",
        "-f",
        "yuv4mpegpipe",
        crop.to_str().unwrap(),
        "-map",
        "0:a:0",
        "-ac",
        "1",
        "-ar",
        "48000",
        "-c:a",
        "pcm_s16le",
        mix.to_str().unwrap(),
    ]);
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let full_ms = |capture: u32| -> i64 {
        // Stamps carry Unix milliseconds modulo 2³²; put the high bits back.
        let mut t = (now_ms & !0xFFFF_FFFF) | i64::from(capture);
        if t > now_ms {
            t -= 1 << 32;
        }
        t
    };
    // Each stored frame's presentation time, in order (baseline H.264: no reordering).
    let times_ms: Vec<f64> = ffprobe(
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ],
        &file,
    )
    .lines()
    .filter_map(|l| l.trim().parse::<f64>().ok())
    .map(|t| t * 1000.0)
    .collect();
    let mut video = Y4mSource::open(&crop).unwrap();
    let bytes = std::fs::read(&crop).unwrap();
    let header = bytes.iter().position(|b| *b == b'\n').unwrap() + 1;
    let count = (bytes.len() - header) / (6 + 640 * 720 * 3 / 2);
    // (file ms, capture ms − file ms) for every frame with a stamp.
    let mut delays: Vec<(f64, f64)> = Vec::new();
    assert_eq!(
        count,
        times_ms.len(),
        "one decoded picture per stored frame"
    );
    for &t in &times_ms {
        let column = video.next_frame(0).unwrap();
        let tile_at = |y: u32| {
            let mut tile = liveloop_media::VideoFrame::blank(640, 360);
            let (cy, cu, cv) = column.planes();
            let (ty, tu, tv) = tile.planes_mut();
            let (y, cy_w) = (y as usize, 640usize);
            ty.copy_from_slice(&cy[y * cy_w..(y + 360) * cy_w]);
            tu.copy_from_slice(&cu[y / 2 * 320..(y / 2 + 180) * 320]);
            tv.copy_from_slice(&cv[y / 2 * 320..(y / 2 + 180) * 320]);
            tile
        };
        if let Some(s) = read_stamp(&tile_at(0)).or_else(|| read_stamp(&tile_at(180))) {
            delays.push((t, full_ms(s.capture_ms) as f64 - t));
        }
    }
    assert!(
        delays.len() > 150,
        "{} stamped frames of the speaker",
        delays.len()
    );
    let audio = WavSource::open(&mix).unwrap();
    let marks = find_marks(audio.samples());
    let mut errors_ms = Vec::new();
    for m in &marks {
        let t_a = *m as f64 / 48.0;
        // Video of the same moment on both sides of the mark: a mark at the very edge of the
        // speaker's video (its first half second) has only one side to compare with.
        let before = delays
            .iter()
            .filter(|(t, _)| (t_a - 500.0..t_a).contains(t))
            .count();
        let after = delays
            .iter()
            .filter(|(t, _)| (t_a..t_a + 500.0).contains(t))
            .count();
        if before < 5 || after < 5 {
            continue;
        }
        let mut near: Vec<f64> = delays
            .iter()
            .filter(|(t, _)| (t - t_a).abs() < 500.0)
            .map(|(_, d)| *d)
            .collect();
        near.sort_by(f64::total_cmp);
        let video_offset = near[near.len() / 2];
        // The mark was captured on a whole second; video shown at t_a was captured at
        // t_a + video_offset. Their difference is how far audio trails video.
        let captured = t_a + video_offset;
        let second = (captured / 1000.0).round() * 1000.0;
        errors_ms.push(captured - second);
    }
    eprintln!("audio behind video at each mark (ms): {errors_ms:.1?}");
    assert!(errors_ms.len() >= 6, "{} marks measured", errors_ms.len());
    let worst = errors_ms.iter().fold(0.0f64, |w, e| w.max(e.abs()));
    assert!(worst <= 45.0, "audio and video {worst:.1} ms apart");

    // Everyone's audio is in the mix: the recorder's own 1 kHz voice as well as the speaker.
    let mid = &audio.samples()[48_000 * 4..48_000 * 8];
    let own = tone_power(mid, 1000.0).sqrt();
    eprintln!("own voice in the mix: amplitude {own:.3}");
    assert!(
        own > 0.02,
        "the recorder's own voice is missing from the mix ({own})"
    );
    assert!(
        marks.len() >= 8,
        "the speaker is in the mix ({} marks)",
        marks.len()
    );
    // And each participant separately, aligned to the same start.
    let extra: Vec<String> = done["extra_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    for who in ["you", "a-speaker", "b-quiet"] {
        assert!(
            extra.iter().any(|f| f.ends_with(&format!(".{who}.wav"))),
            "{who}: {extra:?}"
        );
    }
    // A passing run leaves nothing behind (the raw tile video alone is 120-240 MB); a failing
    // one keeps its files for a look.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorder_killed_with_sigkill_leaves_a_playable_file() {
    let server = embedded::start_loopback().await.unwrap();
    let dir = temp_dir("recording-kill").unwrap();
    let ws = format!("ws://{}/ws", server.rooms);
    let file = dir.join("killed.mkv");
    let _peer = CliPeer::join(&ws, "kill", "peer", &["--seconds", "30"]);
    let mut recorder = CliPeer::join(
        &ws,
        "kill",
        "recorder",
        &["--seconds", "30", "--record-call", file.to_str().unwrap()],
    );
    recorder
        .next("joined", 10 * SECOND, |e| e["event"] == "joined")
        .await;
    tokio::time::sleep(10 * SECOND).await;
    recorder.kill();
    let errors = ffmpeg(&[
        "-v",
        "error",
        "-i",
        file.to_str().unwrap(),
        "-f",
        "null",
        "-",
    ]);
    eprintln!("decoding the killed recording: {errors:?}");
    let last = ffprobe(
        &[
            "-select_streams",
            "v",
            "-show_entries",
            "frame=pts_time",
            "-of",
            "csv=p=0",
        ],
        &file,
    )
    .lines()
    .filter_map(|l| l.trim().parse::<f64>().ok())
    .fold(0.0, f64::max);
    eprintln!("the killed recording decodes to {last:.2} s");
    assert!(last >= 8.0, "decodes only to {last} s");
    let _ = std::fs::remove_dir_all(&dir);
}
