//! Media sources named by a short text, as the CLI's `--video`/`--audio` and the app's
//! `LIVELOOP_VIDEO`/`LIVELOOP_AUDIO` take them.
//!
//! Video: `synthetic[:WxH[@FPS]]`, `camera[:ID]`, a `.y4m` file, `stamped:<file.y4m>` (the
//! file with the synthetic camera's frame stamps written over its top-left corner), or `none`.
//! Audio: `synthetic` (speech with timing marks), `tone`, `silence`, `mic[:ID]` (the default
//! microphone, or the one `liveloop-cli devices` lists as ID), a `.wav` file, or `none`.

use std::path::Path;

use crate::file::{WavSource, Y4mSource};
use crate::synthetic::{SyntheticCamera, SyntheticMic, Voice};
use crate::{AudioSource, MediaError, VideoSource};

fn bad(spec: &str, what: &str) -> MediaError {
    MediaError::Unsupported(format!("{what} in video source {spec:?}"))
}

/// The video source `spec` names; `None` for `none`.
///
/// # Errors
/// A malformed spec, a missing file, or a camera that cannot open.
pub fn video_source(spec: &str) -> Result<Option<Box<dyn VideoSource>>, MediaError> {
    if spec == "none" {
        return Ok(None);
    }
    if let Some(rest) = spec.strip_prefix("camera") {
        let id = rest.trim_start_matches(':');
        let camera = crate::device::camera::Camera::open((!id.is_empty()).then_some(id))?;
        return Ok(Some(Box::new(camera)));
    }
    if let Some(rest) = spec.strip_prefix("synthetic") {
        let rest = rest.trim_start_matches(':');
        let (size, fps) = rest.split_once('@').unwrap_or((rest, "30"));
        let (w, h) = if size.is_empty() {
            (640, 360)
        } else {
            let (w, h) = size.split_once('x').ok_or_else(|| bad(spec, "no WxH"))?;
            (
                w.parse::<u32>().map_err(|_| bad(spec, "bad width"))?,
                h.parse::<u32>().map_err(|_| bad(spec, "bad height"))?,
            )
        };
        let fps: f32 = fps.parse().map_err(|_| bad(spec, "bad frame rate"))?;
        if !(1..=7680).contains(&w) || !(1..=4320).contains(&h) || !(1.0..=120.0).contains(&fps) {
            return Err(bad(spec, "size or rate out of range"));
        }
        return Ok(Some(Box::new(SyntheticCamera::new(w, h, fps))));
    }
    if let Some(path) = spec.strip_prefix("stamped:") {
        return Ok(Some(Box::new(Y4mSource::open(Path::new(path))?.stamping())));
    }
    Ok(Some(Box::new(Y4mSource::open(Path::new(spec))?)))
}

/// The audio source `spec` names; `None` for `none`.
///
/// # Errors
/// A missing file, or a microphone that cannot open.
pub fn audio_source(spec: &str) -> Result<Option<Box<dyn AudioSource>>, MediaError> {
    Ok(Some(match spec {
        "none" => return Ok(None),
        "synthetic" => Box::new(SyntheticMic::new(Voice::Speech, true)),
        "synthetic:clock" => Box::new(SyntheticMic::with_clock_marks(Voice::Speech)),
        "tone" => Box::new(SyntheticMic::new(Voice::Tone(440.0), true)),
        "silence" => Box::new(SyntheticMic::new(Voice::Silence, false)),
        "mic" => Box::new(crate::device::audio::Microphone::open(None)?),
        id if id.starts_with("mic:") => Box::new(crate::device::audio::Microphone::open(
            id.strip_prefix("mic:"),
        )?),
        path => Box::new(WavSource::open(Path::new(path))?),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        let v = video_source("synthetic:320x180@15").ok().flatten();
        assert_eq!(
            v.map(|v| (v.format().width, v.format().fps)),
            Some((320, 15.0))
        );
        assert!(video_source("synthetic").is_ok_and(|v| v.is_some()));
        assert!(video_source("none").is_ok_and(|v| v.is_none()));
        for bad in [
            "synthetic:axb",
            "synthetic:320",
            "synthetic:0x0",
            "synthetic:64x64@0",
            "/no/such.y4m",
        ] {
            assert!(video_source(bad).is_err(), "{bad}");
        }
        assert!(audio_source("synthetic").is_ok_and(|a| a.is_some()));
        assert!(audio_source("none").is_ok_and(|a| a.is_none()));
        assert!(audio_source("/no/such.wav").is_err());
    }
}
