//! Synthetic camera and microphone for tests, demos and benchmarks.
//!
//! The camera draws moving, camera-like content (gradients, moving soft discs, a scrolling
//! texture, faint sensor noise) and stamps each frame's number and capture time into a block
//! code in the top-left corner: 72 bits (32-bit frame number, 32-bit capture milliseconds,
//! 8-bit CRC) as 2 rows of 36 black/white blocks of 16x16 pixels (8x8 below 576 pixels wide),
//! aligned to the codec's macroblocks so that H.264 at 300 kbps keeps them readable.
//!
//! The microphone makes a steady tone or a speech-like voice (a gliding harmonic series with
//! changing vowels and syllable rhythm, all below 1.2 kHz) and adds a timing mark every second:
//! a 20 ms, 2.4 kHz burst that `find_marks` locates in a received signal.
//!
//! Both are deterministic functions of the frame or sample index: they never read a clock.

use std::f32::consts::TAU;

use crate::frame::{SAMPLE_RATE, VideoFrame};
use crate::{AudioSource, MediaError, VideoFormat, VideoSource};

const STAMP_COLS: u32 = 36;
const STAMP_ROWS: u32 = 2;
const STAMP_BITS: usize = 72;

/// What a frame's stamp says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub number: u32,
    /// Capture time in milliseconds, modulo 2^32.
    pub capture_ms: u32,
}

fn block_size(width: u32) -> u32 {
    if width >= STAMP_COLS * 16 { 16 } else { 8 }
}

