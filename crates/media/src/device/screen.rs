//! Screen capture through xcap: whole monitors or single windows, at a target size and rate.

use crate::convert::{Scaler, rgba_to_i420};
use crate::{DeviceInfo, MediaError, VideoFormat, VideoFrame, VideoSource};

const KIND: &str = "screen";

fn err(e: impl std::fmt::Display) -> MediaError {
    MediaError::Device {
        kind: KIND,
        message: e.to_string(),
    }
}

/// What can be shared: monitors (`monitor:<id>`) then windows (`window:<id>`, not minimised).
///
/// # Errors
/// When the display cannot be queried (no display server, for one).
pub fn list() -> Result<Vec<DeviceInfo>, MediaError> {
    let mut out = Vec::new();
    for m in xcap::Monitor::all().map_err(err)? {
        let id = m.id().map_err(err)?;
        let name = m
            .friendly_name()
            .or_else(|_| m.name())
            .unwrap_or_else(|_| format!("Screen {id}"));
        let size = format!("{}x{}", m.width().unwrap_or(0), m.height().unwrap_or(0));
        out.push(DeviceInfo {
            id: format!("monitor:{id}"),
            name: format!("{name} ({size})"),
            is_default: m.is_primary().unwrap_or(false),
        });
    }
    // Listing windows needs a window manager; without one there are simply none.
    for w in xcap::Window::all().unwrap_or_default() {
        if w.is_minimized().unwrap_or(true) {
            continue;
        }
        let (Ok(id), Ok(title)) = (w.id(), w.title()) else {
            continue;
        };
        let app = w.app_name().unwrap_or_default();
        let name = match (title.trim().is_empty(), app.is_empty()) {
            (_, true) => title,
            (true, false) => app,
            (false, false) => format!("{title} — {app}"),
        };
        out.push(DeviceInfo {
            id: format!("window:{id}"),
            name,
            is_default: false,
        });
    }
    Ok(out)
}

enum Target {
    Monitor(xcap::Monitor),
    Window(xcap::Window),
}

/// How screens are shared in calls: full resolution up to this size (text stays legible)...
pub const SHARE_MAX_SIZE: (u32, u32) = (1920, 1080);
/// ...at up to this many frames a second (plenty for slides and code).
pub const SHARE_FPS: f32 = 10.0;

/// A monitor or window being captured.
pub struct ScreenSource {
    target: Target,
    name: String,
    format: VideoFormat,
    max: (u32, u32),
    scaler: Scaler,
    next: u64,
}

impl std::fmt::Debug for ScreenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenSource")
            .field("name", &self.name)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

impl ScreenSource {
    /// Opens `id` from [`list`] (`None`: the primary monitor). Frames are scaled down to fit
    /// `max_size` (keeping the aspect ratio; `None` keeps full resolution); `fps` is the rate the
    /// caller intends to pull at.
    ///
    /// # Errors
    /// [`MediaError::UnknownDevice`] for a bad id, [`MediaError::NoDevice`] without a display.
    pub fn open(
        id: Option<&str>,
        max_size: Option<(u32, u32)>,
        fps: f32,
    ) -> Result<Self, MediaError> {
        let (target, name) = match id.and_then(|i| i.split_once(':')) {
            Some(("window", wid)) => {
                // Without a window manager there are no windows to list, so none can match.
                let w = xcap::Window::all()
                    .unwrap_or_default()
                    .into_iter()
                    .find(|w| w.id().ok().map(|i| i.to_string()).as_deref() == Some(wid))
                    .ok_or_else(|| MediaError::UnknownDevice {
                        kind: "window",
                        id: wid.to_owned(),
                    })?;
                let name = w.title().unwrap_or_default();
                (Target::Window(w), name)
            }
            Some(("monitor", mid)) => {
                let m = xcap::Monitor::all()
                    .map_err(err)?
                    .into_iter()
                    .find(|m| m.id().ok().map(|i| i.to_string()).as_deref() == Some(mid))
                    .ok_or_else(|| MediaError::UnknownDevice {
                        kind: "monitor",
                        id: mid.to_owned(),
                    })?;
                let name = m.name().unwrap_or_default();
                (Target::Monitor(m), name)
            }
            Some(_) => {
                return Err(MediaError::UnknownDevice {
                    kind: KIND,
                    id: id.unwrap_or_default().to_owned(),
                });
            }
            None => {
                let monitors = xcap::Monitor::all().map_err(|e| MediaError::NoDevice {
                    kind: KIND,
                    hint: Some(e.to_string()),
                })?;
                let primary = monitors
                    .iter()
                    .position(|m| m.is_primary().unwrap_or(false))
                    .unwrap_or(0);
                let m = monitors
                    .into_iter()
                    .nth(primary)
                    .ok_or(MediaError::NoDevice {
                        kind: KIND,
                        hint: None,
                    })?;
                let name = m.name().unwrap_or_default();
                (Target::Monitor(m), name)
            }
        };
        let max = max_size.unwrap_or((u32::MAX, u32::MAX));
        let mut source = Self {
            target,
            name,
            format: VideoFormat {
                width: 0,
                height: 0,
                fps,
            },
            max,
            scaler: Scaler::new(),
            next: 0,
        };
        let (w, h) = source.size()?;
        let (w, h) = fit((w, h), max);
        source.format = VideoFormat {
            width: w,
            height: h,
            fps,
        };
        Ok(source)
    }

