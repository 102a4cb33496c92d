//! Local recording of a call: one Matroska file (`liveloop_media::mkv`) with a composite of
//! every participant in a gallery (a presenter, when there is one, gets the large area) and a
//! mix of everyone's audio, your own included; optionally each participant's audio as its own
//! WAV beside it, aligned to the same start.
//!
//! The recorder runs on its own thread and owns its clock: video is composed at a steady
//! frame rate and audio mixed in 20 ms frames against the wall clock since the start, so the
//! file's duration is the recording's wall time whatever arrives. It is fed what the user sees
//! and hears: frames when they are shown (already lip-synced) and audio at playout.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use liveloop_media::audio::Mixer;
use liveloop_media::convert::Scaler;
use liveloop_media::h264::{H264Config, H264Encoder};
use liveloop_media::mkv::{MkvLayout, MkvWriter};
use liveloop_media::opus::{OpusConfig, OpusEncoder};
use liveloop_media::{MediaError, VideoFrame};

use crate::EngineEvent;

/// The participant id the recorder uses for you.
pub const SELF_ID: &str = "";

/// How a recording is made.
#[derive(Debug, Clone)]
pub struct RecordingOptions {
    /// The `.mkv` file to write.
    pub path: PathBuf,
    /// Shown as the file's title (the room, for example).
    pub title: String,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    /// Also write each participant's audio as `<file stem>.<participant>.wav`.
    pub separate_audio: bool,
}

impl RecordingOptions {
    /// 1280x720 at 30 fps, 2.5 Mbit/s, mix only.
    #[must_use]
    pub fn new(path: PathBuf, title: String) -> Self {
        Self {
            path,
            title,
            width: 1280,
            height: 720,
            fps: 30,
            bitrate_bps: 2_500_000,
            separate_audio: false,
        }
    }
}

/// What a finished recording holds.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordingSummary {
    pub path: PathBuf,
    pub extra_files: Vec<PathBuf>,
    pub duration: Duration,
    pub video_frames: u64,
    pub bytes: u64,
}

enum Input {
    Frame(String, Arc<VideoFrame>),
    Audio(String, Vec<f32>),
    Left(String),
    Stop,
}

/// A recording in progress. Feed it with [`Recorder::on_event`] and the local taps; stop it
/// with [`Recorder::stop`]. Dropping it also stops it (and finishes the file).
#[derive(Debug)]
pub struct Recorder {
    tx: Sender<Input>,
    thread: Option<JoinHandle<Result<RecordingSummary, MediaError>>>,
}

/// A rectangle of the composite (even coordinates and sizes, as I420 needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

fn even(v: u32) -> u32 {
    v & !1
}

/// The gallery: `n` tiles in the most even grid; with a presenter (index into the tiles), it
/// takes the left three quarters and the others stack on the right.
#[must_use]
pub fn gallery(n: usize, width: u32, height: u32, presenter: Option<usize>) -> Vec<Rect> {
    if n == 0 {
        return Vec::new();
    }
    if let Some(p) = presenter.filter(|p| *p < n) {
        let big_w = even(width * 3 / 4);
        let others = (n - 1).max(1) as u32;
        let side_w = even(width - big_w);
        let side_h = even((height / others).min(side_w * 9 / 16));
        let mut k = 0;
        return (0..n)
            .map(|i| {
                if i == p {
                    Rect {
                        x: 0,
                        y: 0,
                        w: big_w,
                        h: even(height),
                    }
                } else {
                    let r = Rect {
                        x: big_w,
                        y: even(k * side_h),
                        w: side_w,
                        h: side_h,
                    };
                    k += 1;
                    r
                }
            })
            .collect();
    }
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = (n as u32).div_ceil(cols);
    let (w, h) = (even(width / cols), even(height / rows));
    (0..n as u32)
        .map(|i| Rect {
            x: (i % cols) * w,
            y: (i / cols) * h,
            w,
            h,
        })
        .collect()
}

/// `frame` scaled to fit `cell` (aspect kept, centred), as the rectangle it occupies.
fn fit(frame: &VideoFrame, cell: Rect) -> Rect {
    let (fw, fh) = (
        u64::from(frame.width.max(1)),
        u64::from(frame.height.max(1)),
    );
    let (cw, ch) = (u64::from(cell.w), u64::from(cell.h));
    let (w, h) = if fw * ch > fh * cw {
        (cw, fh * cw / fw)
    } else {
        (fw * ch / fh, ch)
    };
    let (w, h) = (even(w as u32).max(2), even(h as u32).max(2));
    Rect {
        x: cell.x + even((cell.w - w.min(cell.w)) / 2),
        y: cell.y + even((cell.h - h.min(cell.h)) / 2),
        w,
        h,
    }
}

