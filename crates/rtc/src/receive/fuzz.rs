//! Fuzz target `rtp_receive`: arbitrary sequences of RTP packets, as bytes off the wire, go
//! through the RTP parser (`rtc::rtp::Packet::unmarshal`) into a track's [`VideoReceiver`]
//! (reorder, depacketizer, frame assembly) with arbitrary gaps between them, the driver
//! polling at the deadline. After every packet and poll the buffered state stays within its
//! caps ([`MAX_FRAME_BYTES`] of frame being assembled, the reorder buffer's capacity), no
//! hole is waited for past its deadline, every frame is at most [`MAX_FRAME_BYTES`], after a
//! loss only a keyframe is passed on, a loss asks for a keyframe at once and the requests
//! repeat no faster than every 500 ms, and a track of no codec of ours passes nothing.
//!
//! A script is one byte choosing the codec, then records `[gap ms][length: u16 LE][packet]`.
//! Each input runs as such a script, as a real sequence (the seeds) changed by it (packets
//! dropped, repeated, reordered, corrupted, renumbered), and as a long sequence drawn from a
//! generator it seeds. Corpus: `src/__fuzz__/rtp_receive/corpus/`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::shared::marshal::{Marshal, Unmarshal};

use super::*;

use crate::fuzz_support as support;
use crate::reorder::Reorder;
use support::Choices;

const NAME: &str = "rtp_receive";
const CODECS: [Option<VideoCodec>; 3] = [Some(VideoCodec::H264), Some(VideoCodec::Vp8), None];

/// One packet of a script: `gap_ms` after the last, the bytes off the wire.
#[derive(Debug, Clone)]
struct Record {
    gap_ms: u8,
    bytes: Vec<u8>,
}

fn decode(bytes: &[u8]) -> (u8, Vec<Record>) {
    let (header, mut rest) = bytes.split_at(bytes.len().min(1));
    let codec = header.first().copied().unwrap_or(0);
    let mut records = Vec::new();
    while let [gap_ms, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (packet, next) = tail.split_at(len);
        records.push(Record {
            gap_ms: *gap_ms,
            bytes: packet.to_vec(),
        });
        rest = next;
    }
    (codec, records)
}

fn encode(codec: u8, records: &[Record]) -> Vec<u8> {
    let mut out = vec![codec];
    for r in records {
        out.push(r.gap_ms);
        out.extend(u16::try_from(r.bytes.len()).unwrap().to_le_bytes());
        out.extend(&r.bytes);
    }
    out
}

/// A real sequence changed where the input says.
fn mutate(seeds: &[Vec<u8>], bytes: &[u8]) -> Vec<u8> {
    let mut c = Choices(bytes);
    let (codec, mut records) = decode(&seeds[c.below(seeds.len())]);
    while !c.0.is_empty() && !records.is_empty() {
        let (op, at, arg) = (c.byte(), c.below(records.len()), c.u16());
        let n = records.len();
        match op % 9 {
            0 => drop(records.remove(at)),
            // A repeat (a retransmission arriving after all).
            1 => {
                let r = records[at].clone();
                records.insert((at + usize::from(arg % 4)).min(n), r);
            }
            2 => records.swap(at, (at + 1 + usize::from(arg % 8)).min(n - 1)),
            3 => {
                let r = &mut records[at].bytes;
                if !r.is_empty() {
                    let i = usize::from(arg) % r.len();
                    r[i] ^= (arg >> 8) as u8 | 1;
                }
            }
            4 => records[at].bytes.truncate(usize::from(arg) % 64),
            // A jump in the sequence number.
            5 => {
                if let Some(seq) = records[at].bytes.get_mut(2..4) {
                    seq.copy_from_slice(&arg.to_be_bytes());
                }
            }
            6 => {
                if let Some(b) = records[at].bytes.get_mut(1) {
                    *b ^= 0x80;
                }
            }
            7 => records[at].gap_ms = arg as u8,
            _ => {
                let len = usize::from(arg % 64).min(c.0.len());
                let (new, rest) = c.0.split_at(len);
                records.insert(
                    at,
                    Record {
                        gap_ms: 0,
                        bytes: new.to_vec(),
                    },
                );
                c.0 = rest;
            }
        }
    }
    encode(codec, &records)
}

