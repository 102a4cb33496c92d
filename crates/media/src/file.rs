//! Looping file sources: Y4M video (4:2:0) and WAV audio (any rate and channel count).

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use crate::audio::ToMono48k;
use crate::{AudioSource, MediaError, VideoFormat, VideoFrame, VideoSource};

fn file_err(path: &Path, e: impl std::fmt::Display) -> MediaError {
    MediaError::File {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The header of a Y4M stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Y4mHeader {
    pub width: u32,
    pub height: u32,
    pub fps: f32,
}

/// Parses a Y4M stream header line (without the newline).
///
/// # Errors
/// When it is not `YUV4MPEG2` with sizes, or the colour space is not 4:2:0.
pub fn parse_y4m_header(line: &str) -> Result<Y4mHeader, String> {
    let mut fields = line.split(' ');
    if fields.next() != Some("YUV4MPEG2") {
        return Err("not a YUV4MPEG2 file".into());
    }
    let (mut width, mut height, mut fps) = (None, None, 30.0f32);
    for field in fields {
        let mut chars = field.chars();
        let tag = chars.next();
        let value = chars.as_str();
        match tag {
            Some('W') => width = value.parse::<u32>().ok(),
            Some('H') => height = value.parse::<u32>().ok(),
            Some('F') => {
                if let Some((n, d)) = value.split_once(':')
                    && let (Ok(n), Ok(d)) = (n.parse::<f32>(), d.parse::<f32>())
                    && n > 0.0
                    && d > 0.0
                {
                    fps = n / d;
                }
            }
            Some('C') if !value.starts_with("420") => {
                return Err(format!("colour space {value} (only 4:2:0)"));
            }
            _ => {}
        }
    }
    match (width, height) {
        (Some(w), Some(h)) if w > 0 && h > 0 && w <= 16_384 && h <= 16_384 => Ok(Y4mHeader {
            width: w,
            height: h,
            fps,
        }),
        _ => Err("missing or invalid W/H".into()),
    }
}

/// A Y4M file played in a loop.
#[derive(Debug)]
pub struct Y4mSource {
    path: String,
    reader: BufReader<std::fs::File>,
    header: Y4mHeader,
    data_start: u64,
    next: u64,
    stamp: bool,
}

impl Y4mSource {
    /// Stamps every frame with its number and capture time (over whatever the file holds
    /// there), as the synthetic camera does, so latency can be measured on recorded content.
    #[must_use]
    pub fn stamping(mut self) -> Self {
        self.stamp = true;
        self
    }

    /// # Errors
    /// When the file cannot be read or is not 4:2:0 Y4M.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let file = std::fs::File::open(path).map_err(|e| file_err(path, e))?;
        let mut reader = BufReader::new(file);
        let mut line = String::new();
        reader
            .by_ref()
            .take(1024)
            .read_line(&mut line)
            .map_err(|e| file_err(path, e))?;
        let header = parse_y4m_header(line.trim_end()).map_err(|e| file_err(path, e))?;
        let data_start = reader.stream_position().map_err(|e| file_err(path, e))?;
        Ok(Self {
            path: path.display().to_string(),
            reader,
            header,
            data_start,
            next: 0,
            stamp: false,
        })
    }

    fn read_frame(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut line = Vec::new();
        let n = self
            .reader
            .by_ref()
            .take(1024)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(None);
        }
        if !line.starts_with(b"FRAME") {
            return Err(std::io::Error::other("expected FRAME"));
        }
        let mut data = vec![0u8; VideoFrame::i420_len(self.header.width, self.header.height)];
        match self.reader.read_exact(&mut data) {
            Ok(()) => Ok(Some(data)),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }
}

impl VideoSource for Y4mSource {
    fn format(&self) -> VideoFormat {
        VideoFormat {
            width: self.header.width,
            height: self.header.height,
            fps: self.header.fps,
        }
    }

    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError> {
        let path = self.path.clone();
        let err = move |e: std::io::Error| MediaError::File {
            path: path.clone(),
            message: e.to_string(),
        };
        let data = match self.read_frame().map_err(&err)? {
            Some(data) => data,
            None => {
                // End of file: loop.
                self.reader
                    .seek(SeekFrom::Start(self.data_start))
                    .map_err(&err)?;
                self.read_frame()
                    .map_err(&err)?
                    .ok_or_else(|| MediaError::File {
                        path: self.path.clone(),
                        message: "no frames".into(),
                    })?
            }
        };
        let mut frame = VideoFrame::from_i420(self.header.width, self.header.height, data)?;
        frame.number = self.next;
        frame.capture_us = capture_us;
        if self.stamp {
            crate::synthetic::write_stamp(
                &mut frame,
                crate::synthetic::Stamp {
                    number: self.next as u32,
                    capture_ms: (capture_us / 1000) as u32,
                },
            );
        }
        self.next += 1;
        Ok(frame)
    }
}

/// Writes frames as Y4M (used by tests, benchmarks and the CLI to make test media).
///
/// # Errors
/// On an I/O error.
pub fn write_y4m(
    out: &mut impl std::io::Write,
    frames: &[VideoFrame],
    fps: u32,
) -> std::io::Result<()> {
    let Some(first) = frames.first() else {
        return Ok(());
    };
    writeln!(
        out,
        "YUV4MPEG2 W{} H{} F{fps}:1 Ip A1:1 C420jpeg",
        first.width, first.height
    )?;
    for f in frames {
        out.write_all(b"FRAME\n")?;
        out.write_all(&f.data)?;
    }
    Ok(())
}

/// A WAV file played in a loop, converted to 48 kHz mono.
pub struct WavSource {
    samples: Vec<f32>,
    pos: usize,
}

impl std::fmt::Debug for WavSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WavSource")
            .field("samples", &self.samples.len())
            .finish()
    }
}

