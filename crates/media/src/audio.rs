//! Resampling to 48 kHz mono, mixing, and the wait-free ring between the playout and a speaker.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rubato::{FftFixedInOut, Resampler as _};

use crate::{MediaError, SAMPLE_RATE};

/// Converts interleaved audio at any rate and channel count to 48 kHz mono (channels are
/// averaged; the rate is converted by an FFT resampler).
pub struct ToMono48k {
    channels: usize,
    inner: Option<FftFixedInOut<f32>>,
    pending: Vec<f32>,
}

impl std::fmt::Debug for ToMono48k {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ToMono48k")
            .field("channels", &self.channels)
            .field("resampling", &self.inner.is_some())
            .finish()
    }
}

impl ToMono48k {
    /// # Errors
    /// For a rate or channel count of zero.
    pub fn new(rate: u32, channels: u16) -> Result<Self, MediaError> {
        if rate == 0 || channels == 0 {
            return Err(MediaError::Unsupported(format!(
                "{rate} Hz with {channels} channels"
            )));
        }
        let inner = if rate == SAMPLE_RATE {
            None
        } else {
            // 10 ms chunks of input.
            let chunk = (rate as usize / 100).max(1);
            Some(
                FftFixedInOut::new(rate as usize, SAMPLE_RATE as usize, chunk, 1)
                    .map_err(|e| MediaError::Unsupported(e.to_string()))?,
            )
        };
        Ok(Self {
            channels: usize::from(channels),
            inner,
            pending: Vec::new(),
        })
    }

    /// Converts `interleaved` and appends the result to `out` (some input may wait for the next
    /// call until a whole chunk is there).
    pub fn push(&mut self, interleaved: &[f32], out: &mut Vec<f32>) {
        let mono = interleaved
            .chunks(self.channels)
            .map(|c| c.iter().sum::<f32>() / self.channels as f32);
        let Some(inner) = self.inner.as_mut() else {
            out.extend(mono);
            return;
        };
        self.pending.extend(mono);
        loop {
            let need = inner.input_frames_next();
            if self.pending.len() < need {
                break;
            }
            let chunk: Vec<f32> = self.pending.drain(..need).collect();
            match inner.process(&[chunk], None) {
                Ok(mut channels) => out.append(channels.get_mut(0).unwrap_or(&mut Vec::new())),
                Err(e) => tracing::warn!(error = %e, "resampler dropped a chunk"),
            }
        }
    }
}

/// Identifies a stream in the [`Mixer`].
pub type StreamId = u64;

#[derive(Debug)]
struct Stream {
    queue: VecDeque<f32>,
    volume: f32,
}

/// Mixes several 48 kHz mono streams with per-stream volume. Each stream holds at most
/// `max_buffered` samples (older ones are dropped, so a stalled mix cannot grow latency).
#[derive(Debug)]
pub struct Mixer {
    streams: HashMap<StreamId, Stream>,
    max_buffered: usize,
}

impl Default for Mixer {
    fn default() -> Self {
        Self::new(SAMPLE_RATE as usize / 5)
    }
}

impl Mixer {
    #[must_use]
    pub fn new(max_buffered: usize) -> Self {
        Self {
            streams: HashMap::new(),
            max_buffered: max_buffered.max(1),
        }
    }

    /// Queues samples for `id` (creating the stream at volume 1).
    pub fn push(&mut self, id: StreamId, samples: &[f32]) {
        let max = self.max_buffered;
        let s = self.streams.entry(id).or_insert_with(|| Stream {
            queue: VecDeque::new(),
            volume: 1.0,
        });
        s.queue.extend(samples);
        let excess = s.queue.len().saturating_sub(max);
        s.queue.drain(..excess);
    }

    /// Changes how many samples a stream may hold before the oldest are dropped.
    pub fn set_max_buffered(&mut self, samples: usize) {
        self.max_buffered = samples.max(1);
    }

