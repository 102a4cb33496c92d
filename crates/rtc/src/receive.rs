//! The receive path of one video track, as a pure pipeline fed packets and time: packets
//! are put back in order (`reorder`), depacketized by the track's codec, assembled into
//! frames at the marker bit, and after a loss every frame is dropped until a keyframe, with
//! a keyframe request at once and again every 500 ms until one comes. The driver (the
//! track's task in `lib.rs`) feeds packets and wakes at [`VideoReceiver::deadline`]; it turns
//! [`Received`] into events and PLIs.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;

use crate::VideoCodec;
use crate::reorder::{Out, Reorder};

/// What the receive pipeline gives its driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Received {
    /// A whole frame that can be decoded.
    Frame {
        codec: VideoCodec,
        data: Bytes,
        rtp_timestamp: u32,
    },
    /// Packets were given up on: frames are dropped until a keyframe.
    Lost(u32),
    /// Ask the sender for a keyframe (PLI) now.
    RequestKeyframe,
}

/// One received video track's pipeline.
#[derive(Debug)]
pub(crate) struct VideoReceiver {
    reorder: Reorder<rtc::rtp::Packet>,
    depacketizer: Depacketize,
    frame: BytesMut,
    assembly: FrameAssembly,
}

impl VideoReceiver {
    /// The pipeline for a track of `codec` (`None`: a codec we do not have; its packets are
    /// dropped).
    pub fn new(codec: Option<VideoCodec>) -> Self {
        Self {
            reorder: Reorder::default(),
            depacketizer: Depacketize::new(codec),
            frame: BytesMut::new(),
            assembly: FrameAssembly::default(),
        }
    }

    /// When [`VideoReceiver::poll`] is due: a hole waits for its retransmission until then.
    pub fn deadline(&self) -> Option<Instant> {
        self.reorder.deadline()
    }

    /// One packet arrived at `now`.
    pub fn push(&mut self, packet: rtc::rtp::Packet, now: Instant) -> Vec<Received> {
        let ready = self
            .reorder
            .push(packet.header.sequence_number, packet, now);
        self.process(ready, now)
    }

    /// Time passed: holes past their deadline are given up.
    pub fn poll(&mut self, now: Instant) -> Vec<Received> {
        let ready = self.reorder.poll(now);
        self.process(ready, now)
    }

    fn process(&mut self, ready: Vec<Out<rtc::rtp::Packet>>, now: Instant) -> Vec<Received> {
        let mut out = Vec::new();
        for item in ready {
            let packet = match item {
                Out::Packet(p) => Some(p),
                Out::Lost(lost) => {
                    // A frame with a hole cannot be decoded, and neither can the frames that
                    // reference it: drop them until a keyframe, and ask for one. What the
                    // depacketizer holds of a fragmented unit is part of that frame.
                    self.frame.clear();
                    self.depacketizer.reset();
                    self.assembly.lost();
                    out.push(Received::Lost(u32::try_from(lost).unwrap_or(u32::MAX)));
                    None
                }
            };
            // Ask for a keyframe after a loss, and again while none has come.
            if self.assembly.needs_keyframe_request(now) {
                out.push(Received::RequestKeyframe);
            }
            let Some(packet) = packet else { continue };
            let Some(codec) = self.depacketizer.codec() else {
                continue;
            };
            let depacketized = self.depacketizer.depacketize(&packet.payload);
            if matches!(depacketized, Err(Unpacked::TooLarge)) {
                self.frame.clear();
                self.assembly.lost();
                continue;
            }
            if let Ok(payload) = depacketized {
                // A frame larger than any real one (a sender that never sets the marker
                // bit): dropped, and decoding waits for a keyframe.
                if self.frame.len() + payload.len() > MAX_FRAME_BYTES {
                    self.frame.clear();
                    self.assembly.lost();
                    continue;
                }
                self.frame.extend_from_slice(&payload);
            }
            if packet.header.marker && !self.frame.is_empty() {
                let data = self.frame.split().freeze();
                if self.assembly.frame_complete(codec.is_keyframe(&data)) {
                    out.push(Received::Frame {
                        codec,
                        data,
                        rtp_timestamp: packet.header.timestamp,
                    });
                }
            }
        }
        out
    }
}

/// Loss state of the video frame assembler: after lost packets, frames are dropped until a
/// keyframe (packets arrive here in order, from [`reorder::Reorder`]).
#[derive(Debug, Default)]
struct FrameAssembly {
    /// A packet was lost: frames are dropped until a keyframe.
    broken: bool,
    /// When a keyframe was last asked for while broken.
    last_request: Option<Instant>,
}

