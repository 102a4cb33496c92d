//! The engine's media threads: one capture-and-encode thread per kind whose output every peer
//! shares, and one video decoder thread per remote participant.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use liveloop_core::avsync::{self, ClockMap};
use liveloop_core::keyframe::KeyframeGate;
use liveloop_core::layers::Layer;
use liveloop_media::convert::Scaler;
use liveloop_media::h264::{EncodedFrame, H264Config, H264Decoder, H264Encoder};
use liveloop_media::opus::{OpusConfig, OpusEncoder};
use liveloop_media::processing::ProcessingSettings;
use liveloop_media::synthetic::read_stamp;
use liveloop_media::vp8::{Vp8Decoder, Vp8Encoder};
use liveloop_media::{AudioSource, MediaError, VideoFormat, VideoFrame, VideoSource};
use liveloop_rtc::VideoCodec;
use tokio::sync::{broadcast, mpsc};

use crate::{EngineEvent, ErrorKind};

/// Wall-clock microseconds: capture times must mean the same thing in every process on the
/// machine (the stamped latency is measured across processes).
pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or_default()
}

/// Wall-clock milliseconds, truncated to 32 bits like the stamp's capture time.
pub fn now_ms32() -> u32 {
    (now_us() / 1000) as u32
}

/// One `T` per video codec.
#[derive(Debug, Default, Clone)]
pub(crate) struct PerCodec<T> {
    h264: T,
    vp8: T,
}

impl<T> PerCodec<T> {
    fn get(&self, codec: VideoCodec) -> &T {
        match codec {
            VideoCodec::H264 => &self.h264,
            VideoCodec::Vp8 => &self.vp8,
        }
    }

    fn get_mut(&mut self, codec: VideoCodec) -> &mut T {
        match codec {
            VideoCodec::H264 => &mut self.h264,
            VideoCodec::Vp8 => &mut self.vp8,
        }
    }
}

/// Keyframe requests per codec: a request from a peer that receives VP8 does not force an
/// H.264 keyframe on everyone else.
#[derive(Debug, Default)]
pub(crate) struct Keyframes {
    requested: PerCodec<AtomicBool>,
    /// For a receiver that has no picture yet (`core::keyframe::KeyframeGate::request_now`).
    urgent: PerCodec<AtomicBool>,
}

impl Keyframes {
    pub fn request(&self, codec: VideoCodec) {
        self.requested.get(codec).store(true, Ordering::Relaxed);
    }

    /// A peer that just connected has no picture yet: a keyframe at once.
    pub fn request_now(&self, codec: VideoCodec) {
        self.urgent.get(codec).store(true, Ordering::Relaxed);
    }

    /// Hands this codec's requests to its gate.
    fn pass_to(&self, codec: VideoCodec, gate: &mut KeyframeGate) {
        if self.urgent.get(codec).swap(false, Ordering::Relaxed) {
            gate.request_now();
        }
        if self.requested.get(codec).swap(false, Ordering::Relaxed) {
            gate.request();
        }
    }

    /// A new source or a new receiver: every codec starts with a keyframe.
    pub fn request_all(&self) {
        for codec in VideoCodec::PREFERENCE {
            self.request(codec);
        }
    }
}

/// The shared encoders' output, one channel per codec. A codec is encoded only while some
/// peer takes it (a receiver of its channel), so a call without Firefox never runs VP8.
#[derive(Debug, Clone)]
pub(crate) struct VideoOut(PerCodec<broadcast::Sender<EncodedVideo>>);

impl VideoOut {
    pub fn new() -> Self {
        Self(PerCodec {
            h264: broadcast::channel(8).0,
            vp8: broadcast::channel(8).0,
        })
    }

    pub fn of(&self, codec: VideoCodec) -> &broadcast::Sender<EncodedVideo> {
        self.0.get(codec)
    }

    /// The codecs some peer takes now.
    fn wanted(&self) -> impl Iterator<Item = VideoCodec> + '_ {
        VideoCodec::PREFERENCE
            .into_iter()
            .filter(|c| self.of(*c).receiver_count() > 0)
    }
}

/// One of the shared video encoders.
enum Encoder {
    H264(Box<H264Encoder>),
    Vp8(Box<Vp8Encoder>),
}

impl Encoder {
    fn new(codec: VideoCodec, config: H264Config) -> Result<Self, MediaError> {
        Ok(match codec {
            VideoCodec::H264 => Self::H264(Box::new(H264Encoder::new(config)?)),
            VideoCodec::Vp8 => Self::Vp8(Box::new(Vp8Encoder::new(config)?)),
        })
    }

    fn encode(&mut self, frame: &VideoFrame) -> Result<EncodedFrame, MediaError> {
        match self {
            Self::H264(e) => e.encode(frame),
            Self::Vp8(e) => e.encode(frame),
        }
    }

    fn request_keyframe(&mut self) {
        match self {
            Self::H264(e) => e.request_keyframe(),
            Self::Vp8(e) => e.request_keyframe(),
        }
    }

