//! Fuzz target `keyframe_gate`: requests and encoded frames at arbitrary times (forwards in
//! any steps, and backwards too) drive a [`KeyframeGate`]. Whatever the times, two keyframes
//! are never less than [`MIN_INTERVAL`] apart, and no request is lost: the gate answers
//! exactly as its rule says (a pending request is served by the first frame at least
//! [`MIN_INTERVAL`] after the last keyframe). Corpus: `src/__fuzz__/keyframe_gate/corpus/`.

use super::*;

use crate::fuzz_support::{self as support, Choices};

const NAME: &str = "keyframe_gate";
const OP_LEN: usize = 3;
/// A script: operations of [`OP_LEN`] bytes, no header.
const SHAPE: support::Shape = support::Shape {
    header: 0,
    op_len: OP_LEN,
};

/// One step: a request (PLI or FIR from any peer), or a frame encoded `ms` after (or, for a
/// clock stepped back, before) the last.
#[derive(Debug, Clone, Copy)]
enum Op {
    Request,
    Frame { ms: i16 },
}

fn decode(bytes: &[u8]) -> Vec<Op> {
    bytes
        .chunks(OP_LEN)
        .map(|op| {
            let mut c = Choices(op);
            match c.byte() % 3 {
                0 => Op::Request,
                _ => Op::Frame { ms: c.u16() as i16 },
            }
        })
        .collect()
}

fn encode(ops: &[Op]) -> Vec<u8> {
    ops.iter()
        .flat_map(|op| match *op {
            Op::Request => [0, 0, 0],
            Op::Frame { ms } => {
                let [lo, hi] = ms.to_le_bytes();
                [1, lo, hi]
            }
        })
        .collect()
}

fn run(bytes: &[u8]) {
    let mut gate = KeyframeGate::new();
    let mut now = Duration::from_secs(10);
    // The rule, written out: a request waits until a frame at least MIN_INTERVAL after the
    // last keyframe.
    let mut pending = false;
    let mut last: Option<Duration> = None;
    for op in decode(bytes) {
        match op {
            Op::Request => {
                gate.request();
                pending = true;
            }
            Op::Frame { ms } => {
                let step = Duration::from_millis(u64::from(ms.unsigned_abs()));
                now = if ms < 0 {
                    now.saturating_sub(step)
                } else {
                    now + step
                };
                let due = gate.due(now);
                let expect = pending && last.is_none_or(|t| now >= t + MIN_INTERVAL);
                assert_eq!(
                    due, expect,
                    "at {now:?}, last keyframe {last:?}, pending {pending}"
                );
                if due {
                    assert!(last.is_none_or(|t| now >= t + MIN_INTERVAL));
                    last = Some(now);
                    pending = false;
                }
            }
        }
    }
}

#[test]
fn keyframe_gate() {
    support::fuzz_script(NAME, 5_000, SHAPE, &seeds(), run);
}

/// A PLI flood at 30 fps for 3 s; one request inside the interval; a clock stepped back.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let flood: Vec<Op> = (0..90)
        .flat_map(|_| [Op::Request, Op::Frame { ms: 33 }])
        .collect();
    let single = [
        Op::Request,
        Op::Frame { ms: 0 },
        Op::Request,
        Op::Frame { ms: 100 },
        Op::Frame { ms: 300 },
        Op::Frame { ms: 100 },
        Op::Frame { ms: 100 },
    ];
    let back = [
        Op::Request,
        Op::Frame { ms: 33 },
        Op::Request,
        Op::Frame { ms: -2000 },
        Op::Frame { ms: 2400 },
        Op::Frame { ms: 100 },
    ];
    vec![
        ("pli-flood", encode(&flood)),
        ("one-request-inside-the-interval", encode(&single)),
        ("clock-stepped-back", encode(&back)),
    ]
}

#[test]
fn keyframe_gate_seeds_are_in_the_corpus() {
    support::seeds_are_in_the_corpus(NAME, &seeds());
}
