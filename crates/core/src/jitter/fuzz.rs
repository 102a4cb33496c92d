//! Fuzz target `jitter_buffer`: arbitrary pushes (any RTP timestamp, arrival gap and payload
//! size up to a datagram) and pops drive a [`JitterBuffer`]; after every step its documented
//! caps hold ([`MAX_PACKETS`] packets, so at most that many datagrams of bytes;
//! [`MAX_TRANSITS`] arrivals; nothing kept more than [`MAX_AHEAD`] ahead of playout while
//! playing; the target delay within [`MIN_DELAY`]..=[`MAX_DELAY`]), nothing is held behind
//! the playout point, every packet not kept is counted, and what plays comes out once each,
//! in timestamp order. Corpus: `src/__fuzz__/jitter_buffer/corpus/`.

use std::collections::HashMap;
use std::time::Duration;

use super::*;

use crate::fuzz_support::{self as support, Choices};

const NAME: &str = "jitter_buffer";

/// The largest payload a UDP datagram carries.
const MAX_PAYLOAD: usize = 1500;

/// One step of the script a fuzz input decodes to.
#[derive(Debug, Clone, Copy)]
enum Op {
    /// The sender's next frame, `frames` frames after its last, `gap_ms` after the last event.
    Next { frames: u8, gap_ms: u8, len: u8 },
    /// Any timestamp at all.
    Any { ts: u32, gap_ms: u8, len: u8 },
    /// `delta` frames (either way) from the sender's last.
    Near { delta: i8, gap_ms: u8, len: u8 },
    /// The playout clock ticks `gap_ms` after the last event.
    Pop { gap_ms: u8 },
}

/// (clock rate, frame length) of the stream: Opus at 20 and 10 ms, wideband at 20 ms.
const STREAMS: [(u32, u64); 3] = [(48_000, 20), (48_000, 10), (16_000, 20)];

/// A script: one byte choosing the stream, then operations of [`OP_LEN`] bytes.
const SHAPE: support::Shape = support::Shape {
    header: 1,
    op_len: OP_LEN,
};
const OP_LEN: usize = 7;

fn decode(bytes: &[u8]) -> (usize, Vec<Op>) {
    let (header, ops) = bytes.split_at(bytes.len().min(1));
    let stream = usize::from(header.first().copied().unwrap_or(0)) % STREAMS.len();
    let ops = ops
        .chunks(OP_LEN)
        .map(|op| {
            let mut c = Choices(op);
            match c.byte() % 6 {
                0 | 1 => Op::Next {
                    frames: c.byte() % 4,
                    gap_ms: c.byte(),
                    len: c.byte(),
                },
                2 => Op::Any {
                    ts: c.u32(),
                    gap_ms: c.byte(),
                    len: c.byte(),
                },
                3 => Op::Near {
                    delta: c.byte() as i8,
                    gap_ms: c.byte(),
                    len: c.byte(),
                },
                _ => Op::Pop { gap_ms: c.byte() },
            }
        })
        .collect();
    (stream, ops)
}

fn encode(stream: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![stream];
    for op in ops {
        let mut bytes = match *op {
            Op::Next {
                frames,
                gap_ms,
                len,
            } => vec![0, frames, gap_ms, len],
            Op::Any { ts, gap_ms, len } => {
                let mut b = vec![2];
                b.extend(ts.to_le_bytes());
                b.extend([gap_ms, len]);
                b
            }
            Op::Near { delta, gap_ms, len } => vec![3, delta as u8, gap_ms, len],
            Op::Pop { gap_ms } => vec![4, gap_ms],
        };
        bytes.resize(OP_LEN, 0);
        out.extend(bytes);
    }
    out
}

fn payload_len(len: u8) -> usize {
    usize::from(len) * MAX_PAYLOAD / 255
}

