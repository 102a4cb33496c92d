//! The devices a call uses: the camera and microphone it sends from (or synthetic and file
//! media, for demos and tests), and the speaker the call's playout writes to.

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
    Media {
        video,
        audio,
        speaker: None,
    }
}

/// The devices chosen in Settings (empty ids: the system default).
#[derive(Debug, Clone, Default)]
pub struct Devices {
    pub camera: String,
    pub microphone: String,
    pub speaker: String,
    /// How the microphone is processed (Settings: echo cancellation, noise suppression, gain).
    pub processing: liveloop_media::processing::ProcessingSettings,
}

fn chosen(id: &str) -> Option<&str> {
    (!id.is_empty()).then_some(id)
}

/// Keeps the speaker open; dropping it closes the speaker.
pub(crate) struct SpeakerGuard {
    _close: std::sync::mpsc::Sender<()>,
}

/// Opens the chosen speaker on a thread of its own (cpal streams stay on the thread that made
/// them) and returns the feed the call's playout writes to. `None` with a note when there is no
/// speaker: the call goes on, unheard.
pub(crate) fn start_speaker(
    id: String,
    notes: &mut Vec<String>,
) -> (Option<liveloop_media::audio::SpeakerFeed>, SpeakerGuard) {
    use liveloop_media::device::audio::{LIVE_SPEAKER_RING, Speaker};
    let (close, closed) = std::sync::mpsc::channel::<()>();
    let (opened_tx, opened) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("speaker".into())
        .spawn(
            move || match Speaker::open(chosen(&id), LIVE_SPEAKER_RING) {
                Ok((speaker, feed)) => {
                    let _ = opened_tx.send(Ok(feed));
                    // Until the call ends (the guard is dropped).
                    let _ = closed.recv();
                    drop(speaker);
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                }
            },
        );
    let feed = match spawned {
        Ok(_) => match opened.recv() {
            Ok(Ok(feed)) => Some(feed),
            Ok(Err(e)) => {
                let e = e.to_string();
                notes.push(format!(
                    "No speaker: {}. You do not hear the call.",
                    e.trim_end_matches('.')
                ));
                None
            }
            Err(_) => None,
        },
        Err(e) => {
            notes.push(format!("No speaker: {e}."));
            None
        }
    };
    (feed, SpeakerGuard { _close: close })
}