/// Copies an I420 `tile` into `canvas` at (x, y); both have even sizes and positions.
fn blit(canvas: &mut VideoFrame, tile: &VideoFrame, x: u32, y: u32) {
    let (cw, ch) = (canvas.width as usize, canvas.height as usize);
    let (tw, th) = (tile.width as usize, tile.height as usize);
    let (x, y) = (x as usize, y as usize);
    let (ty, tu, tv) = tile.planes();
    let (dy, du, dv) = canvas.planes_mut();
    let copy = |dst: &mut [u8],
                dst_w: usize,
                dst_h: usize,
                src: &[u8],
                sw: usize,
                sh: usize,
                x: usize,
                y: usize| {
        for row in 0..sh.min(dst_h.saturating_sub(y)) {
            let n = sw.min(dst_w.saturating_sub(x));
            let (s, d) = (row * sw, (y + row) * dst_w + x);
            if let (Some(src), Some(dst)) = (src.get(s..s + n), dst.get_mut(d..d + n)) {
                dst.copy_from_slice(src);
            }
        }
    };
    copy(dy, cw, ch, ty, tw, th, x, y);
    copy(du, cw / 2, ch / 2, tu, tw / 2, th / 2, x / 2, y / 2);
    copy(dv, cw / 2, ch / 2, tv, tw / 2, th / 2, x / 2, y / 2);
}

/// Fills a rectangle with one colour (Y, U, V).
fn fill(canvas: &mut VideoFrame, r: Rect, yuv: (u8, u8, u8)) {
    let cw = canvas.width as usize;
    let (dy, du, dv) = canvas.planes_mut();
    for row in r.y as usize..(r.y + r.h) as usize {
        if let Some(line) = dy.get_mut(row * cw + r.x as usize..row * cw + (r.x + r.w) as usize) {
            line.fill(yuv.0);
        }
    }
    for row in (r.y / 2) as usize..((r.y + r.h) / 2) as usize {
        let span = row * cw / 2 + (r.x / 2) as usize..row * cw / 2 + ((r.x + r.w) / 2) as usize;
        if let Some(line) = du.get_mut(span.clone()) {
            line.fill(yuv.1);
        }
        if let Some(line) = dv.get_mut(span) {
            line.fill(yuv.2);
        }
    }
}

impl Recorder {
    /// Starts recording into `options.path` (its folder must exist).
    ///
    /// # Errors
    /// When the file cannot be created or a codec cannot start.
    pub fn start(options: RecordingOptions) -> Result<Self, MediaError> {
        let file = std::fs::File::create(&options.path)
            .map_err(|e| MediaError::Write(format!("{}: {e}", options.path.display())))?;
        let encoder = H264Encoder::new(H264Config {
            bitrate_bps: options.bitrate_bps,
            fps: options.fps as f32,
        })?;
        let opus = OpusEncoder::new(OpusConfig::default())?;
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("recorder".into())
            .spawn(move || run(&options, file, encoder, opus, &rx))
            .map_err(|e| MediaError::Write(format!("cannot start the recorder: {e}")))?;
        Ok(Self {
            tx,
            thread: Some(thread),
        })
    }

    /// Takes what it needs from an engine event: shown frames, played audio, departures.
    pub fn on_event(&self, event: &EngineEvent) {
        let input = match event {
            EngineEvent::FrameDecoded { from, frame, .. } => {
                Input::Frame(from.clone(), frame.clone())
            }
            EngineEvent::AudioPlayout { from, pcm } => Input::Audio(from.clone(), pcm.clone()),
            EngineEvent::PeerLeft { id } => {
                let _ = self.tx.send(Input::Left(crate::screen_stream_id(id)));
                Input::Left(id.clone())
            }
            // A share that stopped leaves the gallery at once.
            EngineEvent::PeerState {
                id, screen: false, ..
            } => Input::Left(crate::screen_stream_id(id)),
            _ => return,
        };
        let _ = self.tx.send(input);
    }

