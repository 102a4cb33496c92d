//! Randomised robustness check of the media parsers and decoders that read outside input:
//! Y4M headers and files, WAV files, camera pixel buffers, JPEG, H.264, VP8 and Opus packets. Any
//! input must give a value or a typed error, never a panic. Seeded, so failures reproduce.

// Test code: failing loudly is intended.
#![allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use liveloop_media::device::pixel::{mjpeg_to_i420, nv12_to_i420, rgb_to_i420, yuyv_to_i420};
use liveloop_media::file::{WavSource, Y4mSource, parse_y4m_header};
use liveloop_media::h264::{H264Config, H264Decoder, H264Encoder};
use liveloop_media::opus::OpusDecoder;
use liveloop_media::synthetic::SyntheticCamera;
use liveloop_media::vp8::{Vp8Decoder, Vp8Encoder};
use liveloop_media::{VideoFrame, VideoSource};

use rand::{Rng as _, SeedableRng};

/// A seeded generator (failures reproduce) and the byte mutations.
struct Rng(rand::rngs::StdRng);

impl Rng {
    fn seeded(seed: u64) -> Self {
        Self(rand::rngs::StdRng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.random()
    }
    fn below(&mut self, n: usize) -> usize {
        self.0.random_range(0..n.max(1))
    }
    fn mutate(&mut self, data: &mut Vec<u8>) {
        for _ in 0..=self.below(8) {
            if data.is_empty() {
                data.push(self.next() as u8);
                continue;
            }
            let at = self.below(data.len());
            match self.below(3) {
                0 => data[at] ^= 1 << self.below(8),
                1 => {
                    data.truncate(at);
                }
                _ => data.insert(at, self.next() as u8),
            }
        }
    }
}

#[test]
fn y4m_headers_and_files() {
    let mut rng = Rng::seeded(0xfeed_0001);
    let seed = "YUV4MPEG2 W640 H360 F30000:1001 Ip A1:1 C420jpeg";
    for _ in 0..20_000 {
        let mut bytes = seed.as_bytes().to_vec();
        rng.mutate(&mut bytes);
        let _ = parse_y4m_header(&String::from_utf8_lossy(&bytes));
    }
    let dir = std::env::temp_dir().join(format!("liveloop-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cam = SyntheticCamera::new(32, 32, 30.0);
    let mut good = Vec::new();
    liveloop_media::file::write_y4m(&mut good, &[cam.render(0, 0), cam.render(1, 0)], 30).unwrap();
    for i in 0..300 {
        let mut bytes = good.clone();
        rng.mutate(&mut bytes);
        let path = dir.join(format!("f{i}.y4m"));
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(mut src) = Y4mSource::open(&path) {
            for n in 0..4 {
                let _ = src.next_frame(n);
            }
        }
        let wav = dir.join(format!("f{i}.wav"));
        let mut w = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x80\xbb\x00\x00\x00\x77\x01\x00\x02\x00\x10\x00data\x00\x00\x00\x00".to_vec();
        w.extend((0..200).map(|_| rng.next() as u8));
        rng.mutate(&mut w);
        std::fs::write(&wav, &w).unwrap();
        let _ = WavSource::open(&wav);
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pixel_buffers_jpeg_h264_and_opus() {
    let mut rng = Rng::seeded(0xfeed_0002);
    for _ in 0..2_000 {
        let len = rng.below(5_000);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let (w, h) = (rng.below(80) as u32, rng.below(80) as u32);
        let _ = yuyv_to_i420(&bytes, w, h);
        let _ = nv12_to_i420(&bytes, w, h);
        let _ = rgb_to_i420(&bytes, w, h);
        let _ = mjpeg_to_i420(&bytes);
    }
    // H.264: mutate a real stream and feed it to one decoder.
    let cam = SyntheticCamera::new(160, 96, 30.0);
    let mut enc = H264Encoder::new(H264Config {
        bitrate_bps: 200_000,
        fps: 30.0,
    })
    .unwrap();
    let stream: Vec<Vec<u8>> = (0..20)
        .map(|n| enc.encode(&cam.render(n, 0)).unwrap().data)
        .collect();
    let mut dec = H264Decoder::new().unwrap();
    for round in 0..400 {
        let mut au = stream[round % stream.len()].clone();
        rng.mutate(&mut au);
        let _ = dec.decode(&au);
    }
    // VP8 (libvpx, reached by what a Firefox peer sends): mutated frames of a real stream.
    let mut vp8 = Vp8Encoder::new(H264Config {
        bitrate_bps: 200_000,
        fps: 30.0,
    })
    .unwrap();
    let frames: Vec<Vec<u8>> = (0..20)
        .map(|n| vp8.encode(&cam.render(n, 0)).unwrap().data)
        .collect();
    let mut dec = Vp8Decoder::new().unwrap();
    for round in 0..2_000 {
        let mut frame = frames[round % frames.len()].clone();
        rng.mutate(&mut frame);
        if let Ok(Some(f)) = dec.decode(&frame) {
            assert_eq!(f.data.len(), VideoFrame::i420_len(f.width, f.height));
        }
    }
    let mut opus = OpusDecoder::new().unwrap();
    let mut out = vec![0.0f32; 5760];
    for _ in 0..5_000 {
        let len = rng.below(200);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = opus.decode(&bytes, &mut out);
    }
}
