//! `liveloop-bench-audio`: the microphone processing (`liveloop_media::processing`) on a
//! simulated room, no devices. `./dev bench-audio` runs it on espeak-ng speech and scores the
//! files it writes with PESQ; by hand: `cargo run --release -p liveloop-media --bin
//! liveloop-bench-audio -- [--out DIR] [far.wav [near.wav]]` (48 kHz WAVs; without them,
//! bursts of speech-shaped noise stand in for the far end, and only the echo table is made).
//!
//! The far end is played out and fed back into the microphone `delay` ms later, attenuated,
//! through a short room impulse response (the direct path and three reflections), plus a
//! little noise. Printed:
//! - echo (AEC only): echo return loss enhancement (ERLE) in the first 2 s, in steady state,
//!   and in the 2 s after the path's delay jumps by 40 ms, for three echo paths;
//! - double talk (with near.wav): the far end talks from the start, the near end from 3 s;
//!   the near end's speech as the far end receives it is written out (processed with all
//!   three parts on, and unprocessed) for PESQ against the clean near speech;
//! - noise suppression (with near.wav): the near speech with steady fan-like noise, and with
//!   babble (six copies of the far speech at other offsets), at 5 dB SNR: the SNR before and
//!   after (speech power over the frames where the clean speech is active, noise power over
//!   those where it is silent), and files for PESQ;
//! - CPU per 10 ms frame with all three parts on, and the latency the processing adds (the
//!   lag at which the near end's output best matches its input);
//! - the codec alone (with near.wav): the near speech through Opus and back in 10 and 20 ms
//!   frames at 48 and 64 kbit/s (`opus<frame>_<kbit/s>.wav`), for PESQ: which rate 10 ms
//!   frames need to keep what 20 ms frames give at 48.

#![allow(clippy::print_stdout)] // A bench: its table goes to stdout.

use std::path::{Path, PathBuf};
use std::time::Instant;

use liveloop_media::SAMPLE_RATE;
use liveloop_media::processing::{CaptureProcessor, PROCESS_FRAME, ProcessingSettings};

const RATE: usize = SAMPLE_RATE as usize;
const SECONDS: usize = 12;
/// The echo path's delay jumps by 40 ms at this second.
const CHANGE_AT: usize = 8;
/// Double talk: the near end starts talking at this second (the far end at 0).
const NEAR_FROM: usize = 3;
/// The SNR the noise is mixed at.
const NOISE_SNR_DB: f64 = 5.0;

const AEC_ONLY: ProcessingSettings = ProcessingSettings {
    echo_cancellation: true,
    noise_suppression: false,
    auto_gain: false,
};
const NS_ONLY: ProcessingSettings = ProcessingSettings {
    echo_cancellation: false,
    noise_suppression: true,
    auto_gain: false,
};

type BoxResult<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> BoxResult<()> {
    let mut args = std::env::args().skip(1);
    let mut out_dir = None;
    let mut files = Vec::new();
    while let Some(a) = args.next() {
        if a == "--out" {
            out_dir = Some(PathBuf::from(args.next().ok_or("--out needs a folder")?));
        } else {
            files.push(a);
        }
    }
    let far = match files.first() {
        Some(path) => load(path)?,
        None => synthetic_far(),
    };
    println!(
        "far end: {}",
        files
            .first()
            .cloned()
            .unwrap_or_else(|| "synthetic bursts".into())
    );
    echo_table(&far);
    let Some(near) = files.get(1) else {
        println!("(double talk and noise suppression need a near-end speech file)");
        return Ok(());
    };
    let near = load(near)?;
    let out_dir = out_dir.unwrap_or_else(|| std::env::temp_dir().join("liveloop-bench-audio"));
    std::fs::create_dir_all(&out_dir)?;
    for atten_db in [9, 18] {
        double_talk(&far, &near, atten_db, &out_dir)?;
    }
    noise_suppression(&far, &near, &out_dir)?;
    codec_alone(&near, &out_dir)?;
    println!("files for PESQ: {}", out_dir.display());
    Ok(())
}

