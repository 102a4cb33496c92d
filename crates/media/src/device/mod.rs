//! Real devices: camera (nokhwa), microphone and speaker (cpal), screen (xcap).
//!
//! Each kind lists its devices ([`crate::DeviceInfo`], with a stable id) and opens one by id
//! (`None`: the default). Failures say what is missing: no device, busy, or lost mid-stream.
//! A lost device is reported as [`DeviceEvent::Lost`] on the handle's event channel and its
//! source then returns [`crate::MediaError::DeviceLost`]; the caller reopens the default.

pub mod audio;
pub mod camera;
pub mod pixel;
pub mod screen;

/// Something that happened to an open device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeviceEvent {
    /// The device was unplugged or its server went away.
    Lost { kind: &'static str, name: String },
    /// The system moved the default-device stream to another device.
    Rerouted { kind: &'static str, name: String },
    /// A recoverable error (the stream goes on).
    Error { kind: &'static str, message: String },
}
