//! What the crate's fuzz targets share (docs/fuzzing.md): the bolero runner, the fuzzer's bytes
//! read as choices, and the check that each target's seed inputs are in its corpus. The
//! targets are test modules beside what they drive (`jitter/fuzz.rs`, `rooms/fuzz.rs`,
//! `keyframe/fuzz.rs`); their corpora live in `src/__fuzz__/<target>/corpus/`.

use std::path::PathBuf;

/// Random inputs per target under `cargo test`, after the corpus (`BOLERO_RANDOM_ITERATIONS`
/// overrides it, for a longer campaign).
pub const ITERATIONS: usize = 2_000;

/// The corpus of target `name`, which bolero replays before the random inputs.
pub fn corpus_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/__fuzz__")
        .join(name)
        .join("corpus")
}

/// Where the last failing input of a target is written (the bytes to add to its corpus).
pub fn failure_path(name: &str) -> PathBuf {
    std::env::temp_dir().join("liveloop-fuzz").join(name)
}

/// Writes the input to [`failure_path`] if the check panics with it.
struct KeepOnPanic<'a>(&'a str, &'a [u8]);

impl Drop for KeepOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let path = failure_path(self.0);
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = std::fs::write(&path, self.1);
            eprintln!("failing input written to {}", path.display());
        }
    }
}

/// Runs `check` on every file of the corpus of `name`, then on `iterations` random inputs.
pub fn fuzz(
    name: &'static str,
    iterations: usize,
    check: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) {
    bolero::check!(name = name)
        .with_iterations(iterations)
        .for_each(|bytes: &[u8]| {
            let _keep = KeepOnPanic(name, bytes);
            check(bytes);
        });
}

/// The shape of a target's scripts: a `header` of that many bytes, then operations of
/// `op_len` bytes each (a fixed length, so that scripts can be cut and joined anywhere
/// between two operations).
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub header: usize,
    pub op_len: usize,
}

/// Runs `run` on scripts: every corpus file and random input as it is, then (so that random
/// bytes, which bolero makes at most 64 long, reach deep states) a real script from `seeds`
/// with the input's operations spliced in where the input says, and a long script drawn from
/// a generator the input seeds. All three are functions of the input alone: a failure
/// reproduces from its input, or from the `BOLERO_RANDOM_SEED` bolero prints.
pub fn fuzz_script(
    name: &'static str,
    iterations: usize,
    shape: Shape,
    seeds: &[(&str, Vec<u8>)],
    run: impl Fn(&[u8]) + std::panic::RefUnwindSafe,
) {
    let seeds: Vec<Vec<u8>> = seeds.iter().map(|(_, s)| s.clone()).collect();
    fuzz(name, iterations, move |bytes| {
        run(bytes);
        run(&splice(&seeds, shape, bytes));
        run(&expand(shape, bytes));
    });
}

/// One of `seeds` (the input's first two bytes choose it), cut between two operations, with
/// up to 7 of its operations dropped and the input's remaining whole operations put there.
pub fn splice(seeds: &[Vec<u8>], shape: Shape, bytes: &[u8]) -> Vec<u8> {
    let mut c = Choices(bytes);
    let Some(seed) = seeds.get(c.below(seeds.len())) else {
        return bytes.to_vec();
    };
    let ops = seed.len().saturating_sub(shape.header) / shape.op_len;
    let at = (shape.header + c.below(ops + 1) * shape.op_len).min(seed.len());
    let drop = usize::from(c.byte() % 8) * shape.op_len;
    let new = c.0.len() / shape.op_len * shape.op_len;
    let mut out = seed[..at].to_vec();
    out.extend_from_slice(&c.0[..new]);
    out.extend_from_slice(&seed[(at + drop).min(seed.len())..]);
    out
}

/// A script of 64 to 576 operations from a generator (xorshift) seeded by the input.
pub fn expand(shape: Shape, bytes: &[u8]) -> Vec<u8> {
    // FNV-1a: any change to the input changes the whole script.
    let mut x = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    }) | 1;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let ops = 64 + (next() % 513) as usize;
    (0..shape.header + ops * shape.op_len)
        .map(|_| next() as u8)
        .collect()
}

/// The seed inputs of target `name` are its corpus files `seed-<label>`.
/// `LIVELOOP_FUZZ_BLESS=1` writes them after the seeds or their encoding changed.
pub fn seeds_are_in_the_corpus(name: &str, seeds: &[(&str, Vec<u8>)]) {
    let dir = corpus_dir(name);
    let bless = std::env::var_os("LIVELOOP_FUZZ_BLESS").is_some();
    for (label, bytes) in seeds {
        let path = dir.join(format!("seed-{label}"));
        if bless {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, bytes).unwrap();
        }
        let file = std::fs::read(&path).unwrap_or_default();
        assert!(
            file == *bytes,
            "{} is not the seed's encoding (LIVELOOP_FUZZ_BLESS=1 writes it)",
            path.display()
        );
    }
}

/// The fuzzer's bytes, read as choices; past the end every choice is 0.
pub struct Choices<'a>(pub &'a [u8]);

impl Choices<'_> {
    pub fn byte(&mut self) -> u8 {
        let Some((first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        *first
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.byte(), self.byte()])
    }
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.byte(), self.byte(), self.byte(), self.byte()])
    }
    /// 0..n (0 for n = 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n.max(1)
    }
}