fn codec_alone(near: &[f32], dir: &Path) -> BoxResult<()> {
    use liveloop_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};
    for frame_ms in [10u32, 20] {
        for kbps in [48i32, 64] {
            let mut enc = OpusEncoder::new(OpusConfig {
                bitrate_bps: kbps * 1000,
                frame_ms,
                expected_loss_percent: 5,
                dtx: true,
            })?;
            let mut dec = OpusDecoder::new()?;
            let len = frame_ms as usize * RATE / 1000;
            let mut out = Vec::with_capacity(near.len());
            let mut pcm = vec![0.0f32; len];
            let mut bytes = 0usize;
            for chunk in near.chunks_exact(len) {
                let packet = enc.encode(chunk)?;
                bytes += packet.len();
                let n = dec.decode(&packet, &mut pcm)?;
                out.extend_from_slice(pcm.get(..n).unwrap_or(&pcm));
            }
            let name = format!("opus{frame_ms}_{kbps}.wav");
            write(&dir.join(&name), &out)?;
            let secs = out.len() as f64 / RATE as f64;
            println!(
                "codec alone: {frame_ms} ms frames at {kbps} kbit/s ({:.1} kbit/s of payload): {name}",
                bytes as f64 * 8.0 / secs / 1000.0
            );
        }
    }
    Ok(())
}

