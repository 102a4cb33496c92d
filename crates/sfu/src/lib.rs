//! LiveLoop's selective forwarding unit (issue 22), sans-IO: what the SFU decides, with time as
//! an input. The driver that owns the UDP socket and the WebRTC transports (str0m) and the
//! socket.io service that speaks seed 002's dialect build on it.
//!
//! - [`ortc`]: the router's RTP capabilities, how a producer's own numbering maps onto the
//!   router's, and the parameters a consumer is given (what mediasoup's `ortc` does).
//! - [`forward`]: per consumer, which packets go out and how they are renumbered (SSRC,
//!   payload type, sequence numbers and timestamps kept continuous across layer switches and
//!   pauses), and which simulcast layer its bandwidth and requested size allow.
//! - [`room`]: rooms, members and what each owns (transports, producers, consumers), the
//!   per-member caps, and what a departure removes.

pub mod forward;
pub mod ortc;
pub mod room;
