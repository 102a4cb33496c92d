//! An echo peer's media: sources that send back what one participant sent us. The video
//! source re-sends the latest decoded frame (so a synthetic camera's stamps come back, and the
//! sender can measure the full round trip); the audio source plays back the participant's
//! audio after our jitter buffer.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use liveloop_media::{AudioSource, MediaError, VideoFormat, VideoFrame, VideoSource};

use crate::{EngineEvent, Media};

/// At most this much audio (1 s at 48 kHz) waits to be echoed; older samples are dropped.
const MAX_AUDIO: usize = 48_000;

#[derive(Debug, Default)]
struct Shared {
    frame: Mutex<Option<Arc<VideoFrame>>>,
    audio: Mutex<VecDeque<f32>>,
}

/// Feeds the echo sources from the engine's events.
#[derive(Debug, Clone)]
pub struct EchoFeed {
    shared: Arc<Shared>,
}

impl EchoFeed {
    /// Takes what an event carries (frames and audio from anyone: an echo peer talks to one).
    pub fn on_event(&self, event: &EngineEvent) {
        match event {
            EngineEvent::FrameDecoded { frame, .. } => {
                *self
                    .shared
                    .frame
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner) = Some(frame.clone());
            }
            EngineEvent::AudioPlayout { pcm, .. } => {
                let mut audio = self
                    .shared
                    .audio
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                audio.extend(pcm.iter().copied());
                let excess = audio.len().saturating_sub(MAX_AUDIO);
                audio.drain(..excess);
            }
            _ => {}
        }
    }
}

struct EchoVideo {
    shared: Arc<Shared>,
    format: VideoFormat,
}

impl VideoSource for EchoVideo {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError> {
        let latest = self
            .shared
            .frame
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let mut frame = match latest {
            Some(f) => (*f).clone(),
            None => VideoFrame::blank(self.format.width, self.format.height),
        };
        frame.capture_us = capture_us;
        Ok(frame)
    }
}

struct EchoAudio {
    shared: Arc<Shared>,
}

impl AudioSource for EchoAudio {
    fn read(&mut self, out: &mut [f32]) -> Result<(), MediaError> {
        let mut audio = self
            .shared
            .audio
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for s in out.iter_mut() {
            *s = audio.pop_front().unwrap_or(0.0);
        }
        Ok(())
    }
}

/// Media for an echo peer: video at `format` until the first frame arrives (then the
/// received size), and the feed to pass every engine event to.
#[must_use]
pub fn echo_media(format: VideoFormat) -> (Media, EchoFeed) {
    let shared = Arc::new(Shared::default());
    let media = Media {
        video: Some(Box::new(EchoVideo {
            shared: shared.clone(),
            format,
        })),
        audio: Some(Box::new(EchoAudio {
            shared: shared.clone(),
        })),
        speaker: None,
    };
    (media, EchoFeed { shared })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoes_the_latest_frame_and_the_audio_in_order() {
        let format = VideoFormat {
            width: 64,
            height: 32,
            fps: 30.0,
        };
        let (mut media, feed) = echo_media(format);
        let video = media.video.as_mut().expect("echo video");
        let blank = video.next_frame(5).expect("a frame");
        assert_eq!((blank.width, blank.height, blank.capture_us), (64, 32, 5));
        let mut sent = VideoFrame::blank(16, 16);
        sent.data[0] = 7;
        feed.on_event(&EngineEvent::FrameDecoded {
            from: "a".into(),
            frame: Arc::new(sent),
            stamp: None,
            decoded_ms: 0,
            shown_ms: 0,
        });
        let echoed = video.next_frame(9).expect("a frame");
        assert_eq!(
            (echoed.width, echoed.data[0], echoed.capture_us),
            (16, 7, 9)
        );
        feed.on_event(&EngineEvent::AudioPlayout {
            from: "a".into(),
            pcm: vec![0.5, 0.25],
        });
        let mut out = [1.0f32; 3];
        media
            .audio
            .as_mut()
            .expect("echo audio")
            .read(&mut out)
            .expect("read");
        assert_eq!(out, [0.5, 0.25, 0.0]);
    }
}