    /// Opens `id` (`None`: the primary monitor) as a call shares it: [`SHARE_MAX_SIZE`] at
    /// [`SHARE_FPS`].
    ///
    /// # Errors
    /// As [`ScreenSource::open`].
    pub fn open_for_sharing(id: Option<&str>) -> Result<Self, MediaError> {
        Self::open(id, Some(SHARE_MAX_SIZE), SHARE_FPS)
    }

    fn size(&self) -> Result<(u32, u32), MediaError> {
        Ok(match &self.target {
            Target::Monitor(m) => (m.width().map_err(err)?, m.height().map_err(err)?),
            Target::Window(w) => (w.width().map_err(err)?, w.height().map_err(err)?),
        })
    }
}

/// `size` scaled down (never up) to fit `max`, aspect kept, even sides.
#[must_use]
pub fn fit(size: (u32, u32), max: (u32, u32)) -> (u32, u32) {
    let (w, h) = (size.0.max(2), size.1.max(2));
    let scale = (f64::from(max.0) / f64::from(w))
        .min(f64::from(max.1) / f64::from(h))
        .min(1.0);
    let even = |x: f64| ((x as u32) & !1).max(2);
    (even(f64::from(w) * scale), even(f64::from(h) * scale))
}

impl VideoSource for ScreenSource {
    fn format(&self) -> VideoFormat {
        self.format
    }

    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError> {
        let capture = |target: &Target| match target {
            Target::Monitor(m) => m.capture_image(),
            Target::Window(w) => w.capture_image(),
        };
        // xcap's X11 connection was seen to fail now and then under Xvfb ("Connection error")
        // and work on the next try: one retry tells a hiccup from a window that is gone.
        let image = capture(&self.target)
            .or_else(|_| capture(&self.target))
            .map_err(|e| MediaError::DeviceLost {
                kind: KIND,
                name: format!("{} ({e})", self.name),
            })?;
        let (w, h) = image.dimensions();
        let (ew, eh) = (w & !1, h & !1);
        let rgba = if (ew, eh) == (w, h) {
            image.into_raw()
        } else {
            image::imageops::crop_imm(&image, 0, 0, ew, eh)
                .to_image()
                .into_raw()
        };
        let full = rgba_to_i420(&rgba, ew, eh)?;
        // A window may be resized while shared: follow it.
        let (tw, th) = fit((ew, eh), self.max);
        self.format.width = tw;
        self.format.height = th;
        let mut frame = self.scaler.scale(&full, tw, th)?;
        frame.number = self.next;
        frame.capture_us = capture_us;
        self.next += 1;
        Ok(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::fit;

    #[test]
    fn fit_keeps_aspect_and_even_sides() {
        assert_eq!(fit((1920, 1080), (1280, 720)), (1280, 720));
        assert_eq!(fit((1000, 1000), (1280, 720)), (720, 720));
        assert_eq!(fit((641, 361), (u32::MAX, u32::MAX)), (640, 360));
        assert_eq!(fit((0, 0), (10, 10)), (2, 2));
    }
}