impl WavSource {
    /// Reads and converts the whole file (speech test files are small).
    ///
    /// # Errors
    /// When the file cannot be read or decoded, or holds no samples.
    pub fn open(path: &Path) -> Result<Self, MediaError> {
        let mut reader = hound::WavReader::open(path).map_err(|e| file_err(path, e))?;
        let spec = reader.spec();
        let interleaved: Vec<f32> = match spec.sample_format {
            hound::SampleFormat::Float => reader
                .samples::<f32>()
                .collect::<Result<_, _>>()
                .map_err(|e| file_err(path, e))?,
            hound::SampleFormat::Int => {
                let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
                reader
                    .samples::<i32>()
                    .map(|s| s.map(|v| v as f32 * scale))
                    .collect::<Result<_, _>>()
                    .map_err(|e| file_err(path, e))?
            }
        };
        let mut resampler = ToMono48k::new(spec.sample_rate, spec.channels)?;
        let mut samples = Vec::new();
        resampler.push(&interleaved, &mut samples);
        if samples.is_empty() {
            return Err(file_err(path, "no audio samples"));
        }
        Ok(Self { samples, pos: 0 })
    }

    /// The file's samples at 48 kHz mono.
    #[must_use]
    pub fn samples(&self) -> &[f32] {
        &self.samples
    }
}

impl AudioSource for WavSource {
    fn read(&mut self, out: &mut [f32]) -> Result<(), MediaError> {
        for s in out.iter_mut() {
            *s = self.samples.get(self.pos).copied().unwrap_or(0.0);
            self.pos = (self.pos + 1) % self.samples.len().max(1);
        }
        Ok(())
    }
}

/// Writes 48 kHz mono f32 samples as a 16-bit WAV.
///
/// # Errors
/// On an I/O error.
pub fn write_wav(path: &Path, samples: &[f32]) -> Result<(), MediaError> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: crate::SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(|e| file_err(path, e))?;
    for s in samples {
        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
            .map_err(|e| file_err(path, e))?;
    }
    w.finalize().map_err(|e| file_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{SyntheticCamera, SyntheticMic, Voice, read_stamp};

    fn temp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("liveloop-media-{}-{name}", std::process::id()))
    }

    #[test]
    fn y4m_headers() {
        assert_eq!(
            parse_y4m_header("YUV4MPEG2 W640 H360 F30000:1001 Ip A1:1 C420jpeg").map(|h| (
                h.width,
                h.height,
                (h.fps * 100.0).round()
            )),
            Ok((640, 360, 2997.0))
        );
        assert!(parse_y4m_header("YUV4MPEG2 W640 H360 C444").is_err());
        assert!(parse_y4m_header("YUV4MPEG2 W0 H360").is_err());
        assert!(parse_y4m_header("YUV4MPEG W640 H360").is_err());
        assert_eq!(
            parse_y4m_header("YUV4MPEG2 W2 H2 F0:0").map(|h| h.fps),
            Ok(30.0)
        );
    }

    #[test]
    fn y4m_source_loops() {
        let cam = SyntheticCamera::new(320, 180, 30.0);
        let frames: Vec<_> = (0..3).map(|n| cam.render(n, 0)).collect();
        let path = temp("loop.y4m");
        let mut file = std::fs::File::create(&path)
            .ok()
            .unwrap_or_else(|| panic!("create"));
        assert!(write_y4m(&mut file, &frames, 30).is_ok());
        drop(file);
        let mut src = Y4mSource::open(&path)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        assert_eq!(
            src.format(),
            VideoFormat {
                width: 320,
                height: 180,
                fps: 30.0
            }
        );
        let numbers: Vec<u32> = (0..7)
            .filter_map(|i| src.next_frame(i).ok())
            .filter_map(|f| read_stamp(&f))
            .map(|s| s.number)
            .collect();
        assert_eq!(numbers, vec![0, 1, 2, 0, 1, 2, 0]);
        let _ = std::fs::remove_file(path);
        assert!(Y4mSource::open(Path::new("/nonexistent.y4m")).is_err());
    }

    #[test]
    fn wav_source_resamples_and_loops() {
        let mic = SyntheticMic::new(Voice::Tone(440.0), false);
        let samples: Vec<f32> = (0..4_800).map(|n| mic.sample(n)).collect();
        let path = temp("tone.wav");
        assert!(write_wav(&path, &samples).is_ok());
        let mut src = WavSource::open(&path)
            .ok()
            .unwrap_or_else(|| panic!("open"));
        assert_eq!(src.samples().len(), 4_800);
        let mut out = vec![0.0; 9_600];
        assert!(src.read(&mut out).is_ok());
        assert!((out[4_800 + 100] - out[100]).abs() < 1e-6, "loops");
        assert!((out[100] - samples[100]).abs() < 1e-3);
        let _ = std::fs::remove_file(path);
    }
}