    fn set_bitrate(&mut self, bps: u32) -> Result<(), MediaError> {
        match self {
            Self::H264(e) => e.set_bitrate(bps),
            Self::Vp8(e) => e.set_bitrate(bps),
        }
    }
}

/// A participant's video decoder, for the codec its frames come in.
enum Decoder {
    H264(H264Decoder),
    Vp8(Vp8Decoder),
}

impl Decoder {
    fn new(codec: VideoCodec) -> Result<Self, MediaError> {
        Ok(match codec {
            VideoCodec::H264 => Self::H264(H264Decoder::new()?),
            VideoCodec::Vp8 => Self::Vp8(Vp8Decoder::new()?),
        })
    }

    fn codec(&self) -> VideoCodec {
        match self {
            Self::H264(_) => VideoCodec::H264,
            Self::Vp8(_) => VideoCodec::Vp8,
        }
    }

    fn decode(&mut self, frame: &[u8]) -> Result<Option<VideoFrame>, MediaError> {
        match self {
            Self::H264(d) => d.decode(frame),
            Self::Vp8(d) => d.decode(frame),
        }
    }
}

/// Flags the session shares with its media threads.
#[derive(Debug, Default)]
pub(crate) struct MediaFlags {
    pub keyframe: Keyframes,
    pub camera_on: AtomicBool,
    pub muted: AtomicBool,
    pub stop: AtomicBool,
    /// What the main camera layer aims at (`core::send_rate`, set by the session every
    /// 200 ms).
    pub send: SendTargets,
    /// The low camera layer's keyframe requests and targets (`core::layers`).
    pub low_keyframe: Keyframes,
    pub low: SendTargets,
    /// The microphone's processing (`ProcessingSettings::bits`), read by the capture thread
    /// before every frame.
    pub processing: AtomicU8,
}

impl MediaFlags {
    /// A keyframe on `layer` in `codec`.
    pub fn request_keyframe(&self, layer: Layer, codec: VideoCodec) {
        match layer {
            Layer::Main => self.keyframe.request(codec),
            Layer::Low => self.low_keyframe.request(codec),
        }
    }

    /// A keyframe on `layer` in `codec` at once, for a peer that just connected.
    pub fn request_keyframe_now(&self, layer: Layer, codec: VideoCodec) {
        match layer {
            Layer::Main => self.keyframe.request_now(codec),
            Layer::Low => self.low_keyframe.request_now(codec),
        }
    }

    /// A new source, or the camera back on: every layer and codec starts with a keyframe.
    pub fn request_all_keyframes(&self) {
        self.keyframe.request_all();
        self.low_keyframe.request_all();
    }
}

/// The encoders' targets, as the session's send-rate policy last set them. The media threads
/// read them before each frame; a change takes effect at the next one.
#[derive(Debug)]
pub(crate) struct SendTargets {
    /// The video's bitrate (`0`: the configured one).
    pub video_bps: AtomicU32,
    /// The video's size in quarters of each side of the source (4: the source's).
    pub scale_quarters: AtomicU8,
    /// Every n-th source frame is sent.
    pub frame_divider: AtomicU8,
    /// Opus's bitrate (`0`: the configured one).
    pub audio_bps: AtomicU32,
    /// Opus's expected loss, in percent.
    pub audio_loss_percent: AtomicU8,
    /// What the video thread reports back: the source's pixels and frame rate (in 1/1000
    /// frames a second), and the size it last encoded.
    pub source_pixels: AtomicU32,
    pub source_fps_milli: AtomicU32,
    pub sent_width: AtomicU32,
    pub sent_height: AtomicU32,
}

impl Default for SendTargets {
    fn default() -> Self {
        Self {
            video_bps: AtomicU32::new(0),
            scale_quarters: AtomicU8::new(4),
            frame_divider: AtomicU8::new(1),
            audio_bps: AtomicU32::new(0),
            audio_loss_percent: AtomicU8::new(0),
            source_pixels: AtomicU32::new(0),
            source_fps_milli: AtomicU32::new(0),
            sent_width: AtomicU32::new(0),
            sent_height: AtomicU32::new(0),
        }
    }
}

impl SendTargets {
    pub(crate) fn set(&self, a: &liveloop_core::send_rate::Allocation) {
        self.video_bps.store(a.video_bps, Ordering::Relaxed);
        self.scale_quarters
            .store(a.scale_quarters.clamp(1, 4), Ordering::Relaxed);
        self.frame_divider
            .store(a.frame_divider.max(1), Ordering::Relaxed);
        self.audio_bps.store(a.audio_bps, Ordering::Relaxed);
        self.audio_loss_percent
            .store(a.audio_loss_percent.min(100), Ordering::Relaxed);
    }
}

/// `side` scaled to `quarters`/4, even (I420 needs even sizes), at least 2.
fn scaled_side(side: u32, quarters: u8) -> u32 {
    ((side * u32::from(quarters) / 4) & !1).max(2)
}

/// One encoded video access unit and how long it lasts.
#[derive(Debug, Clone)]
pub(crate) struct EncodedVideo {
    pub data: Bytes,
    pub duration: Duration,
    /// Whether it starts a new picture sequence (a receiver can begin here).
    pub keyframe: bool,
}