/// How often a keyframe is asked for again while none arrives (the request or the keyframe
/// itself may be lost).
const KEYFRAME_REQUEST_REPEAT: Duration = Duration::from_millis(500);

impl FrameAssembly {
    /// Packets were lost before the next one.
    fn lost(&mut self) {
        self.broken = true;
    }

    /// Whether to ask for a keyframe now: at once after a loss, then every
    /// [`KEYFRAME_REQUEST_REPEAT`] until one arrives.
    fn needs_keyframe_request(&mut self, now: Instant) -> bool {
        if !self.broken {
            self.last_request = None;
            return false;
        }
        if self
            .last_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_REPEAT)
        {
            return false;
        }
        self.last_request = Some(now);
        true
    }

    /// A frame ended: whether it can be passed to the decoder.
    fn frame_complete(&mut self, keyframe: bool) -> bool {
        if keyframe {
            self.broken = false;
            // A loss right after this keyframe asks again at once (found by the rtp_receive
            // fuzz target: it waited out the 500 ms of the request this keyframe answered).
            self.last_request = None;
        }
        !self.broken
    }
}

/// The largest video frame assembled (a 4K keyframe at a high bitrate is well below it).
const MAX_FRAME_BYTES: usize = 4 << 20;

/// The depacketizer of one received video track.
#[derive(Debug)]
enum Depacketize {
    /// With the bytes of the fragmented unit (FU-A) it is collecting: rtc-rtp 0.21 keeps
    /// them until the unit's end bit with no limit, so a sender that never ends one would
    /// grow it without bound (found by a cap test: 64 MiB of fragments, +65 MiB).
    H264 {
        packet: H264Packet,
        fragments: usize,
    },
    Vp8(Vp8Packet),
    /// A codec we do not have: its packets are dropped.
    None,
}

/// Why a payload gave nothing.
#[derive(Debug)]
enum Unpacked {
    /// A fragmented unit over [`MAX_FRAME_BYTES`]: it was thrown away.
    TooLarge,
    /// Malformed, or a codec we do not have.
    Other,
}

impl Depacketize {
    fn new(codec: Option<VideoCodec>) -> Self {
        match codec {
            Some(VideoCodec::H264) => Self::H264 {
                packet: H264Packet::default(),
                fragments: 0,
            },
            Some(VideoCodec::Vp8) => Self::Vp8(Vp8Packet::default()),
            None => Self::None,
        }
    }

    fn codec(&self) -> Option<VideoCodec> {
        match self {
            Self::H264 { .. } => Some(VideoCodec::H264),
            Self::Vp8(_) => Some(VideoCodec::Vp8),
            Self::None => None,
        }
    }

    /// Forgets a unit in progress (after a loss).
    fn reset(&mut self) {
        match self {
            Self::H264 { packet, fragments } => {
                *packet = H264Packet::default();
                *fragments = 0;
            }
            Self::Vp8(p) => *p = Vp8Packet::default(),
            Self::None => {}
        }
    }

    fn depacketize(&mut self, payload: &Bytes) -> Result<Bytes, Unpacked> {
        match self {
            // STAP-A lengths that do not fit the packet.
            Self::H264 { .. } if !stap_a_fits(payload) => Err(Unpacked::Other),
            Self::H264 { packet, fragments } => {
                let fu = match payload.as_ref() {
                    [indicator, header, ..] if indicator & 0x1f == 28 => Some(*header),
                    _ => None,
                };
                if let Some(header) = fu {
                    if header & 0x80 != 0 {
                        *fragments = 0; // a unit starts
                    }
                    *fragments += payload.len();
                    if *fragments > MAX_FRAME_BYTES {
                        *packet = H264Packet::default();
                        *fragments = 0;
                        return Err(Unpacked::TooLarge);
                    }
                    if header & 0x40 != 0 {
                        *fragments = 0; // it ends here
                    }
                }
                packet.depacketize(payload).map_err(|_| Unpacked::Other)
            }
            Self::Vp8(p) => p.depacketize(payload).map_err(|_| Unpacked::Other),
            Self::None => Err(Unpacked::Other),
        }
    }
}

/// False for an H.264 STAP-A payload (NAL type 24) whose length fields do not walk it exactly:
/// rtc-rtp 0.21's depacketizer reads past the end of one that ends in a lone byte, a panic
/// on one packet from the remote (found by the rtp_receive fuzz target). True otherwise.
fn stap_a_fits(payload: &[u8]) -> bool {
    let Some((&header, mut rest)) = payload.split_first() else {
        return true;
    };
    if header & 0x1f != 24 {
        return true;
    }
    while !rest.is_empty() {
        let [hi, lo, tail @ ..] = rest else {
            return false;
        };
        let Some(next) = tail.get(usize::from(u16::from_be_bytes([*hi, *lo]))..) else {
            return false;
        };
        rest = next;
    }
    true
}