    /// Volume from 0 (silent) to 2 (double).
    pub fn set_volume(&mut self, id: StreamId, volume: f32) {
        let volume = if volume.is_finite() {
            volume.clamp(0.0, 2.0)
        } else {
            1.0
        };
        self.streams
            .entry(id)
            .or_insert_with(|| Stream {
                queue: VecDeque::new(),
                volume: 1.0,
            })
            .volume = volume;
    }

    pub fn remove(&mut self, id: StreamId) {
        self.streams.remove(&id);
    }

    /// Samples buffered for `id`.
    #[must_use]
    pub fn buffered(&self, id: StreamId) -> usize {
        self.streams.get(&id).map_or(0, |s| s.queue.len())
    }

    /// Fills `out` with the mix; streams short of samples contribute silence. The sum is
    /// soft-limited so that loud overlapping talkers do not wrap or hard-clip.
    pub fn mix(&mut self, out: &mut [f32]) {
        out.fill(0.0);
        for s in self.streams.values_mut() {
            let n = out.len().min(s.queue.len());
            for (o, x) in out.iter_mut().zip(s.queue.drain(..n)) {
                *o += x * s.volume;
            }
        }
        soft_limit(out);
    }
}

/// Soft-limits a mix: above 0.9 the level is compressed smoothly towards 1.0, so that loud
/// overlapping talkers do not wrap or hard-clip.
pub fn soft_limit(out: &mut [f32]) {
    for o in out.iter_mut() {
        if o.abs() > 0.9 {
            let excess = o.abs() - 0.9;
            *o = o.signum() * (0.9 + 0.1 * (excess / 0.1).tanh());
        }
    }
}

/// Creates the ring between the playout (which writes) and a speaker's real-time callback
/// (which reads): `capacity` samples of 48 kHz mono. Neither side ever waits or locks.
#[must_use]
pub fn speaker_ring(capacity: usize) -> (SpeakerFeed, SpeakerDrain) {
    let (producer, consumer) = rtrb::RingBuffer::<f32>::new(capacity.max(1));
    let counters = Arc::new(RingCounters::default());
    (
        SpeakerFeed {
            producer,
            counters: counters.clone(),
        },
        SpeakerDrain { consumer, counters },
    )
}

#[derive(Debug, Default)]
struct RingCounters {
    /// Samples the device took.
    played: AtomicU64,
    /// Samples the device wanted but the ring did not have (played as silence).
    missing: AtomicU64,
}

/// The writing end of a speaker: 48 kHz mono. The device's consumption is the playout clock:
/// the writer keeps a little queued ([`SpeakerFeed::queued`]) and writes more as it drains.
#[derive(Debug)]
pub struct SpeakerFeed {
    producer: rtrb::Producer<f32>,
    counters: Arc<RingCounters>,
}

impl SpeakerFeed {
    /// Samples written and not yet taken by the device.
    #[must_use]
    pub fn queued(&self) -> usize {
        self.producer.buffer().capacity() - self.producer.slots()
    }

    /// Writes what fits and returns how many samples that was; a full ring drops the rest (the
    /// device is not taking audio, so there is no point in queueing latency).
    pub fn write(&mut self, samples: &[f32]) -> usize {
        let n = samples.len().min(self.producer.slots());
        if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(samples.iter().copied());
        }
        n
    }

    /// Samples the device has taken since the ring was made.
    #[must_use]
    pub fn played(&self) -> u64 {
        self.counters.played.load(Ordering::Relaxed)
    }

    /// Samples the device had to play as silence because the ring was empty (underruns).
    #[must_use]
    pub fn missing(&self) -> u64 {
        self.counters.missing.load(Ordering::Relaxed)
    }

    /// Whether the reading end (the device) is gone.
    #[must_use]
    pub fn is_closed(&self) -> bool {
        self.producer.is_abandoned()
    }
}

/// The reading end of a speaker ring, for a real-time callback (or a test's simulated device).
#[derive(Debug)]
pub struct SpeakerDrain {
    consumer: rtrb::Consumer<f32>,
    counters: Arc<RingCounters>,
}

