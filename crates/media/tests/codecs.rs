//! Codec round trips on synthetic media (acceptance figures of the media pipeline).

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::opus::{OpusConfig, OpusDecoder, OpusEncoder};
use liveloop_media::quality::{aligned_correlation, psnr};
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice, read_stamp};

fn round_trip(
    width: u32,
    height: u32,
    bitrate: u32,
    frames: u64,
) -> Vec<(
    liveloop_media::VideoFrame,
    Option<liveloop_media::VideoFrame>,
)> {
    let cam = SyntheticCamera::new(width, height, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: bitrate,
        fps: 30.0,
    })
    .unwrap();
    let mut dec = H264Decoder::new().unwrap();
    (0..frames)
        .map(|n| {
            let src = cam.render(n, 1_700_000_000_000_000 + n * 33_333);
            let coded = enc.encode(&src).unwrap();
            let out = dec.decode(&coded.data).unwrap();
            (src, out)
        })
        .collect()
}

#[test]
fn h264_720p_at_1500_kbps_keeps_psnr_above_35_db() {
    let pairs = round_trip(1280, 720, 1_500_000, 60);
    let mut worst = f64::INFINITY;
    let mut sum = 0.0;
    // The first frames are the rate controller settling; judge the last second.
    for (src, out) in pairs.iter().skip(30) {
        let out = out.as_ref().expect("every frame decodes");
        let p = psnr(src, out);
        worst = worst.min(p);
        sum += p;
    }
    let mean = sum / 30.0;
    eprintln!("720p @ 1.5 Mbps: mean PSNR {mean:.2} dB, worst {worst:.2} dB");
    assert!(
        mean >= 35.0 && worst >= 33.0,
        "mean {mean:.2} dB, worst {worst:.2} dB"
    );
}

#[test]
fn stamps_survive_300_kbps_on_every_frame() {
    for (w, h) in [(1280, 720), (640, 360)] {
        let pairs = round_trip(w, h, 300_000, 90);
        for (src, out) in &pairs {
            let out = out.as_ref().expect("every frame decodes");
            let stamp = read_stamp(out)
                .unwrap_or_else(|| panic!("{w}x{h}: stamp of frame {} unreadable", src.number));
            assert_eq!(u64::from(stamp.number), src.number);
            assert_eq!(
                u64::from(stamp.capture_ms),
                (src.capture_us / 1000) % (1 << 32)
            );
        }
    }
}

#[test]
fn keyframes_on_demand_and_bitrate_changes_while_running() {
    let cam = SyntheticCamera::new(640, 360, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 800_000,
        fps: 30.0,
    })
    .unwrap();
    let first = enc.encode(&cam.render(0, 0)).unwrap();
    assert!(first.keyframe);
    let bytes_at = |enc: &mut H264Encoder, from: u64| -> usize {
        (from..from + 30)
            .map(|n| enc.encode(&cam.render(n, 0)).unwrap().data.len())
            .sum()
    };
    let high = bytes_at(&mut enc, 1);
    enc.set_bitrate(200_000).unwrap();
    let _settle = bytes_at(&mut enc, 31);
    let low = bytes_at(&mut enc, 61);
    eprintln!("bytes per second at 800 kbps {high}, after lowering to 200 kbps {low}");
    assert!(
        low * 2 < high,
        "lowering the bitrate shrank output from {high} to {low} bytes/s"
    );
    assert!(!enc.encode(&cam.render(91, 0)).unwrap().keyframe);
    enc.request_keyframe();
    assert!(enc.encode(&cam.render(92, 0)).unwrap().keyframe);
    enc.set_frame_rate(15.0).unwrap();
    assert!(enc.encode(&cam.render(93, 0)).is_ok());
    // Odd sizes are refused with an error, not a crash.
    let mut odd = cam.render(0, 0);
    odd.width -= 1;
    assert!(enc.encode(&odd).is_err());
}

/// The SPS says constrained baseline (profile_idc 66 with constraint_set1), which every browser
/// decodes; with packetization-mode 1 that is the `42e0xx` profile-level-id Chromium offers.
#[test]
fn output_is_constrained_baseline() {
    let cam = SyntheticCamera::new(640, 360, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 500_000,
        fps: 30.0,
    })
    .unwrap();
    let au = enc.encode(&cam.render(0, 0)).unwrap().data;
    let sps = au
        .windows(5)
        .find(|w| w[..3] == [0, 0, 1] && w[3] & 0x1f == 7)
        .map(|w| w.as_ptr() as usize - au.as_ptr() as usize + 4)
        .expect("an SPS in the first access unit");
    let (profile, constraints, level) = (au[sps], au[sps + 1], au[sps + 2]);
    eprintln!("SPS profile-level-id {profile:02x}{constraints:02x}{level:02x}");
    assert_eq!(profile, 66, "baseline");
    assert!(
        constraints & 0x40 != 0,
        "constraint_set1_flag: constrained baseline ({constraints:08b})"
    );
}

#[test]
fn decoder_survives_garbage() {
    let mut dec = H264Decoder::new().unwrap();
    for junk in [&b""[..], b"\x00\x00\x00\x01\x65garbage", &[0xffu8; 4096]] {
        let _ = dec.decode(junk);
    }
    // And still decodes a real stream afterwards.
    let pairs = round_trip(320, 180, 300_000, 3);
    assert!(pairs.iter().all(|(_, out)| out.is_some()));
}

