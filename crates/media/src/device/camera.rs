//! Cameras through nokhwa (V4L2 on Linux, AVFoundation on macOS, Media Foundation on Windows).

use nokhwa::Camera as NokhwaCamera;
use nokhwa::pixel_format::RgbFormat;
use nokhwa::utils::{
    ApiBackend, CameraFormat, CameraIndex, FrameFormat, RequestedFormat, RequestedFormatType,
};

use super::pixel;
use crate::{DeviceInfo, MediaError, VideoFormat, VideoFrame, VideoSource};

const KIND: &str = "camera";

fn device_err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Device {
        kind: KIND,
        message: e.to_string(),
    }
}

/// The cameras on this system (empty when there are none).
///
/// # Errors
/// When the camera API itself fails (not for "no cameras").
pub fn list() -> Result<Vec<DeviceInfo>, MediaError> {
    let cameras = nokhwa::query(ApiBackend::Auto).map_err(device_err)?;
    Ok(cameras
        .iter()
        .enumerate()
        .map(|(i, c)| DeviceInfo {
            id: c.index().to_string(),
            name: c.human_name(),
            is_default: i == 0,
        })
        .collect())
}

/// The best mode up to 1280x720 at 30 fps: the largest such size, then the highest rate, then
/// the cheapest format to convert.
#[must_use]
pub fn best_mode(formats: &[CameraFormat]) -> Option<CameraFormat> {
    let cost = |f: FrameFormat| match f {
        FrameFormat::NV12 => 0,
        FrameFormat::YUYV => 1,
        FrameFormat::MJPEG => 2,
        _ => 3,
    };
    formats
        .iter()
        .filter(|f| {
            f.width() <= 1280 && f.height() <= 720 && f.frame_rate() <= 30 && cost(f.format()) < 3
        })
        .max_by_key(|f| (f.width() * f.height(), f.frame_rate(), 3 - cost(f.format())))
        .copied()
}

/// A raw camera buffer handed from the capture thread.
struct Raw {
    format: FrameFormat,
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// An open camera. nokhwa's camera is not `Send`, so it lives on a capture thread of its own
/// that keeps only the newest buffer; conversion to I420 happens in `next_frame`.
pub struct Camera {
    frames: std::sync::mpsc::Receiver<Result<Raw, MediaError>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    format: VideoFormat,
    name: String,
    next: u64,
}

impl std::fmt::Debug for Camera {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Camera")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn open_nokhwa(info: &DeviceInfo) -> Result<NokhwaCamera, MediaError> {
    let index = info
        .id
        .parse::<u32>()
        .map_or_else(|_| CameraIndex::String(info.id.clone()), CameraIndex::Index);
    let busy = |e: nokhwa::NokhwaError| {
        let text = e.to_string();
        if text.to_lowercase().contains("busy") {
            MediaError::DeviceBusy {
                kind: KIND,
                name: info.name.clone(),
            }
        } else {
            device_err(text)
        }
    };
    let mut camera = NokhwaCamera::new(
        index,
        RequestedFormat::new::<RgbFormat>(RequestedFormatType::None),
    )
    .map_err(busy)?;
    if let Some(mode) = best_mode(&camera.compatible_camera_formats().map_err(device_err)?) {
        camera
            .set_camera_requset(RequestedFormat::new::<RgbFormat>(
                RequestedFormatType::Exact(mode),
            ))
            .map_err(busy)?;
    }
    camera.open_stream().map_err(busy)?;
    Ok(camera)
}

impl Camera {
    /// Opens camera `id` (from [`list`]) or the first one, in its best mode up to 720p30.
    ///
    /// # Errors
    /// [`MediaError::NoDevice`] when there is no camera, [`MediaError::UnknownDevice`] for a
    /// bad id, [`MediaError::DeviceBusy`] when another program holds it.
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        let cameras = list()?;
        let info = match id {
            Some(id) => cameras.iter().find(|c| c.id == id),
            None => cameras.first(),
        };
        let Some(info) = info.cloned() else {
            return Err(match id {
                Some(id) if !cameras.is_empty() => MediaError::UnknownDevice { kind: KIND, id: id.to_owned() },
                _ => MediaError::NoDevice {
                    kind: KIND,
                    hint: Some("connect a camera, or check that it is not disabled (no /dev/video* device on Linux)".into()),
                },
            });
        };
        let (opened_tx, opened) = std::sync::mpsc::channel();
        let (tx, frames) = std::sync::mpsc::sync_channel(1);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop_thread = stop.clone();
        let thread_info = info.clone();
        std::thread::Builder::new()
            .name("camera".into())
            .spawn(move || {
                let mut camera = match open_nokhwa(&thread_info) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let f = camera.camera_format();
                let _ = opened_tx.send(Ok(VideoFormat {
                    width: f.width() & !1,
                    height: f.height() & !1,
                    fps: f.frame_rate() as f32,
                }));
                while !stop_thread.load(std::sync::atomic::Ordering::Relaxed) {
                    let raw = camera
                        .frame()
                        .map(|b| Raw {
                            format: b.source_frame_format(),
                            width: b.resolution().width(),
                            height: b.resolution().height(),
                            data: b.buffer().to_vec(),
                        })
                        .map_err(|e| MediaError::DeviceLost {
                            kind: KIND,
                            name: format!("{} ({e})", thread_info.name),
                        });
                    let failed = raw.is_err();
                    // Keep only the newest frame: a full slot means the consumer is behind.
                    match tx.try_send(raw) {
                        Err(std::sync::mpsc::TrySendError::Disconnected(_)) => return,
                        _ if failed => return,
                        _ => {}
                    }
                }
            })
            .map_err(device_err)?;
        let format = opened.recv().map_err(device_err)??;
        Ok(Self {
            frames,
            stop,
            format,
            name: info.name,
            next: 0,
        })
    }
}

impl VideoSource for Camera {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError> {
        let raw = self
            .frames
            .recv_timeout(std::time::Duration::from_secs(2))
            .map_err(|_| MediaError::DeviceLost {
                kind: KIND,
                name: self.name.clone(),
            })??;
        let (w, h) = (raw.width & !1, raw.height & !1);
        let mut frame = match raw.format {
            FrameFormat::YUYV => pixel::yuyv_to_i420(&raw.data, w, h)?,
            FrameFormat::NV12 => pixel::nv12_to_i420(&raw.data, w, h)?,
            FrameFormat::MJPEG => pixel::mjpeg_to_i420(&raw.data)?,
            FrameFormat::RAWRGB => pixel::rgb_to_i420(&raw.data, w, h)?,
            other => {
                return Err(MediaError::Unsupported(format!(
                    "camera pixel format {other}"
                )));
            }
        };
        frame.number = self.next;
        frame.capture_us = capture_us;
        self.next += 1;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nokhwa::utils::Resolution;

    #[test]
    fn best_mode_prefers_720p30_then_cheap_formats() {
        let f = |w, h, fps, fmt| CameraFormat::new(Resolution::new(w, h), fmt, fps);
        let modes = [
            f(1920, 1080, 30, FrameFormat::MJPEG),
            f(1280, 720, 60, FrameFormat::MJPEG),
            f(1280, 720, 30, FrameFormat::MJPEG),
            f(1280, 720, 30, FrameFormat::YUYV),
            f(640, 480, 30, FrameFormat::NV12),
            f(1280, 720, 30, FrameFormat::GRAY),
        ];
        assert_eq!(best_mode(&modes), Some(f(1280, 720, 30, FrameFormat::YUYV)));
        assert_eq!(best_mode(&modes[..1]), None);
    }
}