/// Whether an Annex-B access unit holds an IDR slice (NAL type 5).
pub(crate) fn has_idr(au: &[u8]) -> bool {
    au.windows(4)
        .any(|w| matches!(w, [0, 0, 1, nal] if nal & 0x1f == 5))
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assembly_drops_frames_after_loss_until_a_keyframe() {
        let mut a = FrameAssembly::default();
        let t = Instant::now();
        assert!(a.frame_complete(false));
        assert!(!a.needs_keyframe_request(t));
        // Packets lost: this frame and the next delta frame are dropped.
        a.lost();
        assert!(a.needs_keyframe_request(t));
        assert!(!a.needs_keyframe_request(t + Duration::from_millis(100)));
        // No keyframe yet: asked again.
        assert!(a.needs_keyframe_request(t + KEYFRAME_REQUEST_REPEAT));
        assert!(!a.frame_complete(false));
        assert!(!a.frame_complete(false));
        assert!(a.frame_complete(true));
        assert!(a.frame_complete(false));
        // Mended, then lost again at once: asked for at once, not 500 ms after the last ask.
        a.lost();
        assert!(a.needs_keyframe_request(t + KEYFRAME_REQUEST_REPEAT));
        assert!(a.frame_complete(true));
        a.lost();
        assert!(a.needs_keyframe_request(t + KEYFRAME_REQUEST_REPEAT + Duration::from_millis(1)));
    }

    #[test]
    fn a_stap_a_ending_in_a_lone_byte_is_refused_not_a_panic() {
        let mut rx = VideoReceiver::new(Some(VideoCodec::H264));
        let packet = |payload: &[u8]| rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                marker: true,
                ..Default::default()
            },
            payload: Bytes::copy_from_slice(payload),
        };
        // One NAL unit of one byte, then a byte where the next length should be.
        assert!(
            rx.push(packet(&[0x18, 0x00, 0x01, 0x65, 0xff]), Instant::now())
                .is_empty()
        );
        assert!(!stap_a_fits(&[0x18, 0x00, 0x05, 0x65]));
        assert!(stap_a_fits(&[0x18, 0x00, 0x01, 0x67, 0x00, 0x01, 0x68]));
        assert!(stap_a_fits(&[0x41, 0x00]));
    }

    #[test]
    fn idr_detection() {
        assert!(has_idr(&[0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x65, 9]));
        assert!(!has_idr(&[0, 0, 0, 1, 0x41, 1, 2, 3]));
        assert!(!has_idr(&[]));
    }

    /// A VP8 packet: descriptor (S bit on a frame's first packet), then payload.
    fn vp8(seq: u16, ts: u32, first: bool, marker: bool, payload: &[u8]) -> rtc::rtp::Packet {
        let mut data = vec![if first { 0x10 } else { 0x00 }];
        data.extend_from_slice(payload);
        rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                sequence_number: seq,
                timestamp: ts,
                marker,
                ..Default::default()
            },
            payload: Bytes::from(data),
        }
    }

    fn frames(out: &[Received]) -> Vec<(u32, usize)> {
        out.iter()
            .filter_map(|r| match r {
                Received::Frame {
                    data,
                    rtp_timestamp,
                    ..
                } => Some((*rtp_timestamp, data.len())),
                _ => None,
            })
            .collect()
    }

    /// An H.264 FU-A fragment of an IDR (NAL type 5): `start`/`end` bits as given.
    fn fu_a(seq: u16, start: bool, end: bool, len: usize) -> rtc::rtp::Packet {
        let mut data = vec![
            0x7c,
            0x05 | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 },
        ];
        data.resize(len, 0xab);
        rtc::rtp::Packet {
            header: rtc::rtp::header::Header {
                sequence_number: seq,
                timestamp: 9000,
                marker: end,
                ..Default::default()
            },
            payload: Bytes::from(data),
        }
    }

    #[test]
    fn a_fragmented_unit_that_never_ends_is_capped() {
        let t0 = Instant::now();
        let mut rx = VideoReceiver::new(Some(VideoCodec::H264));
        // 6 MiB of one fragmented unit that never sets its end bit.
        let mut seq = 0u16;
        rx.push(fu_a(seq, true, false, 1200), t0);
        let mut asked = false;
        for _ in 0..(6 << 20) / 1200 {
            seq = seq.wrapping_add(1);
            let out = rx.push(fu_a(seq, false, false, 1200), t0);
            asked |= out.contains(&Received::RequestKeyframe);
            let held = match &rx.depacketizer {
                Depacketize::H264 { fragments, .. } => *fragments,
                _ => 0,
            };
            assert!(held <= MAX_FRAME_BYTES, "{held} bytes of one unit held");
        }
        assert!(asked, "the dropped unit asks for a keyframe");
        // A whole keyframe afterwards comes through.
        seq = seq.wrapping_add(1);
        rx.push(fu_a(seq, true, false, 1000), t0);
        seq = seq.wrapping_add(1);
        let out = rx.push(fu_a(seq, false, true, 1000), t0);
        assert_eq!(frames(&out).len(), 1, "{out:?}");
    }

    #[test]
    fn frames_come_out_in_order_and_a_loss_waits_for_a_keyframe() {
        let t0 = Instant::now();
        let mut rx = VideoReceiver::new(Some(VideoCodec::Vp8));
        // A keyframe (first byte's low bit 0) in two packets.
        assert!(
            rx.push(vp8(10, 1000, true, false, &[0x10, 1, 2]), t0)
                .is_empty()
        );
        let out = rx.push(vp8(11, 1000, false, true, &[7; 10]), t0);
        assert_eq!(frames(&out), vec![(1000, 13)]);
        // Two delta frames (low bit 1), out of order: both come out, in order.
        assert!(
            rx.push(vp8(13, 7000, true, true, &[0x01, 6, 6]), t0)
                .is_empty()
        );
        let out = rx.push(vp8(12, 4000, true, true, &[0x01, 5, 5]), t0);
        assert_eq!(frames(&out), vec![(4000, 3), (7000, 3)]);
        // Packet 14 never comes: 15 waits, then at the deadline the hole is given up, a
        // keyframe asked for, and delta frames dropped.
        assert!(
            rx.push(vp8(15, 13_000, true, true, &[0x01, 7, 7]), t0)
                .is_empty()
        );
        let deadline = rx.deadline().expect("a hole waits");
        let out = rx.poll(deadline);
        assert!(out.contains(&Received::Lost(1)), "{out:?}");
        assert!(out.contains(&Received::RequestKeyframe), "{out:?}");
        assert!(frames(&out).is_empty(), "the frame after a hole is dropped");
        let out = rx.push(vp8(16, 16_000, true, true, &[0x01, 8, 8]), deadline);
        assert!(out.is_empty(), "{out:?}");
        // Still no keyframe 500 ms later: asked again.
        let later = deadline + KEYFRAME_REQUEST_REPEAT;
        let out = rx.push(vp8(17, 19_000, true, true, &[0x01, 8, 8]), later);
        assert_eq!(out, vec![Received::RequestKeyframe]);
        // The keyframe mends it.
        let out = rx.push(vp8(18, 22_000, true, true, &[0x00, 9, 9]), later);
        assert_eq!(frames(&out), vec![(22_000, 3)]);
    }

    #[test]
    fn a_frame_without_an_end_is_capped_and_unknown_codecs_are_dropped() {
        let t0 = Instant::now();
        let mut rx = VideoReceiver::new(Some(VideoCodec::Vp8));
        let big = vec![0u8; 1200];
        let mut seq = 0u16;
        // 4 MiB of packets with no marker bit: the frame is dropped, not grown.
        for _ in 0..(MAX_FRAME_BYTES / 1200 + 10) {
            let out = rx.push(vp8(seq, 1, seq == 0, false, &big), t0);
            assert!(frames(&out).is_empty());
            seq = seq.wrapping_add(1);
        }
        assert!(rx.frame.len() <= MAX_FRAME_BYTES);
        let mut none = VideoReceiver::new(None);
        assert!(frames(&none.push(vp8(0, 1, true, true, &[0, 1, 2]), t0)).is_empty());
    }

    #[test]
    fn random_packets_never_panic_and_frames_stay_bounded() {
        use rand::{Rng as _, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x0dd_f00d);
        for codec in [Some(VideoCodec::H264), Some(VideoCodec::Vp8), None] {
            let mut rx = VideoReceiver::new(codec);
            let mut now = Instant::now();
            for _ in 0..20_000 {
                let len = rng.random_range(0..64);
                let payload: Vec<u8> = (0..len).map(|_| rng.random()).collect();
                let packet = rtc::rtp::Packet {
                    header: rtc::rtp::header::Header {
                        // Mostly in order, with jumps and repeats.
                        sequence_number: rng.random_range(0..200),
                        timestamp: rng.random(),
                        marker: rng.random_bool(0.3),
                        ..Default::default()
                    },
                    payload: Bytes::from(payload),
                };
                now += Duration::from_millis(rng.random_range(0..40));
                for out in rx.push(packet, now).into_iter().chain(rx.poll(now)) {
                    if let Received::Frame { data, .. } = out {
                        assert!(data.len() <= MAX_FRAME_BYTES);
                    }
                }
            }
        }
    }
}