    /// Your own video (the self-view tap).
    pub fn local_frame(&self, frame: &VideoFrame) {
        self.feeder().local_frame(frame);
    }

    /// Your own voice (the microphone tap).
    pub fn local_audio(&self, pcm: &[f32]) {
        self.feeder().local_audio(pcm);
    }

    /// A handle the media threads can feed from (the taps run on other threads).
    #[must_use]
    pub fn feeder(&self) -> RecorderFeed {
        RecorderFeed(self.tx.clone())
    }

    /// Stops, finishes the file and says what it holds.
    ///
    /// # Errors
    /// When writing failed at any point.
    pub fn stop(mut self) -> Result<RecordingSummary, MediaError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<RecordingSummary, MediaError> {
        let _ = self.tx.send(Input::Stop);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(MediaError::Write("the recorder thread panicked".into()))),
            None => Err(MediaError::Write(
                "the recording was already stopped".into(),
            )),
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        if self.thread.is_some() {
            let _ = self.finish();
        }
    }
}

/// A cloneable handle for the local taps.
#[derive(Debug, Clone)]
pub struct RecorderFeed(Sender<Input>);

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Input")
    }
}

impl RecorderFeed {
    pub fn local_frame(&self, frame: &VideoFrame) {
        let _ = self
            .0
            .send(Input::Frame(SELF_ID.into(), Arc::new(frame.clone())));
    }

    pub fn local_audio(&self, pcm: &[f32]) {
        let _ = self.0.send(Input::Audio(SELF_ID.into(), pcm.to_vec()));
    }
}

struct Tile {
    frame: Option<(Arc<VideoFrame>, Instant)>,
    stream: u64,
}

/// How long a participant's last frame stays on screen without a new one (camera off, left).
const STALE: Duration = Duration::from_millis(700);
/// The most audio a participant may have queued for the mix (older is dropped): 30 ms.
/// Playout delivers 10 ms per participant every 10 ms and the mix takes 10 ms every 10 ms, one
/// tick behind, so a backlog left by one late tick would otherwise stay for the whole
/// recording and put that participant's audio later than its video (measured with 20 ms
/// frames: 16 ms in one run, 40 in the next). Trimming it costs 10 ms of audio once.
const MAX_AUDIO_QUEUE: usize = 1440;

