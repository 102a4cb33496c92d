#![doc = include_str!("../README.md")]

pub mod avsync;
pub mod backoff;
pub mod bwe;
pub mod conn_limit;
#[cfg(test)]
mod fuzz_support;
pub mod jitter;
pub mod keyframe;
pub mod layers;
pub mod matchmaker;
pub mod membership;
pub mod muted_speech;
pub mod netwatch;
pub mod rate;
pub mod rooms;
pub mod send_rate;
pub mod speaker;