/// Runs one script, checking the buffer after every step.
fn run(bytes: &[u8]) {
    let (stream, ops) = decode(bytes);
    let (clock_rate, frame_ms) = STREAMS[stream];
    let frame = Duration::from_millis(frame_ms);
    let frame_ticks = u32::try_from(u64::from(clock_rate) * frame_ms / 1000).unwrap();
    let mut jb: JitterBuffer<(u64, Vec<u8>)> = JitterBuffer::new(clock_rate, frame);
    let mut now = Duration::ZERO;
    let mut last_ts = 0x1234_5678u32;
    let mut next_id = 0u64;
    // Push id → extended timestamp it was stored under.
    let mut stored: HashMap<u64, u64> = HashMap::new();
    let mut last_played: Option<u64> = None;
    for op in ops {
        let push = match op {
            Op::Next {
                frames,
                gap_ms,
                len,
            } => {
                let ts = last_ts.wrapping_add(u32::from(frames) * frame_ticks);
                Some((ts, gap_ms, len))
            }
            Op::Any { ts, gap_ms, len } => Some((ts, gap_ms, len)),
            Op::Near { delta, gap_ms, len } => {
                let ts = last_ts.wrapping_add_signed(i32::from(delta) * frame_ticks as i32);
                Some((ts, gap_ms, len))
            }
            Op::Pop { gap_ms } => {
                now += Duration::from_millis(u64::from(gap_ms));
                let held_before = jb.packets.len();
                match jb.pop(now) {
                    Playout::Packet((id, data)) => {
                        let ext = stored.remove(&id).expect("a packet plays once");
                        assert!(data.len() <= MAX_PAYLOAD);
                        assert!(last_played.is_none_or(|l| ext > l), "out of order");
                        last_played = Some(ext);
                        assert!(jb.packets.len() < held_before);
                    }
                    Playout::Lost { next } => {
                        // The FEC of the next packet is lent, not played: it stays.
                        if let Some((id, _)) = next {
                            assert!(stored.contains_key(&id));
                        }
                    }
                    Playout::Conceal | Playout::Silence => {}
                }
                None
            }
        };
        if let Some((ts, gap_ms, len)) = push {
            now += Duration::from_millis(u64::from(gap_ms));
            last_ts = ts;
            let playing = !jb.buffering && jb.next.is_some();
            let next_before = jb.next;
            let dropped_before = jb.stats().overflow_dropped + jb.stats().late_dropped;
            let id = next_id;
            next_id += 1;
            jb.push(ts, now, (id, vec![0xa5; payload_len(len)]));
            // Where it went, if it was kept.
            if let Some((ext, _)) = jb.packets.iter().rev().find(|(_, (_, (i, _)))| *i == id) {
                stored.insert(id, *ext);
                if playing && let Some(next) = next_before {
                    assert!(
                        *ext <= next + u64::from(clock_rate) * MAX_AHEAD.as_secs(),
                        "kept {ext} more than {MAX_AHEAD:?} ahead of {next}"
                    );
                    assert!(*ext >= next, "kept a late packet");
                }
            } else {
                // Not kept: counted.
                assert!(jb.stats().overflow_dropped + jb.stats().late_dropped > dropped_before);
            }
        }
        // The count cap drops the packet furthest ahead, a repeated timestamp replaces the
        // packet held under it, catching up skips one, and those behind playout go.
        if stored.len() > jb.packets.len() {
            stored.retain(|id, ext| jb.packets.get(ext).is_some_and(|(_, (i, _))| i == id));
        }
        assert!(
            jb.packets.len() <= MAX_PACKETS,
            "{} packets",
            jb.packets.len()
        );
        assert!(
            jb.transits.len() <= MAX_TRANSITS,
            "{} arrivals",
            jb.transits.len()
        );
        assert!((MIN_DELAY..=MAX_DELAY).contains(&jb.target_delay()));
        // Nothing held is older than what plays next.
        if let (Some(next), Some((first, _))) = (jb.next, jb.packets.first_key_value()) {
            assert!(*first >= next, "{first} held behind {next}");
        }
        assert_eq!(stored.len(), jb.packets.len());
    }
}

#[test]
fn jitter_buffer() {
    support::fuzz_script(NAME, support::ITERATIONS, SHAPE, &seeds(), run);
}

/// Real streams: steady, jittery (every third packet 60 ms late), one loss, a pause with
/// the timestamps running on, a timestamp wrap, and a sender flooding far-ahead timestamps.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let steady: Vec<Op> = (0..60)
        .flat_map(|_| {
            [
                Op::Next {
                    frames: 1,
                    gap_ms: 20,
                    len: 40,
                },
                Op::Pop { gap_ms: 0 },
            ]
        })
        .collect();
    let mut jittery = Vec::new();
    for i in 0..60u8 {
        let late = if i % 3 == 0 { 60 } else { 0 };
        jittery.push(Op::Near {
            delta: 1,
            gap_ms: late,
            len: 60,
        });
        jittery.push(Op::Pop {
            gap_ms: 20 - late.min(20),
        });
    }
    let mut lossy = steady.clone();
    lossy[20] = Op::Next {
        frames: 2,
        gap_ms: 20,
        len: 40,
    };
    let mut pause: Vec<Op> = steady[..40].to_vec();
    pause.extend((0..60).map(|_| Op::Pop { gap_ms: 20 }));
    pause.extend([Op::Next {
        frames: 0,
        gap_ms: 0,
        len: 0,
    }]);
    pause.extend((0..30).flat_map(|_| {
        [
            Op::Next {
                frames: 1,
                gap_ms: 20,
                len: 30,
            },
            Op::Pop { gap_ms: 1 },
        ]
    }));
    let mut wrap = vec![Op::Any {
        ts: u32::MAX - 3 * 960,
        gap_ms: 0,
        len: 20,
    }];
    wrap.extend(steady[..30].iter().copied());
    let mut flood = Vec::new();
    for i in 0..40u32 {
        flood.push(Op::Next {
            frames: 1,
            gap_ms: 20,
            len: 40,
        });
        flood.push(Op::Pop { gap_ms: 2 });
        for k in 0..8u32 {
            let ts = 0x1234_5678u32.wrapping_add((i + 200 + k * 1000) * 960);
            flood.push(Op::Any {
                ts,
                gap_ms: 0,
                len: 255,
            });
        }
    }
    // A sender of 10 ms frames into a 20 ms buffer: every other packet is between two
    // playout points (this target found that they were held for good, up to the count cap).
    let off_grid: Vec<Op> = (0..700u32)
        .flat_map(|i| {
            let push = Op::Any {
                ts: 0x1234_5678u32.wrapping_add(i * 480),
                gap_ms: 10,
                len: 30,
            };
            [push, Op::Pop { gap_ms: 0 }]
                .into_iter()
                .take(1 + (i % 2) as usize)
        })
        .collect();
    vec![
        ("off-grid-10ms-sender", encode(0, &off_grid)),
        ("steady", encode(0, &steady)),
        ("jittery", encode(0, &jittery)),
        ("lossy", encode(0, &lossy)),
        ("pause", encode(0, &pause)),
        ("wrap", encode(0, &wrap)),
        ("flood", encode(0, &flood)),
        ("steady-10ms", encode(1, &steady)),
    ]
}

#[test]
fn jitter_buffer_seeds_are_in_the_corpus() {
    support::seeds_are_in_the_corpus(NAME, &seeds());
}