fn run(
    options: &RecordingOptions,
    file: std::fs::File,
    mut encoder: H264Encoder,
    mut opus: OpusEncoder,
    rx: &Receiver<Input>,
) -> Result<RecordingSummary, MediaError> {
    let layout = MkvLayout {
        width: options.width,
        height: options.height,
        title: options.title.clone(),
        audio_tracks: vec!["Everyone".into()],
    };
    let mut mkv = MkvWriter::new(std::io::BufWriter::new(file), layout);
    let mut tiles: BTreeMap<String, Tile> = BTreeMap::new();
    let mut mixer = Mixer::new(MAX_AUDIO_QUEUE);
    let mut separate = options
        .separate_audio
        .then(|| SeparateAudio::new(&options.path));
    let mut next_stream = 0u64;
    let mut presenter: Option<String> = None;
    let mut scaler = Scaler::new();
    let mut canvas = VideoFrame::blank(options.width, options.height);
    let start = Instant::now();
    let frame_ms = 1000.0 / f64::from(options.fps.max(1));
    let (mut video_index, mut audio_index, mut frames) = (0u64, 0u64, 0u64);
    let mut mix = vec![0.0f32; 960];
    let mut stopping = false;
    loop {
        let video_at = start + Duration::from_secs_f64(video_index as f64 * frame_ms / 1000.0);
        let audio_at = start + Duration::from_millis((audio_index + 1) * 10);
        let due = video_at.min(audio_at);
        // Take input until the next frame of either kind is due.
        while !stopping {
            let wait = due.saturating_duration_since(Instant::now());
            let input = match rx.recv_timeout(wait) {
                Ok(i) => i,
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    stopping = true;
                    break;
                }
            };
            match input {
                Input::Frame(who, frame) => {
                    // A screen share takes the large area.
                    if crate::split_stream_id(&who).1 && presenter.is_none() {
                        presenter = Some(who.clone());
                    }
                    let next = &mut next_stream;
                    let tile = tiles.entry(who).or_insert_with(|| {
                        *next += 1;
                        Tile {
                            frame: None,
                            stream: *next,
                        }
                    });
                    tile.frame = Some((frame, Instant::now()));
                }
                Input::Audio(who, pcm) => {
                    let next = &mut next_stream;
                    let tile = tiles.entry(who.clone()).or_insert_with(|| {
                        *next += 1;
                        Tile {
                            frame: None,
                            stream: *next,
                        }
                    });
                    mixer.push(tile.stream, &pcm);
                    if let Some(files) = separate.as_mut() {
                        let now_samples = start.elapsed().as_millis() as u64 * 48;
                        files.push(&who, &pcm, now_samples)?;
                    }
                }
                Input::Left(who) => {
                    if let Some(t) = tiles.remove(&who) {
                        mixer.remove(t.stream);
                    }
                    if presenter.as_deref() == Some(who.as_str()) {
                        presenter = None;
                    }
                }
                Input::Stop => stopping = true,
            }
        }
        if stopping {
            break;
        }
        let now = Instant::now();
        // Every audio frame that is due, not one per turn: a turn that encoded a video frame
        // can take longer than 20 ms on a busy machine, and audio left behind would pile up
        // against the queue cap, which trims it (measured: 5 of 12 timing marks cut from the
        // mix, sync off by 40 ms, when one frame was mixed per turn).
        // Mixed 10 ms at a time, as the playout delivers it, one tick behind it (so a
        // participant's queue holds 10-20 ms when it is mixed, not 0-10 ms: a mix that finds a
        // half-delivered tick would leave silence in the file and put what follows later);
        // encoded 20 ms at a time.
        while now >= start + Duration::from_millis((audio_index + 1) * 10) {
            let half = if audio_index % 2 == 0 {
                mix.get_mut(..480)
            } else {
                mix.get_mut(480..)
            };
            if let Some(half) = half {
                mixer.mix(half);
            }
            if audio_index % 2 == 1 {
                let packet = opus.encode(&mix)?;
                mkv.audio(0, (audio_index - 1) * 10, &packet)?;
            }
            audio_index += 1;
        }
        if now >= video_at {
            // A recorder that fell behind skips frames rather than drift from the clock.
            let behind = now.duration_since(video_at).as_secs_f64() * 1000.0 / frame_ms;
            compose(&mut canvas, &tiles, presenter.as_deref(), &mut scaler);
            if frames % u64::from(options.fps.max(1) * 2) == 0 {
                encoder.request_keyframe();
            }
            let ms = (video_index as f64 * frame_ms).round() as u64;
            let encoded = encoder.encode(&canvas)?;
            if !encoded.data.is_empty() {
                mkv.video(ms, &encoded.data, encoded.keyframe)?;
                frames += 1;
            }
            video_index += 1 + behind.floor() as u64;
        }
    }
    let duration = start.elapsed();
    let out = mkv.finish(duration.as_millis() as u64)?;
    let bytes = out
        .into_inner()
        .map_err(|e| MediaError::Write(e.to_string()))?
        .metadata()
        .map(|m| m.len())
        .unwrap_or_default();
    let extra_files = match separate {
        Some(files) => files.finish()?,
        None => Vec::new(),
    };
    Ok(RecordingSummary {
        path: options.path.clone(),
        extra_files,
        duration,
        video_frames: frames,
        bytes,
    })
}

type WavFile = hound::WavWriter<std::io::BufWriter<std::fs::File>>;

/// Each participant's audio as `<stem>.<id>.wav` beside the recording (`you` for yourself),
/// padded with silence so that every file starts when the recording did.
struct SeparateAudio {
    folder: PathBuf,
    stem: String,
    files: HashMap<String, (PathBuf, WavFile, u64)>,
}

impl SeparateAudio {
    fn new(recording: &Path) -> Self {
        Self {
            folder: recording
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            stem: recording
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            files: HashMap::new(),
        }
    }

    /// Appends `pcm`, which plays `now_samples` after the recording started.
    fn push(&mut self, who: &str, pcm: &[f32], now_samples: u64) -> Result<(), MediaError> {
        let err = |e: hound::Error| MediaError::Write(e.to_string());
        if !self.files.contains_key(who) {
            let name = if who.is_empty() { "you" } else { who };
            let safe: String = name
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let path = self.folder.join(format!("{}.{safe}.wav", self.stem));
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 48_000,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            let w = hound::WavWriter::create(&path, spec)
                .map_err(|e| MediaError::Write(format!("{}: {e}", path.display())))?;
            self.files.insert(who.to_owned(), (path, w, 0));
        }
        let Some((_, w, written)) = self.files.get_mut(who) else {
            return Ok(());
        };
        while *written + pcm.len() as u64 <= now_samples {
            w.write_sample(0i16).map_err(err)?;
            *written += 1;
        }
        for s in pcm {
            w.write_sample((s.clamp(-1.0, 1.0) * 32767.0) as i16)
                .map_err(err)?;
        }
        *written += pcm.len() as u64;
        Ok(())
    }

