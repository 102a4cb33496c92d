//! `--record DIR`: what each participant sent, as files any player opens: video as Y4M on a
//! steady 30 fps timeline (the latest frame repeats when none is new, so the length is the
//! call's), audio as 16-bit 48 kHz WAV. Both are written as the call goes and flushed every
//! second, so a killed client leaves playable files.
//!
//! `--measure DIR` (for the quality harness) writes the same WAVs, plus `<id>.times` (lines of
//! `<sample index> <Unix ms>`, when each piece of audio was played out) and, instead of the
//! video, one decoded frame a second: its luma plane as `<id>.<stamp number>.<capture ms>.<W>x<H>.y`,
//! for frames that carry a stamp.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use liveloop_engine::EngineEvent;
use liveloop_media::VideoFrame;

const FPS: u64 = 30;

struct VideoTrack {
    out: BufWriter<File>,
    size: (u32, u32),
    start: Instant,
    written: u64,
}

/// Records every remote participant to `<dir>/<id>.y4m` and `<dir>/<id>.wav`.
pub struct Recorder {
    dir: PathBuf,
    video: HashMap<String, VideoTrack>,
    audio: HashMap<String, hound::WavWriter<BufWriter<File>>>,
    files: Vec<PathBuf>,
    flushed: Instant,
    /// `--measure`: play-out times beside each WAV, sampled luma instead of Y4M video.
    measure: Option<Measure>,
}

#[derive(Default)]
struct Measure {
    times: HashMap<String, (BufWriter<File>, u64)>,
    last_sample_ms: HashMap<String, u32>,
}

/// File names keep to the id's own characters (ids are `[A-Za-z0-9_.:-]`; socket ids similar).
fn file_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Recorder {
    /// # Errors
    /// When the folder cannot be made.
    pub fn new(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        Ok(Self {
            dir: dir.to_owned(),
            video: HashMap::new(),
            audio: HashMap::new(),
            files: Vec::new(),
            flushed: Instant::now(),
            measure: None,
        })
    }

    /// The `--measure` recorder (see the module documentation).
    ///
    /// # Errors
    /// When the folder cannot be made.
    pub fn measuring(dir: &Path) -> Result<Self> {
        let mut r = Self::new(dir)?;
        r.measure = Some(Measure::default());
        Ok(r)
    }

    fn path(&mut self, id: &str, ext: &str) -> PathBuf {
        let stem = file_stem(id);
        let mut path = self.dir.join(format!("{stem}.{ext}"));
        let mut n = 2;
        while self.files.contains(&path) {
            path = self.dir.join(format!("{stem}-{n}.{ext}"));
            n += 1;
        }
        self.files.push(path.clone());
        path
    }

    /// Takes what an event carries.
    ///
    /// # Errors
    /// On an I/O error.
    pub fn on_event(&mut self, event: &EngineEvent) -> Result<()> {
        match event {
            EngineEvent::FrameDecoded {
                from,
                frame,
                stamp,
                decoded_ms,
                ..
            } => {
                if self.measure.is_some() {
                    if let Some(stamp) = stamp {
                        self.sample_frame(from, frame, *stamp, *decoded_ms)?;
                    }
                } else {
                    self.frame(from, frame)?;
                }
            }
            EngineEvent::AudioPlayout { from, pcm } => {
                if !self.audio.contains_key(from) {
                    let path = self.path(from, "wav");
                    let spec = hound::WavSpec {
                        channels: 1,
                        sample_rate: 48_000,
                        bits_per_sample: 16,
                        sample_format: hound::SampleFormat::Int,
                    };
                    let writer = hound::WavWriter::create(&path, spec)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    self.audio.insert(from.clone(), writer);
                }
                if let Some(m) = self.measure.as_mut() {
                    if !m.times.contains_key(from) {
                        let path = self.dir.join(format!("{}.times", file_stem(from)));
                        let out = BufWriter::new(
                            File::create(&path)
                                .with_context(|| format!("cannot write {}", path.display()))?,
                        );
                        m.times.insert(from.clone(), (out, 0));
                    }
                    if let Some((out, written)) = m.times.get_mut(from) {
                        writeln!(out, "{written} {}", unix_ms())?;
                        *written += pcm.len() as u64;
                    }
                }
                if let Some(w) = self.audio.get_mut(from) {
                    for s in pcm {
                        w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)?;
                    }
                }
            }
            _ => {}
        }
        if self.flushed.elapsed() >= Duration::from_secs(1) {
            self.flushed = Instant::now();
            for w in self.audio.values_mut() {
                w.flush()?;
            }
            for v in self.video.values_mut() {
                v.out.flush()?;
            }
            for (out, _) in self.measure.iter_mut().flat_map(|m| m.times.values_mut()) {
                out.flush()?;
            }
        }
        Ok(())
    }

    /// `--measure`: the luma of one stamped frame a second per sender.
    fn sample_frame(
        &mut self,
        from: &str,
        frame: &VideoFrame,
        stamp: liveloop_media::synthetic::Stamp,
        decoded_ms: u32,
    ) -> Result<()> {
        let Some(m) = self.measure.as_mut() else {
            return Ok(());
        };
        if m.last_sample_ms
            .get(from)
            .is_some_and(|&last| decoded_ms.wrapping_sub(last) < 1000)
        {
            return Ok(());
        }
        m.last_sample_ms.insert(from.to_owned(), decoded_ms);
        let path = self.dir.join(format!(
            "{}.{}.{}.{}x{}.y",
            file_stem(from),
            stamp.number,
            stamp.capture_ms,
            frame.width,
            frame.height
        ));
        let (luma, _, _) = frame.planes();
        std::fs::write(&path, luma).with_context(|| format!("cannot write {}", path.display()))
    }

    fn frame(&mut self, from: &str, frame: &VideoFrame) -> Result<()> {
        let size = (frame.width, frame.height);
        // A new size starts a new file (Y4M has one size per file).
        if self.video.get(from).is_none_or(|v| v.size != size) {
            let path = self.path(from, "y4m");
            let mut out = BufWriter::new(
                File::create(&path).with_context(|| format!("cannot write {}", path.display()))?,
            );
            writeln!(
                out,
                "YUV4MPEG2 W{} H{} F{FPS}:1 Ip A1:1 C420jpeg",
                size.0, size.1
            )?;
            let track = VideoTrack {
                out,
                size,
                start: Instant::now(),
                written: 0,
            };
            self.video.insert(from.to_owned(), track);
        }
        let Some(v) = self.video.get_mut(from) else {
            return Ok(());
        };
        // Fill the 30 fps timeline up to now with this frame (at least once for a new file).
        let due = (v.start.elapsed().as_millis() as u64 * FPS / 1000 + 1).max(1);
        while v.written < due {
            v.out.write_all(b"FRAME\n")?;
            v.out.write_all(&frame.data)?;
            v.written += 1;
        }
        Ok(())
    }

    /// Finishes every file; returns their paths.
    ///
    /// # Errors
    /// On an I/O error.
    pub fn finish(self) -> Result<Vec<PathBuf>> {
        for (_, w) in self.audio {
            w.finalize()?;
        }
        for (_, mut v) in self.video {
            v.out.flush()?;
        }
        for (_, (mut out, _)) in self.measure.into_iter().flat_map(|m| m.times) {
            out.flush()?;
        }
        Ok(self.files)
    }
}

/// Milliseconds since the Unix epoch.
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
