//! Lets PLI and FIR from the remote reach the application, so a keyframe request reaches our
//! encoder, and sender reports, so the receiver can put audio and video on one clock (lip
//! sync). Inbound RTCP otherwise ends inside the interceptor chain. The congestion
//! controller's target (`Attribute::TargetBitrateChanged`, the pacing rate) is let through on
//! an emptied packet, so that webrtc-rs's stats read it; the estimate itself reaches the
//! application through [`SendEstimate`], which the estimator writes (`bwe.rs`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;

/// The latest send-side estimate of one connection, in bits per second (`0`: none yet).
#[derive(Debug, Clone, Default)]
pub(crate) struct SendEstimate(Arc<AtomicU32>);

impl SendEstimate {
    pub(crate) fn get(&self) -> Option<u32> {
        Some(self.0.load(Ordering::Relaxed)).filter(|bps| *bps > 0)
    }

    pub(crate) fn set(&self, bits_per_second: f64) {
        // An estimate is clamped by the estimator (100 kbit/s to its maximum): the cast keeps it.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bps = bits_per_second.clamp(1.0, f64::from(u32::MAX)) as u32;
        self.0.store(bps, Ordering::Relaxed);
    }
}

/// The last interceptor of the chain: inbound RTCP is reduced to its keyframe requests and
/// sender reports, which are marked for delivery; everything else passes unchanged.
#[derive(Default)]
pub(crate) struct KeyframeRequests {
    inbound: VecDeque<TaggedPacket>,
    outbound: VecDeque<TaggedPacket>,
}

impl std::fmt::Debug for KeyframeRequests {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyframeRequests")
            .field("inbound", &self.inbound.len())
            .field("outbound", &self.outbound.len())
            .finish()
    }
}

fn wanted_by_the_application(p: &dyn rtc::rtcp::Packet) -> bool {
    let any = p.as_any();
    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() || any.is::<SenderReport>()
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequests {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        let estimate = msg
            .message
            .get(&Attribute::TargetBitrateChanged {
                bits_per_second: 0.0,
            })
            .and_then(|a| match a {
                Attribute::TargetBitrateChanged { bits_per_second } => Some(*bits_per_second),
                _ => None,
            });
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let wanted: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter(|p| wanted_by_the_application(p.as_ref()))
                .cloned()
                .collect();
            if wanted.is_empty() {
                // Reports and feedback the earlier interceptors already handled; one that
                // carries the controller's target goes on, emptied, so webrtc-rs's stats read
                // it (`outbound-rtp.targetBitrate`: the pacing rate).
                if estimate.is_some() {
                    msg.message.packet = Packet::Rtcp(Vec::new());
                    self.inbound.push_back(msg);
                }
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(wanted);
            msg.message.add(Attribute::DeliverToApplication);
        }
        self.inbound.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.inbound.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.outbound.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.outbound.pop_front()
    }
}

impl Interceptor for KeyframeRequests {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}
