//! The pre-join check: the camera's picture on the `preview` tile, the microphone's level as
//! `level` events, a test sound on the speaker, and an avatar picture taken from the camera.
//! Devices open only while the check is shown.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use liveloop_media::VideoFrame;
use tauri::{AppHandle, Emitter};

use crate::AppError;
use crate::devices::{Devices, media};
use crate::video::VideoHub;

/// The running check, if any.
#[derive(Debug, Default)]
pub struct Preview {
    stop: Mutex<Option<Arc<AtomicBool>>>,
    latest: Arc<Mutex<Option<VideoFrame>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Preview {
    /// Opens the chosen devices and starts the picture and the level meter. Returns notes about
    /// devices that could not open.
    pub fn start(&self, app: AppHandle, hub: VideoHub, devices: &Devices) -> Vec<String> {
        self.stop();
        let mut notes = Vec::new();
        let liveloop_engine::Media { video, audio, .. } = media(devices, &mut notes);
        let stop = Arc::new(AtomicBool::new(false));
        *lock(&self.stop) = Some(stop.clone());
        if let Some(mut video) = video {
            let (stop, latest) = (stop.clone(), self.latest.clone());
            let _ = std::thread::Builder::new()
                .name("preview-video".into())
                .spawn(move || {
                    let fps = video.format().fps.clamp(1.0, 60.0);
                    let start = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        match video.next_frame(start.elapsed().as_micros() as u64) {
                            Ok(frame) => {
                                hub.publish("preview", Arc::new(frame.clone()));
                                *lock(&latest) = Some(frame);
                            }
                            Err(_) => break,
                        }
                        std::thread::sleep(Duration::from_secs_f32(1.0 / fps));
                    }
                    hub.clear("preview");
                });
        }
        if let Some(mut audio) = audio {
            let _ = std::thread::Builder::new()
                .name("preview-audio".into())
                .spawn(move || {
                    // 50 ms blocks; the level is the block's RMS in dBFS, sent ten times a second.
                    let mut block = vec![0.0f32; 2400];
                    let mut next = Instant::now();
                    while !stop.load(Ordering::Relaxed) {
                        if audio.read(&mut block).is_err() {
                            break;
                        }
                        let level = liveloop_media::quality::rms(&block);
                        let db = 20.0 * level.max(1e-5).log10();
                        let _ = app.emit("level", db);
                        next += Duration::from_millis(50);
                        if let Some(wait) = next.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                });
        }
        notes
    }

    /// Stops the check and closes its devices.
    pub fn stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            stop.store(true, Ordering::Relaxed);
        }
    }

    /// The current camera picture as a 96x96 JPEG data URL (the avatar, the matchmaking
    /// dialect's `userImage`).
    ///
    /// # Errors
    /// [`AppError::Call`] when there is no picture yet.
    pub fn snapshot(&self) -> Result<String, AppError> {
        let frame = lock(&self.latest)
            .clone()
            .ok_or_else(|| AppError::Call("no camera picture to take".into()))?;
        avatar_data_url(&frame)
    }
}

/// A square, centred 96x96 JPEG of `frame`, as a data URL.
///
/// # Errors
/// When the frame cannot be converted or encoded.
pub fn avatar_data_url(frame: &VideoFrame) -> Result<String, AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::Call(format!("cannot make the picture: {e}"));
    let rgba = liveloop_media::convert::i420_to_rgba(frame).map_err(|e| fail(&e))?;
    let image = image::RgbaImage::from_raw(frame.width, frame.height, rgba)
        .ok_or_else(|| fail(&"frame size"))?;
    let side = frame.width.min(frame.height);
    let square = image::imageops::crop_imm(
        &image,
        (frame.width - side) / 2,
        (frame.height - side) / 2,
        side,
        side,
    )
    .to_image();
    let small = image::imageops::resize(&square, 96, 96, image::imageops::FilterType::Triangle);
    jpeg_url(small, 80).map_err(|e| fail(&e))
}

/// An RGBA image as a JPEG data URL.
fn jpeg_url(image: image::RgbaImage, quality: u8) -> Result<String, image::ImageError> {
    use base64::Engine as _;
    let rgb = image::DynamicImage::ImageRgba8(image).to_rgb8();
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, quality).encode_image(&rgb)?;
    Ok(format!(
        "data:image/jpeg;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(jpeg)
    ))
}

/// `frame` as a JPEG data URL (thumbnails in the screen picker; the frame is already small).
///
/// # Errors
/// When the frame cannot be converted or encoded.
pub fn jpeg_data_url(frame: &VideoFrame) -> Result<String, AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::Call(format!("cannot make a thumbnail: {e}"));
    let rgba = liveloop_media::convert::i420_to_rgba(frame).map_err(|e| fail(&e))?;
    let image = image::RgbaImage::from_raw(frame.width, frame.height, rgba)
        .ok_or_else(|| fail(&"frame size"))?;
    jpeg_url(image, 75).map_err(|e| fail(&e))
}

/// Plays a one-second 440 Hz tone on the chosen speaker.
///
/// # Errors
/// When the speaker cannot open.
pub fn speaker_test(speaker: &str) -> Result<(), AppError> {
    let id = (!speaker.is_empty()).then_some(speaker);
    let (_out, mut feed) = liveloop_media::device::audio::Speaker::open(id, 48_000)
        .map_err(|e| AppError::Call(format!("speaker: {e}")))?;
    let tone: Vec<f32> = (0..48_000)
        .map(|n| {
            let t = n as f32 / 48_000.0;
            // Faded in and out so it does not click.
            let fade = (t * 20.0).min(1.0).min((1.0 - t) * 20.0);
            0.3 * fade * (std::f32::consts::TAU * 440.0 * t).sin()
        })
        .collect();
    feed.write(&tone);
    std::thread::sleep(Duration::from_millis(1100));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avatars_are_small_square_jpegs() {
        let frame = liveloop_media::synthetic::SyntheticCamera::new(640, 360, 30.0).render(3, 0);
        let url = avatar_data_url(&frame).unwrap_or_default();
        assert!(url.starts_with("data:image/jpeg;base64,"), "{url:.40}");
        // Well under the matchmaking dialect's limit on userImage.
        assert!(url.len() < 20_000, "{} bytes", url.len());
    }
}
