//! The devices a call uses: the camera and microphone it sends from (or synthetic and file
//! media, for demos and tests), and the speaker thread that plays everyone's audio.

use liveloop_engine::Media;
use liveloop_media::{AudioSource, VideoSource};

/// The devices the app sends from. `LIVELOOP_VIDEO` / `LIVELOOP_AUDIO` choose synthetic or
/// file media instead (`synthetic[:WxH@FPS]`, a .y4m or .wav file, `none`), for demos and tests
/// on machines without a camera or microphone. With no device, a call goes on without it.
pub(crate) fn media(devices: &Devices, notes: &mut Vec<String>) -> Media {
    let video: Option<Box<dyn VideoSource>> = match std::env::var("LIVELOOP_VIDEO") {
        Ok(spec) => match liveloop_media::spec::video_source(&spec) {
            Ok(v) => v,
            Err(e) => {
                notes.push(format!("LIVELOOP_VIDEO: {e}"));
                None
            }
        },
        Err(_) => match liveloop_media::device::camera::Camera::open(chosen(&devices.camera)) {
            Ok(c) => Some(Box::new(c)),
            Err(e) => {
                notes.push(format!("No camera: {e}. Others see your name instead."));
                None
            }
        },
    };
    let audio: Option<Box<dyn AudioSource>> = match std::env::var("LIVELOOP_AUDIO") {
        Ok(spec) => match liveloop_media::spec::audio_source(&spec) {
            Ok(a) => a,
            Err(e) => {
                notes.push(format!("LIVELOOP_AUDIO: {e}"));
                None
            }
        },
        Err(_) => {
            match liveloop_media::device::audio::Microphone::open(chosen(&devices.microphone)) {
                Ok(m) => Some(Box::new(m)),
                Err(e) => {
                    notes.push(format!("No microphone: {e}. You are muted."));
                    None
                }
            }
        }
    };
    Media { video, audio }
}

/// The devices chosen in Settings (empty ids: the system default).
#[derive(Debug, Clone, Default)]
pub struct Devices {
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
}

fn chosen(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

/// The speaker thread: cpal streams stay on the thread that made them.
pub(crate) fn start_speaker(id: String) -> Option<std::sync::mpsc::Sender<(u64, Vec<f32>)>> {
    let (tx, rx) = std::sync::mpsc::channel::<(u64, Vec<f32>)>();
    let spawned = std::thread::Builder::new()
        .name("speaker".into())
        .spawn(move || {
            let speaker = match liveloop_media::device::audio::Speaker::open(chosen(&id)) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "no speaker; call audio is not played");
                    // Drain so senders never block.
                    while rx.recv().is_ok() {}
                    return;
                }
            };
            while let Ok((stream, pcm)) = rx.recv() {
                speaker.push(stream, &pcm);
            }
        });
    spawned.ok().map(|_| tx)
}

/// Stable small numbers for the speaker's per-participant streams.
pub(crate) fn stream_id(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