    /// Finishes every file; returns their paths.
    fn finish(self) -> Result<Vec<PathBuf>, MediaError> {
        let mut paths = Vec::new();
        for (_, (path, w, _)) in self.files {
            w.finalize().map_err(|e| MediaError::Write(e.to_string()))?;
            paths.push(path);
        }
        paths.sort();
        Ok(paths)
    }
}

/// Draws the gallery: remote participants in id order, then you; a tile without a recent
/// frame (camera off, not yet arrived) is a plain panel.
fn compose(
    canvas: &mut VideoFrame,
    tiles: &BTreeMap<String, Tile>,
    presenter: Option<&str>,
    scaler: &mut Scaler,
) {
    let (w, h) = (canvas.width, canvas.height);
    fill(canvas, Rect { x: 0, y: 0, w, h }, (16, 128, 128));
    // A screen share shows only while its frames come (it has no placeholder).
    let sharing = |k: &String| {
        tiles
            .get(k)
            .and_then(|t| t.frame.as_ref())
            .is_some_and(|(_, at)| at.elapsed() < STALE)
    };
    let mut order: Vec<&String> = tiles
        .keys()
        .filter(|k| !k.is_empty() && (!crate::split_stream_id(k).1 || sharing(k)))
        .collect();
    if let Some(me) = tiles.keys().find(|k| k.is_empty()) {
        order.push(me);
    }
    let presenter_index = presenter.and_then(|p| order.iter().position(|k| *k == p));
    let cells = gallery(order.len(), w, h, presenter_index);
    for (id, cell) in order.iter().zip(cells) {
        let inner = Rect {
            x: cell.x + 2,
            y: cell.y + 2,
            w: cell.w.saturating_sub(4),
            h: cell.h.saturating_sub(4),
        };
        let fresh = tiles
            .get(*id)
            .and_then(|t| t.frame.as_ref())
            .filter(|(_, at)| at.elapsed() < STALE);
        match fresh {
            Some((frame, _)) => {
                let r = fit(frame, cell);
                if (r.w, r.h) == (frame.width, frame.height) {
                    blit(canvas, frame, r.x, r.y);
                } else if let Ok(scaled) = scaler.scale(frame, r.w, r.h) {
                    blit(canvas, &scaled, r.x, r.y);
                }
            }
            None => fill(canvas, inner, (48, 136, 120)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallery_layouts_tile_the_canvas() {
        assert_eq!(
            gallery(1, 1280, 720, None),
            vec![Rect {
                x: 0,
                y: 0,
                w: 1280,
                h: 720
            }]
        );
        let three = gallery(3, 1280, 720, None);
        assert_eq!(three.len(), 3);
        assert_eq!(
            three.get(2),
            Some(&Rect {
                x: 0,
                y: 360,
                w: 640,
                h: 360
            })
        );
        let shared = gallery(3, 1280, 720, Some(1));
        assert_eq!(
            shared.get(1),
            Some(&Rect {
                x: 0,
                y: 0,
                w: 960,
                h: 720
            })
        );
        let (a, b) = (shared.first().copied(), shared.get(2).copied());
        assert!(matches!((a, b), (Some(a), Some(b)) if a.x == 960 && b.x == 960 && b.y > a.y));
        for r in gallery(7, 1280, 720, None).iter().chain(&shared) {
            assert!(r.x + r.w <= 1280 && r.y + r.h <= 720);
            assert!(r.x % 2 == 0 && r.y % 2 == 0 && r.w % 2 == 0 && r.h % 2 == 0);
        }
    }

    #[test]
    fn a_frame_fits_its_cell_keeping_its_shape() {
        let f = VideoFrame::blank(640, 480);
        let r = fit(
            &f,
            Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 360,
            },
        );
        assert_eq!((r.w, r.h), (480, 360));
        assert_eq!(r.x, 80);
    }
}
