//! The media error type: each variant says what is missing or went wrong.

/// Errors from sources, sinks and codecs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    #[error("no {kind} found{}", hint.as_deref().map(|h| format!(": {h}")).unwrap_or_default())]
    NoDevice {
        kind: &'static str,
        hint: Option<String>,
    },
    #[error("{kind} {id:?} does not exist")]
    UnknownDevice { kind: &'static str, id: String },
    #[error("{kind} {name:?} is busy (another program is using it)")]
    DeviceBusy { kind: &'static str, name: String },
    #[error("{kind} {name:?} was disconnected")]
    DeviceLost { kind: &'static str, name: String },
    #[error("{kind} failed: {message}")]
    Device { kind: &'static str, message: String },
    #[error("unsupported format: {0}")]
    Unsupported(String),
    #[error("invalid frame: {0}")]
    InvalidFrame(String),
    #[error("{codec} error: {message}")]
    Codec {
        codec: &'static str,
        message: String,
    },
    #[error("cannot read {path}: {message}")]
    File { path: String, message: String },
    #[error("cannot write the recording: {0}")]
    Write(String),
}

impl MediaError {
    pub(crate) fn codec(codec: &'static str, e: impl std::fmt::Display) -> Self {
        Self::Codec {
            codec,
            message: e.to_string(),
        }
    }
}
