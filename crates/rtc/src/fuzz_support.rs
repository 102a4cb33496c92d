//! What the crate's fuzz targets need (docs/fuzzing.md; as in liveloop-core): the bolero
//! runner, the fuzzer's bytes read as choices, and the check that each target's seed inputs
//! are in its corpus. A module of the crate in test builds, used by the targets `rtp_receive`
//! (`receive/fuzz.rs`, corpus in `src/__fuzz__/rtp_receive/corpus/`) and `turn_stream`
//! (`turn_bridge.rs`).

use std::path::PathBuf;

/// Random inputs per target under `cargo test`, after the corpus (`BOLERO_RANDOM_ITERATIONS`
/// overrides it, for a longer campaign).
pub const ITERATIONS: usize = 1_000;

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
    /// 0..n (0 for n = 0).
    pub fn below(&mut self, n: usize) -> usize {
        usize::from(self.u16()) % n.max(1)
    }
}