/// Sends an event from a media thread without blocking it (the UI may be slow; media is not).
fn report(events: &mpsc::Sender<EngineEvent>, kind: ErrorKind, message: String) {
    let _ = events.try_send(EngineEvent::Error { kind, message });
}

fn sleep_until(next: Instant) {
    if let Some(wait) = next.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}

/// The camera's two layers: the main one, and the low one for peers whose path cannot carry
/// it (`core::layers`). Each is encoded only while some peer takes it.
#[derive(Debug, Clone)]
pub(crate) struct CameraOut {
    pub main: VideoOut,
    pub low: VideoOut,
}

impl CameraOut {
    pub fn of(&self, layer: Layer) -> &VideoOut {
        match layer {
            Layer::Main => &self.main,
            Layer::Low => &self.low,
        }
    }

    fn wanted(&self) -> bool {
        self.main.wanted().next().is_some() || self.low.wanted().next().is_some()
    }
}

/// One camera layer's encoders (one per codec some peer takes), each with the format it was
/// made for and the bitrate it aims at now, and their keyframe gates.
#[derive(Default)]
struct LayerEncoders {
    encoders: PerCodec<Option<(VideoFormat, Encoder, u32)>>,
    gates: PerCodec<KeyframeGate>,
    scaler: Scaler,
}

/// What one source frame is, for the layers' encoders.
struct SourceFrame<'a> {
    frame: &'a VideoFrame,
    format: VideoFormat,
    /// Frames captured so far (this one included).
    captured: u64,
    /// The encoders' clock.
    now: Duration,
}

