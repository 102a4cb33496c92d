#![doc = include_str!("../README.md")]

pub mod audio;
pub mod convert;
pub mod device;
pub mod error;
pub mod file;
pub mod frame;
pub mod h264;
pub mod mkv;
pub mod opus;
pub mod processing;
pub mod quality;
pub mod sink;
pub mod spec;
pub mod synthetic;
pub mod vp8;

pub use error::MediaError;
pub use frame::{AudioFrame, SAMPLE_RATE, VideoFrame};

/// A source of video frames (camera, screen, synthetic, file).
pub trait VideoSource: Send {
    /// Frame size and nominal rate.
    fn format(&self) -> VideoFormat;
    /// The next frame. `capture_us` is the capture time the caller assigns (microseconds on
    /// its clock), so sources never read a clock themselves.
    ///
    /// # Errors
    /// When the device fails or is gone ([`MediaError::DeviceLost`]).
    fn next_frame(&mut self, capture_us: u64) -> Result<VideoFrame, MediaError>;
}

/// A source of 48 kHz mono audio.
pub trait AudioSource: Send {
    /// Fills `out` with the next samples.
    ///
    /// # Errors
    /// When the device fails or is gone.
    fn read(&mut self, out: &mut [f32]) -> Result<(), MediaError>;
}

/// Size and rate of a video stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VideoFormat {
    pub width: u32,
    pub height: u32,
    pub fps: f32,
}

/// One device as a picker shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// Stable id to open it by.
    pub id: String,
    /// Human-readable name.
    pub name: String,
    pub is_default: bool,
}
