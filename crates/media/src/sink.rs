//! Frame sinks: where decoded or captured video goes (UI previews, the recorder, tests).

use std::sync::{Arc, Mutex, PoisonError};

use crate::convert::Scaler;
use crate::{MediaError, VideoFrame};

/// Something that consumes video frames.
pub trait VideoSink: Send {
    /// Takes one frame. Sinks must not block for long: they run on media threads.
    ///
    /// # Errors
    /// When the frame cannot be used (the caller drops it and goes on).
    fn push(&mut self, frame: &VideoFrame) -> Result<(), MediaError>;
}

/// What a preview holds: the newest frame, scaled, and how many frames it has seen.
#[derive(Debug, Default, Clone)]
pub struct PreviewState {
    pub latest: Option<VideoFrame>,
    pub frames_seen: u64,
}

/// A preview sink: keeps only the newest frame, scaled to fit a tile, for a UI to draw at its
/// own pace (older frames are simply replaced, so a slow reader never builds up latency).
#[derive(Debug)]
pub struct PreviewSink {
    size: (u32, u32),
    scaler: Scaler,
    state: Arc<Mutex<PreviewState>>,
}

impl PreviewSink {
    /// A preview that scales frames to fit `width`x`height` (aspect kept, even sides).
    #[must_use]
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            size: (width.max(2), height.max(2)),
            scaler: Scaler::new(),
            state: Arc::default(),
        }
    }

    /// A handle for the reader side.
    #[must_use]
    pub fn handle(&self) -> Arc<Mutex<PreviewState>> {
        self.state.clone()
    }

    /// Changes the tile size (the UI was resized).
    pub fn resize(&mut self, width: u32, height: u32) {
        self.size = (width.max(2), height.max(2));
    }
}

impl VideoSink for PreviewSink {
    fn push(&mut self, frame: &VideoFrame) -> Result<(), MediaError> {
        let (w, h) = crate::device::screen::fit((frame.width, frame.height), self.size);
        let scaled = self.scaler.scale(frame, w, h)?;
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.latest = Some(scaled);
        state.frames_seen += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::SyntheticCamera;

    #[test]
    fn preview_keeps_the_newest_frame_scaled_to_the_tile() {
        let cam = SyntheticCamera::new(1280, 720, 30.0);
        let mut sink = PreviewSink::new(640, 640);
        let handle = sink.handle();
        for n in 0..3 {
            assert!(sink.push(&cam.render(n, n * 33_000)).is_ok());
        }
        let state = handle.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(state.frames_seen, 3);
        let latest = state.latest.unwrap_or_else(|| VideoFrame::blank(2, 2));
        assert_eq!((latest.width, latest.height, latest.number), (640, 360, 2));
        // Scaling keeps the picture: the newest frame at 640x360 matches the source scaled alike.
        let expected = Scaler::new()
            .scale(&cam.render(2, 66_000), 640, 360)
            .unwrap_or_else(|_| VideoFrame::blank(2, 2));
        assert_eq!(latest.data, expected.data);
        sink.resize(320, 320);
        assert!(sink.push(&cam.render(3, 0)).is_ok());
        assert_eq!(
            handle
                .lock()
                .ok()
                .and_then(|s| s.latest.as_ref().map(|f| f.width)),
            Some(320)
        );
    }
}
