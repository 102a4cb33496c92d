//! Media benchmark: prints milliseconds per frame for H.264 encode and decode (360p, 720p),
//! colour conversion, scaling and Opus. Numbers only, nothing asserted; results go to
//! docs/PERFORMANCE.md. Run in release:
//!   cargo run --release -p liveloop-media --bin liveloop-bench-media
// Indices below are taken modulo the lengths of vectors this file fills.
#![allow(clippy::print_stdout, clippy::indexing_slicing)]

use std::time::Instant;

use liveloop_media::convert::{Scaler, i420_to_rgba, rgba_to_i420};
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice};
use liveloop_media::{MediaError, VideoFrame};

/// Mean milliseconds per call of `f` over `n` calls.
fn time_ms(
    n: usize,
    mut f: impl FnMut(usize) -> Result<(), MediaError>,
) -> Result<f64, MediaError> {
    let start = Instant::now();
    for i in 0..n {
        f(i)?;
    }
    Ok(start.elapsed().as_secs_f64() * 1000.0 / n as f64)
}

fn frames(w: u32, h: u32, n: u64) -> Vec<VideoFrame> {
    let cam = SyntheticCamera::new(w, h, 30.0);
    (0..n).map(|i| cam.render(i, i * 33_333)).collect()
}

fn main() -> Result<(), MediaError> {
    const N: usize = 150;
    println!("| operation | ms per frame |\n| --- | --- |");
    for (label, w, h, bps) in [("360p", 640, 360, 800_000), ("720p", 1280, 720, 1_500_000)] {
        let input = frames(w, h, N as u64);
        let mut enc = H264Encoder::new(H264Config {
            bitrate_bps: bps,
            fps: 30.0,
        })?;
        let mut coded = Vec::with_capacity(N);
        let enc_ms = time_ms(N, |i| {
            coded.push(enc.encode(&input[i % input.len()])?.data);
            Ok(())
        })?;
        let mut dec = H264Decoder::new()?;
        let dec_ms = time_ms(N, |i| dec.decode(&coded[i]).map(drop))?;
        let kbps =
            coded.iter().map(Vec::len).sum::<usize>() as f64 * 8.0 / (N as f64 / 30.0) / 1000.0;
        println!(
            "| H.264 encode {label} at {} kbps (one thread; got {kbps:.0} kbps) | {enc_ms:.2} |",
            bps / 1000
        );
        println!("| H.264 decode {label} | {dec_ms:.2} |");
    }
    let hd = frames(1280, 720, 10);
    let to_rgba = time_ms(N, |i| i420_to_rgba(&hd[i % hd.len()]).map(drop))?;
    let rgba = i420_to_rgba(&hd[0])?;
    let from_rgba = time_ms(N, |_| rgba_to_i420(&rgba, 1280, 720).map(drop))?;
    let mut scaler = Scaler::new();
    let down = time_ms(N, |i| scaler.scale(&hd[i % hd.len()], 640, 360).map(drop))?;
    let small = frames(640, 360, 1);
    let up = time_ms(N, |_| scaler.scale(&small[0], 1280, 720).map(drop))?;
    println!("| I420 → RGBA 720p | {to_rgba:.2} |");
    println!("| RGBA → I420 720p | {from_rgba:.2} |");
    println!("| scale I420 720p → 360p (bilinear) | {down:.2} |");
    println!("| scale I420 360p → 720p (bilinear) | {up:.2} |");

    let mic = SyntheticMic::new(Voice::Speech, true);
    let pcm: Vec<f32> = (0..10 * 48_000).map(|n| mic.sample(n)).collect();
    let mut oenc = OpusEncoder::new(OpusConfig::default())?;
    let chunks: Vec<&[f32]> = pcm.chunks_exact(960).collect();
    let mut packets = Vec::new();
    let oenc_ms = time_ms(chunks.len(), |i| {
        packets.push(oenc.encode(chunks[i])?);
        Ok(())
    })?;
    let mut odec = OpusDecoder::new()?;
    let mut out = vec![0.0f32; 960];
    let odec_ms = time_ms(packets.len(), |i| {
        odec.decode(&packets[i], &mut out).map(drop)
    })?;
    println!(
        "| Opus encode 20 ms frame ({} kbps, FEC on) | {oenc_ms:.3} |",
        OpusConfig::default().bitrate_bps / 1000
    );
    println!("| Opus decode 20 ms frame | {odec_ms:.3} |");
    Ok(())
}