/// A long sequence from a generator the input seeds: mostly in order, with jumps, repeats,
/// reordering and long gaps; payloads that start like the codec's.
fn generate(bytes: &[u8]) -> Vec<u8> {
    let mut x = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let codec = (next() % 3) as u8;
    let mut seq = next() as u16;
    let mut ts = next() as u32;
    let packets = 20 + next() % 300;
    let mut records = Vec::new();
    for _ in 0..packets {
        let r = next();
        seq = match r % 16 {
            0 => seq.wrapping_add((r >> 8) as u16),
            1 => seq.wrapping_sub((r >> 8) as u16 % 8),
            2 => seq,
            _ => seq.wrapping_add(1),
        };
        let marker = next() % 3 == 0;
        if marker {
            ts = ts.wrapping_add(3000);
        }
        let len = (next() % 1300) as usize;
        let mut payload: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if let Some(first) = payload.first_mut() {
            *first = match codec {
                // NAL types: non-IDR, IDR, SPS, PPS, STAP-A, FU-A.
                0 => [0x41, 0x65, 0x67, 0x68, 0x78, 0x7c][(r >> 20) as usize % 6],
                _ => *first & 0x9f,
            };
        }
        let gap_ms = match next() % 20 {
            0 => 255,
            1 => 120,
            g => (g % 8) as u8,
        };
        records.push(Record {
            gap_ms,
            bytes: rtp(seq, ts, marker, payload),
        });
    }
    encode(codec, &records)
}

/// An RTP packet as a sender writes it (payload type 96, one SSRC).
fn rtp(seq: u16, ts: u32, marker: bool, payload: Vec<u8>) -> Vec<u8> {
    let packet = rtc::rtp::Packet {
        header: rtc::rtp::header::Header {
            version: 2,
            marker,
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ssrc: 0x5eed_f00d,
            ..Default::default()
        },
        payload: Bytes::from(payload),
    };
    packet.marshal().unwrap().to_vec()
}

/// What the checks remember between steps.
#[derive(Default)]
struct Seen {
    /// Packets were lost, and no keyframe has come since.
    broken: bool,
    last_request: Option<Instant>,
}

fn check(
    rx: &VideoReceiver,
    codec: Option<VideoCodec>,
    out: &[Received],
    now: Instant,
    seen: &mut Seen,
) {
    assert!(
        rx.frame.len() <= MAX_FRAME_BYTES,
        "{} bytes assembling",
        rx.frame.len()
    );
    assert!(
        rx.reorder.held() <= Reorder::<rtc::rtp::Packet>::CAPACITY,
        "{} packets held",
        rx.reorder.held()
    );
    assert!(
        rx.deadline().is_none_or(|d| d > now),
        "a hole waited past its deadline"
    );
    if out.iter().any(|r| matches!(r, Received::Lost(_))) {
        let asked = out.contains(&Received::RequestKeyframe);
        let recently = seen
            .last_request
            .is_some_and(|t| now.duration_since(t) < KEYFRAME_REQUEST_REPEAT);
        assert!(
            asked || recently,
            "a loss without a keyframe request: {out:?}"
        );
    }
    for r in out {
        match r {
            Received::Lost(n) => {
                assert!(*n >= 1);
                seen.broken = true;
            }
            Received::RequestKeyframe => {
                if let Some(t) = seen.last_request {
                    assert!(
                        now.duration_since(t) >= KEYFRAME_REQUEST_REPEAT,
                        "keyframe asked for again after {:?}",
                        now.duration_since(t)
                    );
                }
                seen.last_request = Some(now);
            }
            Received::Frame {
                codec: frame_codec,
                data,
                ..
            } => {
                assert_eq!(Some(*frame_codec), codec);
                assert!(!data.is_empty() && data.len() <= MAX_FRAME_BYTES);
                let keyframe = frame_codec.is_keyframe(data);
                assert!(
                    keyframe || !seen.broken,
                    "a delta frame passed on after a loss"
                );
                if keyframe {
                    seen.broken = false;
                    seen.last_request = None;
                }
            }
        }
    }
}