fn crc8(bytes: &[u8]) -> u8 {
    // CRC-8 with polynomial 0x07 and a non-zero start, so that a blank (all-dark or all-light)
    // corner of someone else's video never reads as a valid stamp.
    let mut crc = 0x5Au8;
    for &b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn stamp_bits(stamp: Stamp) -> [bool; STAMP_BITS] {
    let mut bytes = [0u8; 9];
    bytes[..4].copy_from_slice(&stamp.number.to_be_bytes());
    bytes[4..8].copy_from_slice(&stamp.capture_ms.to_be_bytes());
    bytes[8] = crc8(&bytes[..8]);
    let mut bits = [false; STAMP_BITS];
    for (i, bit) in bits.iter_mut().enumerate() {
        *bit = bytes.get(i / 8).is_some_and(|b| b >> (7 - i % 8) & 1 == 1);
    }
    bits
}

/// Writes `stamp` into the top-left corner of `frame`. Frames narrower than 288 or lower than
/// 16 pixels cannot carry a stamp and are left alone.
pub fn write_stamp(frame: &mut VideoFrame, stamp: Stamp) {
    let b = block_size(frame.width);
    if frame.width < STAMP_COLS * b || frame.height < STAMP_ROWS * b {
        return;
    }
    let (w, cw) = (frame.width as usize, frame.width.div_ceil(2) as usize);
    let bits = stamp_bits(stamp);
    let (y, u, v) = frame.planes_mut();
    for (i, bit) in bits.iter().enumerate() {
        let (col, row) = (i as u32 % STAMP_COLS, i as u32 / STAMP_COLS);
        let luma = if *bit { 235 } else { 16 };
        for dy in 0..b {
            let py = (row * b + dy) as usize;
            let start = py * w + (col * b) as usize;
            if let Some(line) = y.get_mut(start..start + b as usize) {
                line.fill(luma);
            }
            if dy % 2 == 0 {
                let cstart = (py / 2) * cw + (col * b / 2) as usize;
                for plane in [&mut *u, &mut *v] {
                    if let Some(line) = plane.get_mut(cstart..cstart + (b / 2) as usize) {
                        line.fill(128);
                    }
                }
            }
        }
    }
}

/// Reads the stamp back from a (possibly decoded) frame; `None` if it is missing or damaged.
#[must_use]
pub fn read_stamp(frame: &VideoFrame) -> Option<Stamp> {
    // The sender wrote 16- or 8-pixel blocks at its size; a sender that scales its video down
    // to fit the network (¾, ½ or ¼ of each side) sends them smaller. The block size this
    // width would be written with is tried first.
    let natural = block_size(frame.width);
    std::iter::once(natural)
        .chain([16, 12, 8, 6, 4].into_iter().filter(|b| *b != natural))
        .find_map(|b| read_stamp_with(frame, b))
}

fn read_stamp_with(frame: &VideoFrame, b: u32) -> Option<Stamp> {
    if frame.width < STAMP_COLS * b || frame.height < STAMP_ROWS * b {
        return None;
    }
    let w = frame.width as usize;
    let (y, _, _) = frame.planes();
    let mut bytes = [0u8; 9];
    for i in 0..STAMP_BITS {
        let (col, row) = (i as u32 % STAMP_COLS, i as u32 / STAMP_COLS);
        // Average the block's inner half, away from edges the codec smears.
        let (x0, y0) = (col * b + b / 4, row * b + b / 4);
        let mut sum = 0u32;
        for py in y0..y0 + b / 2 {
            for px in x0..x0 + b / 2 {
                sum += u32::from(*y.get(py as usize * w + px as usize)?);
            }
        }
        if sum / (b * b / 4) > 125
            && let Some(byte) = bytes.get_mut(i / 8)
        {
            *byte |= 1 << (7 - i % 8);
        }
    }
    if crc8(&bytes[..8]) != bytes[8] {
        return None;
    }
    let number = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let capture_ms = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    Some(Stamp { number, capture_ms })
}

/// The synthetic camera.
#[derive(Debug, Clone)]
pub struct SyntheticCamera {
    format: VideoFormat,
    next: u64,
}

impl SyntheticCamera {
    #[must_use]
    pub fn new(width: u32, height: u32, fps: f32) -> Self {
        Self {
            format: VideoFormat {
                width: width.max(2) & !1,
                height: height.max(2) & !1,
                fps,
            },
            next: 0,
        }
    }

    /// Frame `number` as captured at `capture_us` (pure: the same inputs give the same frame).
    #[must_use]
    pub fn render(&self, number: u64, capture_us: u64) -> VideoFrame {
        let (w, h) = (self.format.width, self.format.height);
        let mut frame = VideoFrame::blank(w, h);
        frame.number = number;
        frame.capture_us = capture_us;
        let t = number as f32 / self.format.fps.max(1.0);
        let (wf, hf) = (w as f32, h as f32);
        let discs = [
            (
                0.3 + 0.25 * (t * 0.9).sin(),
                0.5 + 0.3 * (t * 1.3).cos(),
                0.12,
                200.0,
            ),
            (
                0.7 + 0.2 * (t * 1.7).cos(),
                0.4 + 0.25 * (t * 0.8).sin(),
                0.09,
                60.0,
            ),
            (
                0.5 + 0.35 * (t * 0.5).sin(),
                0.7 + 0.15 * (t * 2.1).sin(),
                0.06,
                150.0,
            ),
        ];
        let shift = (number * 3) as usize;
        let (y, u, v) = frame.planes_mut();
        let mut noise = (number as u32).wrapping_mul(2_654_435_761) | 1;
        for py in 0..h as usize {
            let fy = py as f32 / hf;
            let row = y
                .get_mut(py * w as usize..(py + 1) * w as usize)
                .unwrap_or_default();
            for (px, out) in row.iter_mut().enumerate() {
                let fx = px as f32 / wf;
                let mut l = 60.0 + 90.0 * (0.5 + 0.5 * (fx * 3.0 + fy * 2.0 + t * 0.4).sin());
                // A scrolling texture band in the lower third, like a patterned shirt.
                if fy > 0.72 && ((px + shift) / 12 + py / 12).is_multiple_of(2) {
                    l += 25.0;
                }
                for (cx, cy, r, lum) in discs {
                    let d = ((fx - cx) * wf / hf).hypot(fy - cy);
                    if d < r {
                        let edge = ((r - d) / (r * 0.25)).min(1.0);
                        l = l * (1.0 - edge) + lum * edge;
                    }
                }
                noise ^= noise << 13;
                noise ^= noise >> 17;
                noise ^= noise << 5;
                let n = (noise % 5) as f32 - 2.0;
                *out = (l + n).clamp(16.0, 235.0) as u8;
            }
        }
        let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
        for cy in 0..ch {
            for cx in 0..cw {
                let (fx, fy) = (cx as f32 / cw as f32, cy as f32 / ch as f32);
                let i = cy * cw + cx;
                if let (Some(pu), Some(pv)) = (u.get_mut(i), v.get_mut(i)) {
                    *pu = (128.0 + 40.0 * (fx * 2.0 + t * 0.3).sin()) as u8;
                    *pv = (128.0 + 40.0 * (fy * 2.5 - t * 0.2).cos()) as u8;
                }
            }
        }
        let stamp = Stamp {
            number: number as u32,
            capture_ms: (capture_us / 1000) as u32,
        };
        write_stamp(&mut frame, stamp);
        frame
    }
}

impl VideoSource for SyntheticCamera {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError> {
        let frame = self.render(self.next, capture_us);
        self.next += 1;
        Ok(frame)
    }
}

/// What the synthetic microphone says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Voice {
    /// A sine at this frequency (Hz).
    Tone(f32),
    /// A speech-like voice.
    Speech,
    /// Nothing but the timing marks.
    Silence,
}

