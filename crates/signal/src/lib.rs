#![doc = include_str!("../README.md")]

pub mod matchmaking;
pub mod net;
pub mod rooms;
pub mod rtc_config;
pub mod session;
pub mod tls;

/// Errors of the signaling clients.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignalError {
    #[error("invalid message: {0}")]
    Invalid(String),
    #[error("the signaling client has stopped")]
    Stopped,
    #[error("not available in this dialect: {0}")]
    Unsupported(&'static str),
}