impl SpeakerDrain {
    /// Fills `out`, with silence for whatever the ring does not have. Wait-free.
    pub fn fill(&mut self, out: &mut [f32]) {
        let n = out.len().min(self.consumer.slots());
        let (head, tail) = out.split_at_mut(n);
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            let (first, second) = chunk.as_slices();
            for (o, s) in head.iter_mut().zip(first.iter().chain(second)) {
                *o = *s;
            }
            chunk.commit_all();
        }
        tail.fill(0.0);
        let missing = tail.len() as u64;
        self.counters
            .played
            .fetch_add(n as u64 + missing, Ordering::Relaxed);
        self.counters.missing.fetch_add(missing, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::aligned_correlation;

    fn sine(freq: f32, rate: u32, secs: f32) -> Vec<f32> {
        (0..(rate as f32 * secs) as usize)
            .map(|n| 0.5 * (std::f32::consts::TAU * freq * n as f32 / rate as f32).sin())
            .collect()
    }

    #[test]
    fn resamples_44k1_stereo_to_48k_mono() {
        let mono = sine(440.0, 44_100, 1.0);
        let stereo: Vec<f32> = mono.iter().flat_map(|s| [*s, *s]).collect();
        let mut r = ToMono48k::new(44_100, 2)
            .ok()
            .unwrap_or_else(|| panic!("resampler"));
        let mut out = Vec::new();
        for chunk in stereo.chunks(1000) {
            r.push(chunk, &mut out);
        }
        assert!(
            (47_000..=48_000).contains(&out.len()),
            "{} samples",
            out.len()
        );
        let expected = sine(440.0, 48_000, 1.0);
        let (_, c) = aligned_correlation(&expected[..40_000], &out, 2_000);
        assert!(c > 0.99, "correlation {c}");
    }

    #[test]
    fn passes_48k_through_and_downmixes() {
        let mut r = ToMono48k::new(48_000, 2)
            .ok()
            .unwrap_or_else(|| panic!("resampler"));
        let mut out = Vec::new();
        r.push(&[1.0, 0.0, 0.5, 0.5], &mut out);
        assert_eq!(out, vec![0.5, 0.5]);
        assert!(ToMono48k::new(0, 1).is_err());
    }

    #[test]
    fn mixer_sums_with_volume_limits_and_bounds_latency() {
        let mut m = Mixer::new(100);
        m.push(1, &[0.2; 10]);
        m.push(2, &[0.1; 5]);
        m.set_volume(2, 2.0);
        let mut out = [0.0; 10];
        m.mix(&mut out);
        assert!(
            (out[0] - 0.4).abs() < 1e-6 && (out[9] - 0.2).abs() < 1e-6,
            "{out:?}"
        );
        m.push(1, &[0.8; 4]);
        m.push(2, &[0.8; 4]);
        let mut loud = [0.0; 4];
        m.mix(&mut loud);
        assert!(loud.iter().all(|x| *x > 0.9 && *x <= 1.0), "{loud:?}");
        m.push(3, &[0.0; 500]);
        assert_eq!(m.buffered(3), 100);
        m.remove(3);
        assert_eq!(m.buffered(3), 0);
        m.set_volume(1, f32::NAN);
    }
    #[test]
    fn speaker_ring_counts_what_the_device_took_and_missed() {
        let (mut feed, mut drain) = speaker_ring(100);
        assert_eq!(feed.write(&[0.5; 60]), 60);
        assert_eq!(
            feed.write(&[0.25; 60]),
            40,
            "a full ring takes only what fits"
        );
        assert_eq!(feed.queued(), 100);
        let mut out = [1.0f32; 30];
        drain.fill(&mut out);
        assert!(out.iter().all(|s| (*s - 0.5).abs() < 1e-6));
        assert_eq!(feed.queued(), 70);
        let mut out = [1.0f32; 80];
        drain.fill(&mut out);
        assert!((out[29] - 0.5).abs() < 1e-6 && (out[30] - 0.25).abs() < 1e-6);
        assert!(
            out[70..].iter().all(|s| *s == 0.0),
            "an underrun plays silence"
        );
        assert_eq!((feed.played(), feed.missing(), feed.queued()), (110, 10, 0));
        assert!(!feed.is_closed());
        drop(drain);
        assert!(feed.is_closed());
    }
}