/// Timing marks: one every second, 20 ms long, at 2.4 kHz.
pub const MARK_PERIOD: usize = SAMPLE_RATE as usize;
pub const MARK_LEN: usize = SAMPLE_RATE as usize / 50;
pub const MARK_HZ: f32 = 2400.0;

/// The synthetic microphone (48 kHz mono).
#[derive(Debug, Clone)]
pub struct SyntheticMic {
    voice: Voice,
    marks: bool,
    next: u64,
    /// Marks on whole seconds of the wall clock: set at the first read (see
    /// [`SyntheticMic::with_clock_marks`]).
    clock_marks: bool,
    mark_offset: u64,
}

impl SyntheticMic {
    #[must_use]
    pub fn new(voice: Voice, marks: bool) -> Self {
        Self {
            voice,
            marks,
            next: 0,
            clock_marks: false,
            mark_offset: 0,
        }
    }

    /// The same voice, with its timing marks at whole seconds of the wall clock (Unix time)
    /// instead of every second from the start: whoever receives or records it can tell when
    /// each mark was captured. The first read takes the clock (and treats its samples as the
    /// 20 ms just captured, like a microphone's).
    #[must_use]
    pub fn with_clock_marks(voice: Voice) -> Self {
        Self {
            clock_marks: true,
            ..Self::new(voice, true)
        }
    }

    /// Sample `n` (pure).
    #[must_use]
    pub fn sample(&self, n: u64) -> f32 {
        let t = n as f32 / SAMPLE_RATE as f32;
        let voice = match self.voice {
            Voice::Tone(f) => 0.5 * (TAU * f * t).sin(),
            Voice::Speech => speech(n),
            Voice::Silence => 0.0,
        };
        let in_period = ((n + self.mark_offset) % MARK_PERIOD as u64) as usize;
        let mark = if self.marks && in_period < MARK_LEN {
            let w = 0.5 - 0.5 * (TAU * in_period as f32 / MARK_LEN as f32).cos();
            0.4 * w * (TAU * MARK_HZ * t).sin()
        } else {
            0.0
        };
        voice + mark
    }
}

/// A speech-like signal: a gliding fundamental with five harmonics shaped by one of three
/// vowel envelopes, in 4 Hz syllables with pauses.
fn speech(n: u64) -> f32 {
    let t = n as f32 / SAMPLE_RATE as f32;
    // Phase of a gliding f0 = 140 + 30 sin(2π 0.7 t): integrate analytically.
    let phase = TAU * (140.0 * t - 30.0 / (TAU * 0.7) * ((TAU * 0.7 * t).cos() - 1.0));
    let vowel = (t * 4.0) as usize % 3;
    let shape: [f32; 5] = match vowel {
        0 => [1.0, 0.8, 0.5, 0.25, 0.1],
        1 => [0.6, 1.0, 0.3, 0.4, 0.15],
        _ => [0.9, 0.3, 0.6, 0.2, 0.3],
    };
    let mut s = 0.0;
    for (k, a) in shape.iter().enumerate() {
        s += a * ((k + 1) as f32 * phase).sin();
    }
    // Syllables: a raised-cosine envelope at 4 Hz, every fifth syllable silent.
    let syllable = (t * 4.0) as u64;
    let env = if syllable % 5 == 4 {
        0.0
    } else {
        0.5 - 0.5 * (TAU * 4.0 * t).cos()
    };
    0.18 * s * env
}

impl AudioSource for SyntheticMic {
    fn read(&mut self, out: &mut [f32]) -> Result<(), MediaError> {
        if self.clock_marks && self.next == 0 {
            let now_us = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros() as u64)
                .unwrap_or_default();
            // Sample 0 was captured one buffer ago.
            let first_us = now_us.saturating_sub(out.len() as u64 * 1_000_000 / 48_000);
            self.mark_offset = (first_us * 48 / 1000) % MARK_PERIOD as u64;
        }
        for s in out.iter_mut() {
            *s = self.sample(self.next);
            self.next += 1;
        }
        Ok(())
    }
}