fn run(bytes: &[u8]) {
    let (codec, records) = decode(bytes);
    let codec = CODECS[usize::from(codec) % CODECS.len()];
    let mut rx = VideoReceiver::new(codec);
    let mut now = Instant::now();
    let mut seen = Seen::default();
    for record in records {
        now += Duration::from_millis(u64::from(record.gap_ms));
        // The driver wakes at the deadline, before the next packet.
        if rx.deadline().is_some_and(|d| d <= now) {
            let out = rx.poll(now);
            check(&rx, codec, &out, now, &mut seen);
        }
        let Ok(packet) = rtc::rtp::Packet::unmarshal(&mut record.bytes.as_slice()) else {
            continue;
        };
        let out = rx.push(packet, now);
        check(&rx, codec, &out, now, &mut seen);
    }
}

#[test]
fn rtp_receive() {
    let seeds: Vec<Vec<u8>> = seeds().into_iter().map(|(_, s)| s).collect();
    support::fuzz(NAME, support::ITERATIONS, move |bytes| {
        run(bytes);
        run(&mutate(&seeds, bytes));
        run(&generate(bytes));
    });
}

/// A frame packetized as a sender does, one record per packet, the marker on the last.
fn packetize(
    payloader: &mut dyn Payloader,
    frame: &[u8],
    seq: &mut u16,
    ts: u32,
    gap_ms: u8,
) -> Vec<Record> {
    let payloads = payloader
        .payload(1200, &Bytes::copy_from_slice(frame))
        .unwrap();
    let last = payloads.len().saturating_sub(1);
    payloads
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            *seq = seq.wrapping_add(1);
            Record {
                gap_ms: if i == 0 { gap_ms } else { 0 },
                bytes: rtp(*seq, ts, i == last, p.to_vec()),
            }
        })
        .collect()
}

/// Bytes that look like coded picture data (a fixed pattern: seeds must not change).
fn picture(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(salt) | 0x01)
        .collect()
}