fn echo_table(far: &[f32]) {
    println!(
        "{:>9} {:>7} | {:>11} {:>12} {:>13} | {:>10} {:>10}",
        "delay ms", "atten", "ERLE 0-2 s", "ERLE steady", "ERLE 2 s after", "ms/10 ms", "delay est"
    );
    for (delay_ms, atten_db) in [(40, 6.0), (80, 9.0), (150, 12.0)] {
        let r = echo_run(far, delay_ms, atten_db);
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
}

/// The simulated room between the speaker and the microphone.
struct EchoPath {
    gain: f32,
    delay: usize,
    noise: u32,
}

impl EchoPath {
    /// The direct path and three reflections (sample offset, gain).
    const ROOM: [(usize, f32); 4] = [(0, 1.0), (96, 0.5), (336, 0.25), (720, 0.12)];

    fn new(delay_ms: usize, atten_db: f32) -> Self {
        Self {
            gain: 10f32.powf(-atten_db / 20.0),
            delay: RATE * delay_ms / 1000,
            noise: 7,
        }
    }

    /// The microphone's 10 ms frame from `start`: the echo of `far` and a little noise.
    fn mic(&mut self, far: &[f32], start: usize, extra_delay: usize) -> Vec<f32> {
        (start..start + PROCESS_FRAME)
            .map(|i| {
                let echo: f32 = Self::ROOM
                    .iter()
                    .filter_map(|&(d, g)| {
                        i.checked_sub(self.delay + extra_delay + d)
                            .map(|j| looped(far, j) * g)
                    })
                    .sum();
                echo * self.gain + xorshift(&mut self.noise) * 2e-4
            })
            .collect()
    }
}

fn looped(x: &[f32], i: usize) -> f32 {
    x.get(i % x.len().max(1)).copied().unwrap_or(0.0)
}

fn frame_of(x: &[f32], start: usize) -> Vec<f32> {
    (start..start + PROCESS_FRAME)
        .map(|i| looped(x, i))
        .collect()
}

struct Figures {
    first: f64,
    steady: f64,
    after_change: f64,
    cpu_ms: f64,
    delay_estimate: Option<i32>,
}

fn echo_run(far: &[f32], delay_ms: usize, atten_db: f32) -> Figures {
    let mut p = CaptureProcessor::new(AEC_ONLY, None);
    let mut path = EchoPath::new(delay_ms, atten_db);
    let total = RATE * SECONDS;
    let (mut windows, mut cpu) = ([(0.0f64, 0.0f64); 3], 0.0f64);
    for start in (0..total).step_by(PROCESS_FRAME) {
        p.render(&frame_of(far, start));
        let jump = if start >= RATE * CHANGE_AT {
            RATE * 40 / 1000
        } else {
            0
        };
        let mut mic = path.mic(far, start, jump);
        let before = energy(&mic);
        let t = Instant::now();
        p.process(&mut mic);
        cpu += t.elapsed().as_secs_f64();
        let after = energy(&mic);
        let window = match start / RATE {
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

fn energy(x: &[f32]) -> f64 {
    x.iter().map(|s| f64::from(*s).powi(2)).sum()
}

/// Both talk: the far end from 0, the near end (one pass of `near`) from [`NEAR_FROM`], over
/// an 80 ms echo path `atten_db` down. Writes the clean near speech and what the far end receives,
/// processed (all on; AEC only) and not, and the near end alone processed (what the
/// processing costs the voice by itself).
fn double_talk(far: &[f32], near: &[f32], atten_db: u8, dir: &Path) -> BoxResult<()> {
    let lead = RATE * NEAR_FROM;
    let total = (lead + near.len()).div_ceil(PROCESS_FRAME) * PROCESS_FRAME;
    let near_at = |i: usize| {
        i.checked_sub(lead)
            .and_then(|j| near.get(j))
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "double talk (80 ms, -{atten_db} dB echo; near end from {NEAR_FROM} s): files doubletalk{atten_db}_*.wav"
    );
    let mut raw = Vec::with_capacity(total);
    let silent = vec![0.0; RATE];
    for (label, settings, far) in [
        ("all", ProcessingSettings::default(), far),
        ("aec", AEC_ONLY, far),
        ("alone", ProcessingSettings::default(), &silent[..]),
    ] {
        let mut p = CaptureProcessor::new(settings, None);
        let mut path = EchoPath::new(80, f32::from(atten_db));
        let mut out = Vec::with_capacity(total);
        let mut cpu = 0.0f64;
        for start in (0..total).step_by(PROCESS_FRAME) {
            p.render(&frame_of(far, start));
            let mut mic = path.mic(far, start, 0);
            for (k, s) in mic.iter_mut().enumerate() {
                *s += near_at(start + k);
            }
            if label == "all" {
                raw.extend_from_slice(&mic);
            }
            let t = Instant::now();
            p.process(&mut mic);
            cpu += t.elapsed().as_secs_f64();
            out.extend_from_slice(&mic);
        }
        let processed = out.get(lead..).unwrap_or_default();
        write(
            &dir.join(format!("doubletalk{atten_db}_{label}.wav")),
            processed,
        )?;
        println!(
            "  {label:>5}: {:.3} ms CPU per 10 ms frame; output {:.1} ms behind its input",
            cpu * 1000.0 / (total / PROCESS_FRAME) as f64,
            lag_ms(near, processed)
        );
    }
    write(
        &dir.join(format!("doubletalk{atten_db}_raw.wav")),
        raw.get(lead..).unwrap_or_default(),
    )?;
    write(&dir.join("doubletalk_ref.wav"), near)?;
    Ok(())
}

/// The near speech in steady fan-like noise and in babble at [`NOISE_SNR_DB`], processed
/// with noise suppression only; the SNR before and after.
fn noise_suppression(far: &[f32], near: &[f32], dir: &Path) -> BoxResult<()> {
    write(&dir.join("ns_ref.wav"), near)?;
    // Which 10 ms frames hold speech: within 30 dB of the loudest.
    let frame_power = frame_powers(near);
    let loudest = frame_power.iter().copied().fold(0.0, f64::max);
    let active: Vec<bool> = frame_power.iter().map(|p| *p > loudest * 1e-3).collect();
    let speech_power = mean_over(&frame_power, &active, true);
    println!(
        "noise suppression ({NOISE_SNR_DB} dB SNR; NS only): {:>14} {:>14} | files ns_*.wav",
        "SNR before", "SNR after"
    );
    for (label, noise) in [
        ("fan", fan_noise(near.len())),
        ("babble", babble(far, near.len())),
    ] {
        let noise_power = energy(&noise) / noise.len().max(1) as f64;
        let scale = (speech_power / noise_power / 10f64.powf(NOISE_SNR_DB / 10.0)).sqrt() as f32;
        let mixed: Vec<f32> = near
            .iter()
            .zip(&noise)
            .map(|(s, n)| s + n * scale)
            .collect();
        let mut p = CaptureProcessor::new(NS_ONLY, None);
        let mut out = mixed.clone();
        for frame in out.chunks_exact_mut(PROCESS_FRAME) {
            p.process(frame);
        }
        write(&dir.join(format!("ns_{label}_raw.wav")), &mixed)?;
        write(&dir.join(format!("ns_{label}_out.wav")), &out)?;
        println!(
            "  {label:>6}: {:>36.1} dB {:>11.1} dB",
            snr(&mixed, &active),
            snr(&out, &active)
        );
    }
    println!("goal: SNR gain >= 10 dB, and a PESQ gain over unprocessed");
    Ok(())
}

/// How far `y` lags `x`: the lag (0-40 ms) where their cross-correlation's magnitude peaks,
/// over the first 3 s (the filter bank may also flip the sign).
fn lag_ms(x: &[f32], y: &[f32]) -> f64 {
    let n = x.len().min(y.len()).min(3 * RATE);
    let (x, y) = (
        x.get(..n).unwrap_or_default(),
        y.get(..n).unwrap_or_default(),
    );
    let best = (0..RATE / 25)
        .map(|lag| {
            let c: f64 = x
                .iter()
                .zip(y.iter().skip(lag))
                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                .sum();
            (lag, c.abs())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .map_or(0, |(lag, _)| lag);
    best as f64 * 1000.0 / RATE as f64
}

/// Each 10 ms frame's mean square.
fn frame_powers(x: &[f32]) -> Vec<f64> {
    x.chunks(PROCESS_FRAME)
        .map(|c| energy(c) / c.len().max(1) as f64)
        .collect()
}

fn mean_over(power: &[f64], active: &[bool], want: bool) -> f64 {
    let (sum, n) = power
        .iter()
        .zip(active)
        .filter(|(_, a)| **a == want)
        .fold((0.0, 0usize), |(s, n), (p, _)| (s + p, n + 1));
    sum / n.max(1) as f64
}

/// Speech power (over the active frames, less the noise) over noise power (the silent ones).
fn snr(x: &[f32], active: &[bool]) -> f64 {
    let power = frame_powers(x);
    let noise = mean_over(&power, active, false);
    let speech = (mean_over(&power, active, true) - noise).max(1e-15);
    10.0 * (speech / noise.max(1e-15)).log10()
}

fn xorshift(state: &mut u32) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state as f32 / u32::MAX as f32 - 0.5
}

/// A fan: noise low-passed twice (most of its power under 1 kHz), with a faint blade hum.
fn fan_noise(n: usize) -> Vec<f32> {
    let mut state = 99u32;
    let (mut a, mut b) = (0.0f32, 0.0f32);
    (0..n)
        .map(|i| {
            a = 0.97 * a + 0.03 * xorshift(&mut state);
            b = 0.9 * b + 0.1 * a;
            let hum = 0.02 * (std::f32::consts::TAU * 120.0 * i as f32 / RATE as f32).sin();
            b + hum
        })
        .collect()
}

/// Babble: six talkers, each the far speech from another point of its loop.
fn babble(far: &[f32], n: usize) -> Vec<f32> {
    let offsets: Vec<usize> = (1..=6).map(|k| k * far.len() / 7 + k * 997).collect();
    (0..n)
        .map(|i| offsets.iter().map(|o| looped(far, i + o)).sum::<f32>() / 6.0)
        .collect()
}

fn write(path: &Path, samples: &[f32]) -> BoxResult<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
    }
    w.finalize()?;
    Ok(())
}

/// Bursts of noise shaped like speech's spectrum (a one-pole low-pass), 0.4–1.2 s long, with
/// 0.2–0.5 s pauses.
fn synthetic_far() -> Vec<f32> {
    let mut out = Vec::with_capacity(RATE * 10);
    let mut state = 12345u32;
    let mut next = move || xorshift(&mut state) + 0.5;
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