impl LayerEncoders {
    /// Encodes `src` for one layer as its targets say (every n-th frame, at a fraction of the
    /// size, at a bitrate) into `out`, one encoder per codec some peer takes.
    fn encode(
        &mut self,
        src: &SourceFrame<'_>,
        targets: &SendTargets,
        keyframes: &Keyframes,
        out: &VideoOut,
        max_bps: u32,
        events: &mpsc::Sender<EngineEvent>,
    ) {
        if out.wanted().next().is_none() {
            // Nobody takes this layer (any more): its encoders are let go.
            self.encoders = PerCodec::default();
            return;
        }
        let fps = src.format.fps.max(1.0);
        let divider = targets.frame_divider.load(Ordering::Relaxed).max(1);
        if !src.captured.is_multiple_of(u64::from(divider)) {
            return;
        }
        let quarters = targets.scale_quarters.load(Ordering::Relaxed).clamp(1, 4);
        let scaled;
        let frame = if quarters < 4 {
            let (w, h) = (
                scaled_side(src.frame.width, quarters),
                scaled_side(src.frame.height, quarters),
            );
            match self.scaler.scale(src.frame, w, h) {
                Ok(small) => {
                    scaled = small;
                    &scaled
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot scale the frame down");
                    src.frame
                }
            }
        } else {
            src.frame
        };
        let rate_bps = match targets.video_bps.load(Ordering::Relaxed) {
            0 => max_bps,
            bps => bps.min(max_bps),
        };
        // The encoders' rate control spreads the bitrate over the frame rate they were made
        // for (the source's): fed every n-th frame, they are told n times the target, so that
        // a change of divider needs no new encoder (and no keyframe).
        let target = rate_bps.saturating_mul(u32::from(divider));
        targets.sent_width.store(frame.width, Ordering::Relaxed);
        targets.sent_height.store(frame.height, Ordering::Relaxed);
        let mut format = src.format;
        format.width = frame.width;
        format.height = frame.height;
        for codec in VideoCodec::PREFERENCE {
            let slot = self.encoders.get_mut(codec);
            if out.of(codec).receiver_count() == 0 {
                *slot = None;
                continue;
            }
            if slot.as_ref().is_none_or(|(f, _, _)| *f != format) {
                let config = H264Config {
                    bitrate_bps: target,
                    fps,
                };
                match Encoder::new(codec, config) {
                    // Its first frame is a keyframe of its own, which does not hold back the
                    // one a peer asks for when it connects.
                    Ok(e) => *slot = Some((format, e, target)),
                    Err(e) => {
                        report(
                            events,
                            ErrorKind::Media,
                            format!("{codec:?} video encoder: {e}"),
                        );
                        continue;
                    }
                }
            }
            let Some((_, enc, aim)) = slot.as_mut() else {
                continue;
            };
            // Small moves are not worth a rate-control reset; 5% is.
            if target.abs_diff(*aim) > *aim / 20 {
                match enc.set_bitrate(target) {
                    Ok(()) => *aim = target,
                    Err(e) => tracing::warn!(error = %e, ?codec, "bitrate not changed"),
                }
            }
            // Requests are coalesced: two keyframes a second at most (core::keyframe).
            let gate = self.gates.get_mut(codec);
            keyframes.pass_to(codec, gate);
            if gate.due(src.now) {
                enc.request_keyframe();
            }
            match enc.encode(frame) {
                Ok(au) if !au.data.is_empty() => {
                    if au.keyframe {
                        gate.sent(src.now, au.data.len(), rate_bps);
                    }
                    let _ = out.of(codec).send(EncodedVideo {
                        data: Bytes::from(au.data),
                        duration: Duration::from_secs_f32(f32::from(divider) / fps),
                        keyframe: au.keyframe,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, ?codec, "encode failed"),
            }
        }
    }
}

/// The capture-and-encode thread for video. Sources are swapped through `swap` (device
/// changes); a new size or rate rebuilds the encoders and starts with a keyframe. Each frame
/// goes to the main layer and, while some peer takes it, the low one.
pub(crate) fn start_video(
    source: Option<Box<dyn VideoSource>>,
    swap: std::sync::mpsc::Receiver<Box<dyn VideoSource>>,
    bitrate_bps: u32,
    preview: Option<crate::FrameTap>,
    stamp: bool,
    flags: Arc<MediaFlags>,
    events: mpsc::Sender<EngineEvent>,
) -> CameraOut {
    let tx = CameraOut {
        main: VideoOut::new(),
        low: VideoOut::new(),
    };
    let out = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("video-encode".into())
        .spawn(move || {
            let mut source = source;
            let mut main = LayerEncoders::default();
            let mut low = LayerEncoders::default();
            let mut captured = 0u64;
            let epoch = Instant::now();
            let mut failing = false;
            let mut stamped = 0u32;
            let mut next = Instant::now();
            while !flags.stop.load(Ordering::Relaxed) {
                if let Ok(new) = swap.try_recv() {
                    source = Some(new);
                    failing = false;
                    flags.request_all_keyframes();
                }
                let fps = source.as_ref().map_or(30.0, |s| s.format().fps.max(1.0));
                next += Duration::from_secs_f32(1.0 / fps);
                sleep_until(next);
                // Camera off: nothing is captured or sent; the others learn it from our state.
                let Some(src) = source.as_mut() else {
                    continue;
                };
                let previewing = preview.is_some();
                if !flags.camera_on.load(Ordering::Relaxed) || (!out.wanted() && !previewing) {
                    continue;
                }
                let frame = match src.next_frame(now_us()) {
                    Ok(mut f) => {
                        failing = false;
                        if stamp {
                            stamped += 1;
                            let capture_ms = (f.capture_us / 1000) as u32;
                            liveloop_media::synthetic::write_stamp(
                                &mut f,
                                liveloop_media::synthetic::Stamp {
                                    number: stamped,
                                    capture_ms,
                                },
                            );
                        }
                        f
                    }
                    Err(e) => {
                        if !failing {
                            report(&events, ErrorKind::NoDevice, format!("camera: {e}"));
                        }
                        failing = true;
                        // Do not spin on a dead device.
                        std::thread::sleep(Duration::from_millis(200));
                        next = Instant::now();
                        continue;
                    }
                };
                if let Some(tap) = &preview {
                    (tap.0)(&frame);
                }
                // The send-rate policy reads what the source gives.
                flags
                    .send
                    .source_pixels
                    .store(frame.width * frame.height, Ordering::Relaxed);
                flags
                    .send
                    .source_fps_milli
                    .store((fps * 1000.0) as u32, Ordering::Relaxed);
                captured += 1;
                let src = SourceFrame {
                    frame: &frame,
                    format: src.format(),
                    captured,
                    now: epoch.elapsed(),
                };
                main.encode(
                    &src,
                    &flags.send,
                    &flags.keyframe,
                    &out.main,
                    bitrate_bps,
                    &events,
                );
                low.encode(
                    &src,
                    &flags.low,
                    &flags.low_keyframe,
                    &out.low,
                    bitrate_bps,
                    &events,
                );
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the video thread");
    }
    tx
}

/// The capture-and-encode thread for audio: 10 ms from the microphone, processed, and sent as
/// 10 ms Opus packets (20 ms on a tiny link); while muted nothing is sent.
pub(crate) fn start_audio(
    source: Option<Box<dyn AudioSource>>,
    swap: std::sync::mpsc::Receiver<Box<dyn AudioSource>>,
    flags: Arc<MediaFlags>,
    events: mpsc::Sender<EngineEvent>,
    tap: Option<crate::AudioTap>,
    reference: Option<liveloop_media::processing::ReferenceTap>,
) -> broadcast::Sender<Bytes> {
    let (tx, _) = broadcast::channel(16);
    let out = tx.clone();
    let spawned = std::thread::Builder::new()
        .name("audio-encode".into())
        .spawn(move || {
            let mut encoder = match OpusEncoder::new(OpusConfig {
                frame_ms: 10,
                ..OpusConfig::default()
            }) {
                Ok(e) => e,
                Err(e) => {
                    report(&events, ErrorKind::Media, format!("audio encoder: {e}"));
                    return;
                }
            };
            let mut applied =
                ProcessingSettings::from_bits(flags.processing.load(Ordering::Relaxed));
            let mut processor =
                liveloop_media::processing::CaptureProcessor::new(applied, reference);
            let _ = events.try_send(EngineEvent::AudioProcessing(applied));
            let mut muted_speech = liveloop_core::muted_speech::MutedSpeech::new();
            let started = Instant::now();
            let mut source = source;
            let mut failing = false;
            // 10 ms from the microphone at a time; sent as 10 ms packets, or two at a time
            // (20 ms: half the header overhead) while audio is at its tiny-link floor.
            let mut frame = vec![0.0f32; encoder.frame_len()];
            let mut packet: Vec<f32> = Vec::with_capacity(2 * frame.len());
            let tick = Duration::from_micros(frame.len() as u64 * 1_000_000 / 48_000);
            let mut next = Instant::now();
            let configured = OpusConfig::default();
            let (mut bitrate, mut loss) = (
                u32::try_from(configured.bitrate_bps).unwrap_or(0),
                configured.expected_loss_percent,
            );
            while !flags.stop.load(Ordering::Relaxed) {
                if let Ok(new) = swap.try_recv() {
                    source = Some(new);
                    failing = false;
                }
                next += tick;
                sleep_until(next);
                let Some(src) = source.as_mut() else {
                    continue;
                };
                // Capture goes on while muted (a live microphone must be drained); nothing is sent.
                if let Err(e) = src.read(&mut frame) {
                    if !failing {
                        report(&events, ErrorKind::NoDevice, format!("microphone: {e}"));
                    }
                    failing = true;
                    continue;
                }
                failing = false;
                // Processed while muted too, so the echo canceller keeps learning and the
                // voice activity can say "you are muted".
                let settings =
                    ProcessingSettings::from_bits(flags.processing.load(Ordering::Relaxed));
                if settings != applied {
                    processor.set_settings(settings);
                    applied = settings;
                    let _ = events.try_send(EngineEvent::AudioProcessing(settings));
                }
                let muted = flags.muted.load(Ordering::Relaxed);
                if settings.is_off() && !muted {
                    processor.discard_reference();
                } else {
                    // All off and muted: only the voice activity is computed.
                    let voice = processor.process_frames(&mut frame);
                    if muted_speech.observe(
                        started.elapsed(),
                        muted,
                        voice.probability,
                        voice.level_dbfs,
                    ) {
                        let _ = events.try_send(EngineEvent::SpeakingWhileMuted);
                    }
                }
                if muted {
                    packet.clear();
                    continue;
                }
                if let Some(tap) = &tap {
                    (tap.0)(&frame);
                }
                if out.receiver_count() == 0 {
                    continue;
                }
                // The send-rate policy: Opus's rate (audio first: it moves only on a tiny
                // link) and the loss its in-band FEC should expect.
                let want = match flags.send.audio_bps.load(Ordering::Relaxed) {
                    0 => u32::try_from(configured.bitrate_bps).unwrap_or(0),
                    bps => bps,
                };
                if want != bitrate {
                    match encoder.set_bitrate(i32::try_from(want).unwrap_or(i32::MAX)) {
                        Ok(()) => bitrate = want,
                        Err(e) => tracing::warn!(error = %e, "Opus bitrate not changed"),
                    }
                }
                let want_loss = i32::from(flags.send.audio_loss_percent.load(Ordering::Relaxed));
                if want_loss != loss {
                    match encoder.set_expected_loss(want_loss) {
                        Ok(()) => loss = want_loss,
                        Err(e) => tracing::warn!(error = %e, "Opus loss not changed"),
                    }
                }
                packet.extend_from_slice(&frame);
                let packet_len = if bitrate <= liveloop_core::send_rate::AUDIO_FLOOR_BPS {
                    2 * frame.len()
                } else {
                    frame.len()
                };
                if packet.len() < packet_len {
                    continue;
                }
                match encoder.encode(&packet) {
                    Ok(bytes) => {
                        let _ = out.send(Bytes::from(bytes));
                    }
                    Err(e) => tracing::warn!(error = %e, "Opus encode failed"),
                }
                packet.clear();
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the audio thread");
    }
    tx
}

/// A screen share in progress: what its thread watches.
#[derive(Debug, Default)]
pub(crate) struct ScreenFlags {
    pub stop: AtomicBool,
    pub keyframe: Keyframes,
    /// The share's bitrate, set by the session's send rate (`0`: [`SCREEN_MAX_BPS`]).
    pub bitrate_bps: AtomicU32,
    /// Every n-th screen frame is sent (set by the send rate: a share keeps its size and
    /// lowers its frame rate).
    pub frame_divider: AtomicU8,
    /// What the screen thread reports back: the source's pixels and frame rate (1/1000 fps).
    pub source_pixels: AtomicU32,
    pub source_fps_milli: AtomicU32,
}

/// A screen encoder with the size it was made for and the bitrate it aims at now.
type ScreenEncoder = ((u32, u32), Encoder, u32);

/// The most a screen share sends.
pub(crate) const SCREEN_MAX_BPS: u32 = 2_500_000;

/// The screen share's capture-and-encode thread. Screens are encoded for legibility: full
/// resolution (up to 1920x1080, larger screens are scaled by the source), the source's frame
/// rate (a few frames a second is plenty for slides and code), up to 2.5 Mbit/s; when the
/// send rate gives it less, it sends every n-th frame (`flags.frame_divider`), never a
/// smaller picture. It ends when
/// `flags.stop` is set, or when the source fails (a shared window closed): then it sends the
/// reason on `ended`, tagged with `generation`.
pub(crate) fn start_screen(
    mut source: Box<dyn VideoSource>,
    flags: Arc<ScreenFlags>,
    out: VideoOut,
    ended: mpsc::UnboundedSender<(u64, String)>,
    generation: u64,
) {
    let spawned = std::thread::Builder::new()
        .name("screen-encode".into())
        .spawn(move || {
            let fps = source.format().fps.clamp(1.0, 30.0);
            let mut encoders: PerCodec<Option<ScreenEncoder>> = PerCodec::default();
            let mut gates: PerCodec<KeyframeGate> = PerCodec::default();
            let epoch = Instant::now();
            let mut next = Instant::now();
            let mut failures = 0;
            let mut captured = 0u64;
            flags
                .source_fps_milli
                .store((fps * 1000.0) as u32, Ordering::Relaxed);
            while !flags.stop.load(Ordering::Relaxed) {
                next += Duration::from_secs_f32(1.0 / fps);
                sleep_until(next);
                let frame = match source.next_frame(now_us()) {
                    Ok(f) => {
                        failures = 0;
                        f
                    }
                    // A window that closed fails every time; a passing capture error does not.
                    Err(e) => {
                        failures += 1;
                        if failures >= 5 {
                            let _ = ended.send((generation, e.to_string()));
                            return;
                        }
                        continue;
                    }
                };
                let size = (frame.width, frame.height);
                flags
                    .source_pixels
                    .store(frame.width * frame.height, Ordering::Relaxed);
                captured += 1;
                let divider = flags.frame_divider.load(Ordering::Relaxed).max(1);
                if !captured.is_multiple_of(u64::from(divider)) {
                    continue;
                }
                let rate_bps = match flags.bitrate_bps.load(Ordering::Relaxed) {
                    0 => SCREEN_MAX_BPS,
                    bps => bps.min(SCREEN_MAX_BPS),
                };
                // As the camera's: told n times the target when fed every n-th frame.
                let target = rate_bps.saturating_mul(u32::from(divider));
                for codec in VideoCodec::PREFERENCE {
                    let slot = encoders.get_mut(codec);
                    if out.of(codec).receiver_count() == 0 {
                        *slot = None;
                        continue;
                    }
                    if slot.as_ref().is_none_or(|(s, _, _)| *s != size) {
                        let config = H264Config {
                            bitrate_bps: target,
                            fps,
                        };
                        match Encoder::new(codec, config) {
                            // Its first frame is a keyframe of its own, which does not
                            // hold back the one a peer asks for when it connects.
                            Ok(e) => *slot = Some((size, e, target)),
                            Err(e) => {
                                let _ = ended.send((generation, format!("screen encoder: {e}")));
                                return;
                            }
                        }
                    }
                    let Some((_, enc, aim)) = slot.as_mut() else {
                        continue;
                    };
                    if target.abs_diff(*aim) > *aim / 20 {
                        match enc.set_bitrate(target) {
                            Ok(()) => *aim = target,
                            Err(e) => tracing::warn!(error = %e, ?codec, "bitrate not changed"),
                        }
                    }
                    // Requests are coalesced: two keyframes a second at most (core::keyframe).
                    let gate = gates.get_mut(codec);
                    flags.keyframe.pass_to(codec, gate);
                    if gate.due(epoch.elapsed()) {
                        enc.request_keyframe();
                    }
                    match enc.encode(&frame) {
                        Ok(au) if !au.data.is_empty() => {
                            if au.keyframe {
                                gate.sent(epoch.elapsed(), au.data.len(), rate_bps);
                            }
                            let _ = out.of(codec).send(EncodedVideo {
                                data: Bytes::from(au.data),
                                duration: Duration::from_secs_f32(f32::from(divider) / fps),
                                keyframe: au.keyframe,
                            });
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, ?codec, "screen encode failed"),
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the screen thread");
    }
}

/// Decodes one frame, with a decoder for its codec (made on the first frame of a codec).
fn decode(
    decoder: &mut Option<Decoder>,
    codec: VideoCodec,
    frame: &[u8],
) -> Result<Option<VideoFrame>, MediaError> {
    if decoder.as_ref().is_none_or(|d| d.codec() != codec) {
        *decoder = Some(Decoder::new(codec)?);
    }
    match decoder.as_mut() {
        Some(d) => d.decode(frame),
        None => Ok(None),
    }
}

/// Frames waiting for a decoder thread (about a second of video). A remote that sends
/// faster than we decode fills it: frames past it are dropped and a keyframe is asked for
/// (`queue_frame`), so memory stays bounded and the picture recovers.
pub(crate) const MAX_DECODE_QUEUE: usize = 30;

/// Decoded frames a decoder thread holds for lip sync, at most (300 ms of 30 fps video is 9).
/// A remote sending faster than that fills it; the oldest is then dropped.
pub(crate) const MAX_HELD_FRAMES: usize = 12;

/// Decoded frames of one participant handed to the owner (in the event channel, or still
/// referenced by the UI, a recording's queue) at most: half a second of video. A UI that
/// falls behind a fast sender would otherwise let the event channel (4096 events) fill with
/// decoded pictures, 1.4 MB each at 720p; past the cap a new frame is dropped: showing late
/// frames helps no one.
pub(crate) const MAX_FRAMES_IN_FLIGHT: usize = 16;

/// The way into a decoder thread.
pub(crate) type DecoderQueue = std::sync::mpsc::SyncSender<(VideoCodec, u32, Bytes)>;

/// Queues a frame for a decoder; when its queue is full the frame is dropped and a keyframe
/// asked for (the frames after it would not decode).
pub(crate) fn queue_frame(
    queue: &DecoderQueue,
    keyframe_needed: &AtomicBool,
    frame: (VideoCodec, u32, Bytes),
) {
    if let Err(std::sync::mpsc::TrySendError::Full(_)) = queue.try_send(frame) {
        keyframe_needed.store(true, Ordering::Relaxed);
    }
}

/// Counters a decoder thread keeps for the stats.
#[derive(Debug, Default)]
pub(crate) struct DecodeCounters {
    pub frames: AtomicU64,
    pub errors: AtomicU64,
}

/// What lip sync shares between the playout tick (audio) and a decoder thread (video).
#[derive(Debug, Default)]
pub(crate) struct SyncState {
    pub audio_map: std::sync::Mutex<Option<ClockMap>>,
    pub video_map: std::sync::Mutex<Option<ClockMap>>,
    /// How far audio playout runs behind the sender's clock (µs), and when that was measured.
    pub audio_lag: std::sync::Mutex<Option<(i64, Instant)>>,
    /// The last audio − video lag difference seen before holding (µs), for the stats.
    pub av_offset_us: std::sync::atomic::AtomicI64,
    /// Until sender reports give both clocks: how long audio waits between arrival and
    /// playout (the jitter buffer's delay plus a frame), and when audio last played.
    pub audio_delay: std::sync::Mutex<Option<(Duration, Instant)>>,
    /// How long audio playout waits for video that runs later than it: fed by the decoder
    /// thread with each frame's lateness, read by the playout tick into the jitter buffer.
    pub audio_hold: std::sync::Mutex<avsync::AudioHold>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl SyncState {
    /// How long to hold a frame with this RTP timestamp, decoded now.
    fn hold(&self, rtp_timestamp: u32) -> Duration {
        let video = *lock(&self.video_map);
        let audio = *lock(&self.audio_lag);
        let (Some(video), Some((audio_lag, at))) = (video, audio) else {
            // No sender reports yet (the first second of a call): assume audio and video left
            // together and travel alike, so video waits as long as audio waits to play.
            return match *lock(&self.audio_delay) {
                Some((delay, at)) if at.elapsed() < Duration::from_secs(1) => {
                    delay.min(Duration::from_millis(300))
                }
                _ => Duration::ZERO,
            };
        };
        if at.elapsed() > Duration::from_secs(1) {
            return Duration::ZERO;
        }
        let now = now_us() as i64;
        let video_lag = now - video.sender_time_us(rtp_timestamp);
        self.av_offset_us
            .store(audio_lag - video_lag, Ordering::Relaxed);
        {
            // How far this frame runs behind the audio as it would play without the hold.
            let mut hold = lock(&self.audio_hold);
            let held = hold.current().as_micros() as i64;
            hold.observe(
                Duration::from_micros(now.unsigned_abs()),
                video_lag - (audio_lag - held),
            );
        }
        avsync::video_hold(audio_lag, video_lag)
    }
}

/// A decoder thread for one remote participant; it ends when the sender is dropped. Frames
/// that fail to decode make it ask for a keyframe through `keyframe_needed`. Decoded frames
/// are held until the audio of the same moment plays (lip sync), then reported.
pub(crate) fn start_decoder(
    from: String,
    events: mpsc::Sender<EngineEvent>,
    counters: Arc<DecodeCounters>,
    keyframe_needed: Arc<AtomicBool>,
    sync: Arc<SyncState>,
) -> DecoderQueue {
    let (tx, rx) = std::sync::mpsc::sync_channel::<(VideoCodec, u32, Bytes)>(MAX_DECODE_QUEUE);
    let spawned = std::thread::Builder::new()
        .name(format!("decode-{from}"))
        .spawn(move || {
            let mut decoder: Option<Decoder> = None;
            let mut held: VecDeque<(Instant, EngineEvent)> = VecDeque::new();
            let mut in_flight: VecDeque<std::sync::Weak<VideoFrame>> = VecDeque::new();
            loop {
                let wait = held.front().map_or(Duration::from_secs(1), |(at, _)| {
                    at.saturating_duration_since(Instant::now())
                });
                match rx.recv_timeout(wait) {
                    Ok((codec, rtp_timestamp, au)) => match decode(&mut decoder, codec, &au) {
                        Ok(Some(frame)) => {
                            counters.frames.fetch_add(1, Ordering::Relaxed);
                            let stamp = read_stamp(&frame);
                            let show_at = Instant::now() + sync.hold(rtp_timestamp);
                            if held.len() >= MAX_HELD_FRAMES {
                                held.pop_front();
                            }
                            held.push_back((
                                show_at,
                                EngineEvent::FrameDecoded {
                                    from: from.clone(),
                                    frame: Arc::new(frame),
                                    stamp,
                                    decoded_ms: now_ms32(),
                                    shown_ms: 0,
                                },
                            ));
                        }
                        Ok(None) => {}
                        Err(_) => {
                            counters.errors.fetch_add(1, Ordering::Relaxed);
                            keyframe_needed.store(true, Ordering::Relaxed);
                        }
                    },
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
                }
                while held.front().is_some_and(|(at, _)| *at <= Instant::now()) {
                    let Some((_, mut event)) = held.pop_front() else {
                        break;
                    };
                    if let EngineEvent::FrameDecoded {
                        shown_ms, frame, ..
                    } = &mut event
                    {
                        in_flight.retain(|f| f.strong_count() > 0);
                        if in_flight.len() >= MAX_FRAMES_IN_FLIGHT {
                            continue;
                        }
                        in_flight.push_back(Arc::downgrade(frame));
                        *shown_ms = now_ms32();
                    }
                    // A UI that cannot keep up loses frames, never the call.
                    if let Err(mpsc::error::TrySendError::Closed(_)) = events.try_send(event) {
                        return;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a decoder thread");
    }
    tx
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use liveloop_media::synthetic::SyntheticCamera;

    use super::*;

    fn rss() -> u64 {
        crate::meter::Meter::new()
            .sample(std::process::id())
            .expect("this process can be read")
            .rss_bytes
    }

    /// A remote sends frames faster than its owner takes them: the decoder's queue keeps 30
    /// and asks for a keyframe, and at most [`MAX_FRAMES_IN_FLIGHT`] decoded pictures wait
    /// for the owner, whatever number were decoded; once it reads, pictures flow again.
    #[test]
    fn a_frame_flood_into_an_owner_that_reads_nothing_is_capped() {
        const FLOOD: usize = 600;
        let (events, mut owner) = mpsc::channel(4096);
        let counters = Arc::new(DecodeCounters::default());
        let keyframe_needed = Arc::new(AtomicBool::new(false));
        let queue = start_decoder(
            "flood".into(),
            events,
            counters.clone(),
            keyframe_needed.clone(),
            Arc::new(SyncState::default()),
        );
        // Real 640x360 keyframes: each decodes to a 345,600-byte picture, 207 MB for the flood
        // were they all kept.
        let camera = SyntheticCamera::new(640, 360, 30.0);
        let mut encoder = H264Encoder::new(H264Config {
            bitrate_bps: 1_000_000,
            fps: 30.0,
        })
        .unwrap();
        let keyframes: Vec<Bytes> = (0..10u64)
            .map(|n| {
                encoder.request_keyframe();
                Bytes::from(encoder.encode(&camera.render(n, n * 33_333)).unwrap().data)
            })
            .collect();
        let before = rss();
        // Every frame decoded: the sender waits for room in the queue.
        for n in 0..FLOOD {
            queue
                .send((VideoCodec::H264, n as u32 * 3000, keyframes[n % 10].clone()))
                .unwrap();
        }
        let decoded = |c: &DecodeCounters| c.frames.load(Ordering::Relaxed) as usize;
        let deadline = Instant::now() + Duration::from_secs(60);
        while decoded(&counters) < FLOOD && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::thread::sleep(Duration::from_millis(50));
        let after = rss();
        let mut waiting = Vec::new();
        while let Ok(ev) = owner.try_recv() {
            waiting.push(ev);
        }
        let grown = after.saturating_sub(before);
        eprintln!(
            "decoded {} of {FLOOD}; {} pictures waited for the owner; RSS +{:.1} MiB",
            decoded(&counters),
            waiting.len(),
            grown as f64 / f64::from(1 << 20)
        );
        assert_eq!(decoded(&counters), FLOOD, "every frame was decoded");
        assert_eq!(waiting.len(), MAX_FRAMES_IN_FLIGHT);
        // 16 pictures are 5.3 MiB; the rest is the decoder's own buffers and the allocator.
        assert!(grown < 40 << 20, "RSS grew by {grown} bytes");

        // Pictures the owner has dropped no longer count: the next ones reach it.
        drop(waiting);
        queue
            .send((VideoCodec::H264, 0, keyframes[0].clone()))
            .unwrap();
        let next = owner
            .blocking_recv()
            .expect("a picture after the owner read");
        assert!(matches!(next, EngineEvent::FrameDecoded { .. }));

        // Without waiting for room, frames past the queue's 30 are dropped and a keyframe is
        // asked for.
        keyframe_needed.store(false, Ordering::Relaxed);
        for n in 0..10_000u32 {
            queue_frame(
                &queue,
                &keyframe_needed,
                (VideoCodec::H264, n, keyframes[0].clone()),
            );
        }
        assert!(keyframe_needed.load(Ordering::Relaxed));
    }
}