/// Real packet sequences: VP8 and H.264 streams of a keyframe (several packets; SPS and PPS
/// aggregated in STAP-A, the IDR in FU-A fragments) and delta frames, clean, with a packet
/// late and one lost for good, and across the sequence number's wrap; and a track of a codec
/// we do not have.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let vp8_stream = |start: u16, lose: Option<usize>, late: Option<usize>| {
        let mut p = Vp8Payloader::default();
        let mut seq = start;
        // A VP8 keyframe: frame tag bit 0 clear, the start code 9d 01 2a, 320x240.
        let mut key = vec![0x50, 0x2d, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        key.extend(picture(3_000, 7));
        let mut records = packetize(&mut p, &key, &mut seq, 90_000, 0);
        for f in 1..20u32 {
            let mut delta = vec![0x31, 0x02, 0x00];
            delta.extend(picture(700, f as u8));
            records.extend(packetize(&mut p, &delta, &mut seq, 90_000 + f * 3000, 33));
        }
        if let Some(i) = late {
            let r = records.remove(i);
            records.insert(i + 3, r);
        }
        if let Some(i) = lose {
            records.remove(i);
            records[i].gap_ms = 255;
        }
        records
    };
    let h264_stream = |lose: Option<usize>| {
        let mut p = H264Payloader::default();
        let mut seq = 1000u16;
        let start = [0u8, 0, 0, 1];
        // SPS and PPS of constrained baseline 3.1 (42e01f), then an IDR slice.
        let mut key = Vec::new();
        key.extend(start);
        key.extend([
            0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0x40, 0x00, 0x00, 0x03, 0x00,
            0x40, 0x00, 0x00, 0x0f, 0x23, 0xc6, 0x0c, 0x92,
        ]);
        key.extend(start);
        key.extend([0x68, 0xce, 0x3c, 0x80]);
        key.extend(start);
        key.push(0x65);
        key.extend(picture(5_000, 3));
        let mut records = packetize(&mut p, &key, &mut seq, 3_000, 0);
        for f in 1..20u32 {
            let mut delta = start.to_vec();
            delta.push(0x41);
            delta.extend(picture(900, f as u8));
            records.extend(packetize(&mut p, &delta, &mut seq, 3_000 + f * 3000, 33));
        }
        if let Some(i) = lose {
            records.remove(i);
            records[i].gap_ms = 255;
        }
        records
    };
    let none: Vec<Record> = vp8_stream(7, None, None).into_iter().take(6).collect();
    // A loss, the keyframe that mends it, and at once another loss: asked for at once (this
    // target found that the second ask waited for the first's 500 ms).
    let relapse = {
        let mut p = Vp8Payloader::default();
        let mut seq = 500u16;
        let mut key = vec![0x50, 0x2d, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00];
        key.extend(picture(3_000, 9));
        let mut delta = vec![0x31, 0x02, 0x00];
        delta.extend(picture(700, 1));
        let mut records = packetize(&mut p, &key, &mut seq, 0, 0);
        for (f, frame, lose) in [(1, &delta, true), (2, &delta, false), (3, &key, false)] {
            let mut packets = packetize(&mut p, frame, &mut seq, f * 3000, 33);
            if lose {
                packets.remove(0);
            }
            records.extend(packets);
        }
        // Give the hole up (past its 250 ms), after the keyframe: then lose again.
        let at = records.len();
        records.extend(packetize(&mut p, &delta, &mut seq, 12_000, 33));
        records.extend(packetize(&mut p, &delta, &mut seq, 15_000, 33));
        records.extend(packetize(&mut p, &delta, &mut seq, 18_000, 255));
        records.remove(at);
        records[at].gap_ms = 255;
        records
    };
    vec![
        ("vp8-clean", encode(1, &vp8_stream(100, None, None))),
        (
            "vp8-late-and-lost",
            encode(1, &vp8_stream(100, Some(12), Some(5))),
        ),
        (
            "vp8-sequence-wrap",
            encode(1, &vp8_stream(65_530, None, Some(6))),
        ),
        ("h264-clean", encode(0, &h264_stream(None))),
        ("h264-lost-fragment", encode(0, &h264_stream(Some(3)))),
        ("unknown-codec", encode(2, &none)),
        ("vp8-loss-right-after-a-keyframe", encode(1, &relapse)),
        // A STAP-A ending in a lone byte: rtc-rtp's depacketizer panicked (found here).
        (
            "h264-stap-a-ending-in-a-lone-byte",
            encode(
                0,
                &[Record {
                    gap_ms: 0,
                    bytes: rtp(1, 0, true, vec![0x18, 0x00, 0x01, 0x65, 0xff]),
                }],
            ),
        ),
    ]
}

#[test]
fn rtp_receive_seeds_are_in_the_corpus() {
    support::seeds_are_in_the_corpus(NAME, &seeds());
}

/// The seeds are what they say: the clean streams give every frame, the lossy ones a loss
/// and a keyframe request.
#[test]
fn rtp_receive_seeds_decode_as_described() {
    for (label, bytes) in seeds() {
        let (codec, records) = decode(&bytes);
        let mut rx = VideoReceiver::new(CODECS[usize::from(codec)]);
        let mut now = Instant::now();
        let mut frames = 0;
        let mut lost = false;
        for r in records {
            now += Duration::from_millis(u64::from(r.gap_ms));
            let packet = rtc::rtp::Packet::unmarshal(&mut r.bytes.as_slice()).unwrap();
            let mut out = rx.poll(now);
            out.extend(rx.push(packet, now));
            frames += out
                .iter()
                .filter(|o| matches!(o, Received::Frame { .. }))
                .count();
            lost |= out.contains(&Received::RequestKeyframe);
        }
        match label {
            "vp8-clean" | "h264-clean" | "vp8-sequence-wrap" => {
                assert_eq!((frames, lost), (20, false), "{label}");
            }
            "unknown-codec" | "h264-stap-a-ending-in-a-lone-byte" => assert_eq!(frames, 0),
            _ => assert!(lost && frames >= 1, "{label}: {frames} frames, lost {lost}"),
        }
    }
}