/// Finds timing-mark onsets (sample indices) in a 48 kHz signal.
#[must_use]
pub fn find_marks(signal: &[f32]) -> Vec<usize> {
    const HOP: usize = 120; // 2.5 ms
    const WIN: usize = 480; // 10 ms
    let coeff = 2.0 * (TAU * MARK_HZ / SAMPLE_RATE as f32).cos();
    let mut onsets = Vec::new();
    let mut last: Option<usize> = None;
    let mut start = 0;
    while start + WIN <= signal.len() {
        let window = signal.get(start..start + WIN).unwrap_or_default();
        let (mut s1, mut s2, mut total) = (0.0f32, 0.0f32, 0.0f32);
        for &x in window {
            let s0 = x + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
            total += x * x;
        }
        let tone = (s1 * s1 + s2 * s2 - coeff * s1 * s2) * 2.0 / WIN as f32;
        // Strong, and most of the window's energy: a mark, not a loud vowel.
        let hit = tone > 0.002 && tone > 0.5 * total;
        if hit && last.is_none_or(|l| start > l + MARK_PERIOD / 2) {
            // The window that first sees the burst ends in it; back off to its start.
            let onset = (start + WIN).saturating_sub(WIN / 2 + HOP);
            onsets.push(onset);
            last = Some(start);
        }
        start += HOP;
    }
    onsets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_survives_the_send_ladders_scaling() {
        let cam = SyntheticCamera::new(1280, 720, 30.0);
        let frame = cam.render(4242, 5_000_000);
        let mut scaler = crate::convert::Scaler::new();
        for (w, h) in [(960, 540), (640, 360), (320, 180)] {
            let small = scaler.scale(&frame, w, h).expect("scaled");
            assert_eq!(read_stamp(&small).map(|s| s.number), Some(4242), "{w}x{h}");
        }
    }

    #[test]
    fn stamp_round_trips_and_detects_damage() {
        let cam = SyntheticCamera::new(640, 360, 30.0);
        let mut f = cam.render(123_456, 987_654_321_000);
        assert_eq!(
            read_stamp(&f),
            Some(Stamp {
                number: 123_456,
                capture_ms: (987_654_321_000u64 / 1000) as u32
            })
        );
        // Flip one block: the CRC catches it.
        let b = 16;
        for dy in 0..b {
            for dx in 0..b {
                let i = (dy * 640 + 3 * b + dx) as usize;
                f.data[i] = 255 - f.data[i];
            }
        }
        assert_eq!(read_stamp(&f), None);
        let small = SyntheticCamera::new(320, 180, 30.0).render(7, 1000);
        assert_eq!(read_stamp(&small).map(|s| s.number), Some(7));
        // Someone else's video with a plain corner (a browser's fake camera is dark there)
        // carries no stamp.
        for luma in [0u8, 16, 128, 235, 255] {
            let mut plain = cam.render(1, 1000);
            plain.data.fill(luma);
            assert_eq!(read_stamp(&plain), None, "plain frame of luma {luma}");
        }
    }

    #[test]
    fn camera_content_moves() {
        let cam = SyntheticCamera::new(320, 180, 30.0);
        let a = cam.render(0, 0);
        let b = cam.render(1, 33_000);
        let diff = a
            .data
            .iter()
            .zip(&b.data)
            .skip(320 * 20)
            .filter(|(x, y)| x.abs_diff(**y) > 8)
            .count();
        assert!(diff > 1000, "{diff} pixels changed");
    }

    #[test]
    fn marks_are_found_where_they_are() {
        let mic = SyntheticMic::new(Voice::Speech, true);
        let signal: Vec<f32> = (0..5 * 48_000 + 17)
            .map(|n| mic.sample(n + 30_000))
            .collect();
        let marks = find_marks(&signal);
        // Marks at absolute 48000k; the signal starts at 30000.
        let expected: Vec<usize> = (1..=5).map(|k| k * 48_000 - 30_000).collect();
        assert_eq!(marks.len(), expected.len(), "{marks:?}");
        for (m, e) in marks.iter().zip(&expected) {
            assert!(m.abs_diff(*e) <= 240, "mark at {m}, expected {e}");
        }
        let quiet = SyntheticMic::new(Voice::Speech, false);
        let none: Vec<f32> = (0..3 * 48_000).map(|n| quiet.sample(n)).collect();
        assert!(find_marks(&none).is_empty());
    }
}
