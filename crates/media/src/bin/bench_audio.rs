//! `liveloop-bench-audio`: the microphone processing (`liveloop_media::processing`) on a
//! simulated echo path, no devices. The far end (a WAV file given as the first argument, such
//! as the quality harness's espeak-ng speech, played in a loop; or, without one, bursts of
//! shaped noise with speech-like pauses) is played out and fed back into the microphone
//! `delay` ms later, attenuated, through a short room impulse response, plus a little noise.
//! Prints, for each echo path, the echo return loss enhancement (ERLE) in the first 2 s, in
//! steady state, and in the 2 s after the path's delay jumps by 40 ms; and the processing's
//! CPU per 10 ms frame. Release build: `cargo run --release -p liveloop-media --bin
//! liveloop-bench-audio [far.wav]`.
//!
//! Not yet measured here (issue 19): double talk and noise suppression scored with PESQ.

#![allow(clippy::print_stdout)] // A bench: its table goes to stdout.

use std::time::Instant;

use liveloop_media::SAMPLE_RATE;
use liveloop_media::processing::{CaptureProcessor, PROCESS_FRAME, ProcessingSettings};

const RATE: usize = SAMPLE_RATE as usize;
const SECONDS: usize = 12;
/// The echo path's delay jumps by 40 ms at this second.
const CHANGE_AT: usize = 8;

type BoxResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> BoxResult<()> {
    let far = match std::env::args().nth(1) {
        Some(path) => load(&path)?,
        None => synthetic_far(),
    };
    println!(
        "far end: {}",
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "synthetic bursts".into())
    );
    println!(
        "{:>9} {:>7} | {:>11} {:>12} {:>13} | {:>10} {:>10}",
        "delay ms", "atten", "ERLE 0-2 s", "ERLE steady", "ERLE 2 s after", "ms/10 ms", "delay est"
    );
    for (delay_ms, atten_db) in [(40, 6.0), (80, 9.0), (150, 12.0)] {
        let r = run(&far, delay_ms, atten_db);
        println!(
            "{delay_ms:>9} {atten_db:>6.0}dB | {:>10.1}dB {:>11.1}dB {:>12.1}dB | {:>10.3} {:>10}",
            r.first,
            r.steady,
            r.after_change,
            r.cpu_ms,
            r.delay_estimate
                .map_or_else(|| "-".into(), |d| format!("{d} ms"))
        );
    }
    println!(
        "goals: ERLE >= 25 dB within 2 s, >= 35 dB steady, >= 25 dB within 2 s of a path change; \
         <= 0.3 ms CPU per 10 ms frame"
    );
    Ok(())
}

struct Figures {
    first: f64,
    steady: f64,
    after_change: f64,
    cpu_ms: f64,
    delay_estimate: Option<i32>,
}

fn run(far: &[f32], delay_ms: usize, atten_db: f32) -> Figures {
    let mut p = CaptureProcessor::new(
        ProcessingSettings {
            echo_cancellation: true,
            noise_suppression: false,
            auto_gain: false,
        },
        None,
    );
    let gain = 10f32.powf(-atten_db / 20.0);
    // A short room: the direct path and three reflections.
    let room: [(usize, f32); 4] = [(0, 1.0), (96, 0.5), (336, 0.25), (720, 0.12)];
    let total = RATE * SECONDS;
    let far_at = |i: usize| far.get(i % far.len().max(1)).copied().unwrap_or(0.0);
    let mut noise = 7u32;
    let (mut windows, mut cpu) = ([(0.0f64, 0.0f64); 3], 0.0f64);
    for start in (0..total).step_by(PROCESS_FRAME) {
        let frame: Vec<f32> = (start..start + PROCESS_FRAME).map(far_at).collect();
        p.render(&frame);
        let delay = RATE * delay_ms / 1000
            + if start >= RATE * CHANGE_AT {
                RATE * 40 / 1000
            } else {
                0
            };
        let mut mic: Vec<f32> = (start..start + PROCESS_FRAME)
            .map(|i| {
                let echo: f32 = room
                    .iter()
                    .filter_map(|&(d, g)| i.checked_sub(delay + d).map(|j| far_at(j) * g))
                    .sum();
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                echo * gain + (noise as f32 / u32::MAX as f32 - 0.5) * 2e-4
            })
            .collect();
        let before: f64 = mic.iter().map(|s| f64::from(*s).powi(2)).sum();
        let t = Instant::now();
        p.process(&mut mic);
        cpu += t.elapsed().as_secs_f64();
        let after: f64 = mic.iter().map(|s| f64::from(*s).powi(2)).sum();
        let second = start / RATE;
        let window = match second {
            0..2 => Some(0),
            5..CHANGE_AT => Some(1),
            s if (CHANGE_AT..CHANGE_AT + 2).contains(&s) => Some(2),
            _ => None,
        };
        if let Some(w) = window.and_then(|w| windows.get_mut(w)) {
            w.0 += before;
            w.1 += after;
        }
    }
    let erle = |(before, after): (f64, f64)| 10.0 * (before / after.max(1e-15)).log10();
    Figures {
        first: erle(windows[0]),
        steady: erle(windows[1]),
        after_change: erle(windows[2]),
        cpu_ms: cpu * 1000.0 / (total / PROCESS_FRAME) as f64,
        delay_estimate: p.echo_stats().1,
    }
}

/// Bursts of noise shaped like speech's spectrum (a one-pole low-pass), 0.4–1.2 s long, with
/// 0.2–0.5 s pauses.
fn synthetic_far() -> Vec<f32> {
    let mut out = Vec::with_capacity(RATE * 10);
    let mut state = 12345u32;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        state as f32 / u32::MAX as f32
    };
    let mut lp = 0.0f32;
    while out.len() < RATE * 10 {
        let talk = (0.4 + 0.8 * next()) * RATE as f32;
        for _ in 0..talk as usize {
            lp = 0.9 * lp + 0.1 * (next() - 0.5);
            out.push(lp * 2.0);
        }
        let pause = (0.2 + 0.3 * next()) * RATE as f32;
        out.extend(std::iter::repeat_n(0.0, pause as usize));
    }
    out
}

fn load(path: &str) -> BoxResult<Vec<f32>> {
    let mut reader = hound::WavReader::open(path)?;
    let spec = reader.spec();
    if spec.sample_rate != SAMPLE_RATE {
        return Err(format!("{path}: {} Hz, not 48000", spec.sample_rate).into());
    }
    let channels = usize::from(spec.channels.max(1));
    let samples: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => reader
            .samples::<i16>()
            .filter_map(std::result::Result::ok)
            .map(|s| f32::from(s) / 32768.0)
            .collect(),
        hound::SampleFormat::Float => reader
            .samples::<f32>()
            .filter_map(std::result::Result::ok)
            .collect(),
    };
    Ok(samples
        .chunks(channels)
        .map(|c| c.iter().sum::<f32>() / channels as f32)
        .collect())
}
