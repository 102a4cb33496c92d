//! `--record DIR`: what each participant sent, as files any player opens: video as Y4M on a
//! steady 30 fps timeline (the latest frame repeats when none is new, so the length is the
//! call's), audio as 16-bit 48 kHz WAV. Both are written as the call goes and flushed every
//! second, so a killed client leaves playable files.

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
        })
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
            EngineEvent::FrameDecoded { from, frame, .. } => self.frame(from, frame)?,
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
        }
        Ok(())
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
        Ok(self.files)
    }
}