fn opus_round_trip(frame_ms: u32, lose_every: Option<usize>) -> (Vec<f32>, Vec<f32>) {
    let mic = SyntheticMic::new(Voice::Speech, false);
    let reference: Vec<f32> = (0..3 * 48_000).map(|n| mic.sample(n)).collect();
    let mut enc = OpusEncoder::new(OpusConfig {
        frame_ms,
        ..OpusConfig::default()
    })
    .unwrap();
    let mut dec = OpusDecoder::new().unwrap();
    let n = enc.frame_len();
    let packets: Vec<Vec<u8>> = reference
        .chunks_exact(n)
        .map(|f| enc.encode(f).unwrap())
        .collect();
    let mut out = Vec::new();
    let mut buf = vec![0.0f32; n];
    for (i, p) in packets.iter().enumerate() {
        let lost = lose_every.is_some_and(|k| i % k == k - 1);
        let got = if lost {
            dec.conceal(packets.get(i + 1).map(Vec::as_slice), &mut buf)
                .unwrap()
        } else {
            dec.decode(p, &mut buf).unwrap()
        };
        out.extend_from_slice(&buf[..got]);
    }
    (reference, out)
}

#[test]
fn opus_speech_keeps_its_waveform() {
    for frame_ms in [20, 10] {
        let (reference, out) = opus_round_trip(frame_ms, None);
        let (delay, c) = aligned_correlation(&reference, &out, 2_000);
        eprintln!("Opus {frame_ms} ms: correlation {c:.3} at {delay} samples delay");
        assert!(c >= 0.9, "{frame_ms} ms frames: correlation {c:.3}");
    }
}

#[test]
fn opus_fec_and_concealment_cover_losses() {
    let (reference, out) = opus_round_trip(20, Some(10));
    let (_, c) = aligned_correlation(&reference, &out, 2_000);
    eprintln!("Opus with 10% loss (FEC from the next packet): correlation {c:.3}");
    assert!(c >= 0.8, "correlation with 10% loss {c:.3}");
    assert_eq!(
        out.len(),
        reference.len() / 960 * 960,
        "every frame accounted for"
    );
    let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
    assert!(enc.encode(&[0.0; 100]).is_err());
    assert!(
        OpusEncoder::new(OpusConfig {
            frame_ms: 15,
            ..OpusConfig::default()
        })
        .is_err()
    );
    let mut dec = OpusDecoder::new().unwrap();
    let mut buf = vec![0.0; 960];
    let _ = dec.decode(&[0xff, 0xff, 0xff], &mut buf);
    // DTX: silence costs almost nothing.
    let silent: usize = (0..50)
        .map(|_| enc.encode(&[0.0; 960]).unwrap().len())
        .sum();
    assert!(silent < 50 * 20, "50 silent frames took {silent} bytes");
}

/// A small picture's bitrate can be raised past the rate its encoder started at (the
/// send-rate policy raises it as the estimate grows; a low layer starts at the size its
/// estimate fits): found in the LAN app test, where every frame at 320x180 logged "bitrate
/// refused" once the target rose. The encoder must then spend more, and keep decoding.
#[test]
fn h264_bitrate_rises_past_the_rate_it_started_at() {
    let cam = SyntheticCamera::new(320, 180, 15.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 100_000,
        fps: 15.0,
    })
    .unwrap();
    let mut dec = H264Decoder::new().unwrap();
    let mut n = 0;
    // The bytes of 15 frames (one second), keyframes aside.
    let mut second = |enc: &mut H264Encoder, dec: &mut H264Decoder| {
        let mut bytes = 0;
        for _ in 0..15 {
            let src = cam.render(n, 1_700_000_000_000_000 + n * 66_666);
            n += 1;
            let coded = enc.encode(&src).unwrap();
            assert!(dec.decode(&coded.data).unwrap().is_some(), "frame {n}");
            if !coded.keyframe {
                bytes += coded.data.len();
            }
        }
        bytes
    };
    second(&mut enc, &mut dec);
    let low = second(&mut enc, &mut dec);
    for bps in [400_000, 563_398, 1_500_000] {
        enc.set_bitrate(bps)
            .unwrap_or_else(|e| panic!("{bps} bit/s: {e}"));
        assert_eq!(enc.config().bitrate_bps, bps);
        second(&mut enc, &mut dec);
    }
    let high = second(&mut enc, &mut dec);
    eprintln!("320x180@15: {low} bytes/s at 100 kbit/s, {high} at 1.5 Mbit/s");
    assert!(
        high > low * 3 / 2,
        "{low} bytes/s at 100 kbit/s, {high} at 1.5 Mbit/s"
    );
    // And back down.
    enc.set_bitrate(200_000).unwrap();
    second(&mut enc, &mut dec);
    let down = second(&mut enc, &mut dec);
    eprintln!("{down} bytes/s at 200 kbit/s again");
    assert!(
        down < high,
        "{down} bytes/s at 200 kbit/s again, {high} at 1.5 Mbit/s"
    );
}
