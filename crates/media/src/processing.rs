//! The microphone's processing before it is encoded: echo cancellation (WebRTC's AEC3, with
//! its own delay estimation), noise suppression and automatic gain (AGC2), from `sonora`, a
//! pure-Rust port of WebRTC's audio processing; and voice activity (AGC2's RNN VAD) on the
//! processed signal.
//!
//! The far-end reference (what goes to the speaker) reaches the capture side through a
//! wait-free ring ([`echo_reference`]): the playout writes every mix it hands the speaker, the
//! capture thread reads what has arrived before each frame it processes. Neither ever waits for
//! the other, and neither takes a lock.
//!
//! Everything runs in 10 ms frames of 48 kHz mono ([`PROCESS_FRAME`]), as WebRTC's does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sonora::config::{AdaptiveDigital, EchoCanceller, GainController2, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};
use sonora_agc2::vad_wrapper::VoiceActivityDetectorWrapper;

use crate::SAMPLE_RATE;

/// Samples in one 10 ms processing frame at 48 kHz.
pub const PROCESS_FRAME: usize = SAMPLE_RATE as usize / 100;

/// The reference ring holds at most this much far-end audio (500 ms). Past it the playout's
/// newest samples are dropped (and counted): the capture side is not reading, so it has no
/// use for them. The capture side also never lets more than [`MAX_REFERENCE_LAG`] wait.
pub const REFERENCE_CAPACITY: usize = SAMPLE_RATE as usize / 2;

/// At most this much reference (250 ms) is fed in before one capture frame; older samples are
/// skipped (capture was stalled or had no microphone, and what played meanwhile cannot be in
/// the next frame's echo). AEC3 looks for echo up to about 250 ms behind its reference.
pub const MAX_REFERENCE_LAG: usize = SAMPLE_RATE as usize / 4;

/// Which processing runs on the microphone. Each is on by default, as in every calling app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessingSettings {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
}

impl Default for ProcessingSettings {
    fn default() -> Self {
        Self {
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain: true,
        }
    }
}

impl ProcessingSettings {
    /// Everything off: the microphone as it is ([`CaptureProcessor::process`] still judges
    /// voice activity).
    pub const OFF: Self = Self {
        echo_cancellation: false,
        noise_suppression: false,
        auto_gain: false,
    };

    /// The settings as three bits (echo cancellation, noise suppression, gain), for an atomic.
    #[must_use]
    pub fn bits(self) -> u8 {
        u8::from(self.echo_cancellation)
            | u8::from(self.noise_suppression) << 1
            | u8::from(self.auto_gain) << 2
    }

    /// The inverse of [`ProcessingSettings::bits`] (other bits are ignored).
    #[must_use]
    pub fn from_bits(bits: u8) -> Self {
        Self {
            echo_cancellation: bits & 1 != 0,
            noise_suppression: bits & 2 != 0,
            auto_gain: bits & 4 != 0,
        }
    }

    /// Every part off.
    #[must_use]
    pub fn is_off(self) -> bool {
        self == Self::OFF
    }

    fn config(self) -> Config {
        Config {
            echo_canceller: self.echo_cancellation.then(EchoCanceller::default),
            noise_suppression: self.noise_suppression.then(NoiseSuppression::default),
            gain_controller2: self.auto_gain.then(|| GainController2 {
                adaptive_digital: Some(AdaptiveDigital::default()),
                ..GainController2::default()
            }),
            ..Config::default()
        }
    }
}

/// Makes the ring that carries the far-end reference from the playout to the capture side.
#[must_use]
pub fn echo_reference() -> (ReferenceFeed, ReferenceTap) {
    let (producer, consumer) = rtrb::RingBuffer::<f32>::new(REFERENCE_CAPACITY);
    let dropped = Arc::new(AtomicU64::new(0));
    (
        ReferenceFeed {
            producer,
            dropped: dropped.clone(),
        },
        ReferenceTap { consumer, dropped },
    )
}

/// The playout's end: every mix that goes to the speaker is written here too.
#[derive(Debug)]
pub struct ReferenceFeed {
    producer: rtrb::Producer<f32>,
    dropped: Arc<AtomicU64>,
}

impl ReferenceFeed {
    /// Writes what fits (wait-free); a full ring drops the rest and counts it.
    pub fn write(&mut self, samples: &[f32]) {
        let n = samples.len().min(self.producer.slots());
        if let Ok(chunk) = self.producer.write_chunk_uninit(n) {
            chunk.fill_from_iter(samples.iter().copied());
        }
        if n < samples.len() {
            self.dropped
                .fetch_add((samples.len() - n) as u64, Ordering::Relaxed);
        }
    }
}

/// The capture side's end of the reference ring.
#[derive(Debug)]
pub struct ReferenceTap {
    consumer: rtrb::Consumer<f32>,
    dropped: Arc<AtomicU64>,
}

impl ReferenceTap {
    /// Reference samples the playout had to drop because the ring was full.
    #[must_use]
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Moves whatever has arrived into `out` (at most [`MAX_REFERENCE_LAG`], the newest).
    fn drain_into(&mut self, out: &mut Vec<f32>) {
        let n = self.consumer.slots();
        if let Ok(chunk) = self.consumer.read_chunk(n) {
            let (a, b) = chunk.as_slices();
            out.extend_from_slice(a);
            out.extend_from_slice(b);
            chunk.commit_all();
        }
        if out.len() > MAX_REFERENCE_LAG {
            // Whole frames only, so the reference keeps its 10 ms grid.
            let skip = (out.len() - MAX_REFERENCE_LAG).div_ceil(PROCESS_FRAME) * PROCESS_FRAME;
            out.drain(..skip.min(out.len()));
        }
    }
}

/// What one processed frame says about the voice in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Voice {
    /// The VAD's speech probability, 0 to 1.
    pub probability: f32,
    /// The frame's level after processing, in dBFS (`-100` for silence).
    pub level_dbfs: f32,
}

/// Processes the microphone in 10 ms frames. Made and used on the capture thread; the only
/// thing it shares is the reference ring.
pub struct CaptureProcessor {
    settings: ProcessingSettings,
    apm: Option<AudioProcessing>,
    reference: Option<ReferenceTap>,
    pending: Vec<f32>,
    vad: VoiceActivityDetectorWrapper,
    scratch: Vec<f32>,
    out: Vec<f32>,
}

impl std::fmt::Debug for CaptureProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaptureProcessor")
            .field("settings", &self.settings)
            .field("reference", &self.reference.is_some())
            .finish_non_exhaustive()
    }
}

impl CaptureProcessor {
    /// A processor with `settings`, echo-cancelling against `reference` (`None`: nothing plays
    /// here, so there is no echo to cancel).
    #[must_use]
    pub fn new(settings: ProcessingSettings, reference: Option<ReferenceTap>) -> Self {
        let mut this = Self {
            settings: ProcessingSettings::OFF,
            apm: None,
            reference,
            pending: Vec::new(),
            vad: VoiceActivityDetectorWrapper::new(
                sonora_simd::detect_backend(),
                SAMPLE_RATE as i32,
            ),
            scratch: vec![0.0; PROCESS_FRAME],
            out: vec![0.0; PROCESS_FRAME],
        };
        this.set_settings(settings);
        this
    }

    #[must_use]
    pub fn settings(&self) -> ProcessingSettings {
        self.settings
    }

    /// Switches processing on or off; a change rebuilds the processing (its filters start
    /// learning again, within about a second).
    pub fn set_settings(&mut self, settings: ProcessingSettings) {
        if settings == self.settings && (self.apm.is_some() || settings.is_off()) {
            return;
        }
        self.settings = settings;
        self.apm = (!settings.is_off()).then(|| {
            let stream = StreamConfig::new(SAMPLE_RATE, 1);
            AudioProcessing::builder()
                .config(settings.config())
                .capture_config(stream)
                .render_config(stream)
                .build()
        });
    }

    /// Feeds a far-end frame directly (the bench's simulated speaker; the engine uses the
    /// reference ring instead). Whole 10 ms frames are processed; the rest waits.
    pub fn render(&mut self, samples: &[f32]) {
        self.pending.extend_from_slice(samples);
        self.feed_pending();
    }

    fn feed_pending(&mut self) {
        let whole = self.pending.len() / PROCESS_FRAME * PROCESS_FRAME;
        if let Some(apm) = self
            .apm
            .as_mut()
            .filter(|_| self.settings.echo_cancellation)
        {
            // `chunks_exact` leaves the partial frame at the end for the next call.
            for frame in self.pending.chunks_exact(PROCESS_FRAME) {
                if let Err(e) = apm.process_render_f32(&[frame], &mut [&mut self.scratch]) {
                    tracing::warn!(error = ?e, "echo reference frame refused");
                }
            }
        }
        self.pending.drain(..whole);
    }

    /// Processes one 10 ms frame of microphone audio ([`PROCESS_FRAME`] samples) in place,
    /// after feeding in whatever far-end audio has played meanwhile.
    pub fn process(&mut self, frame: &mut [f32]) -> Voice {
        if let Some(tap) = self.reference.as_mut() {
            tap.drain_into(&mut self.pending);
        }
        self.feed_pending();
        if frame.len() == PROCESS_FRAME
            && let Some(apm) = self.apm.as_mut()
        {
            match apm.process_capture_f32(&[frame], &mut [&mut self.out]) {
                Ok(()) => frame.copy_from_slice(&self.out),
                Err(e) => tracing::warn!(error = ?e, "capture frame not processed"),
            }
        }
        // The VAD works on WebRTC's float scale of 16-bit samples.
        self.scratch.clear();
        self.scratch.extend(frame.iter().map(|s| s * 32768.0));
        self.scratch.resize(PROCESS_FRAME, 0.0);
        let probability = self.vad.analyze(&self.scratch);
        let power = frame.iter().map(|s| s * s).sum::<f32>() / frame.len().max(1) as f32;
        Voice {
            probability,
            level_dbfs: if power > 1e-10 {
                10.0 * power.log10()
            } else {
                -100.0
            },
        }
    }

    /// Processes any whole number of 10 ms frames in place (the engine's 20 ms frames); the
    /// most likely voice of them is returned.
    pub fn process_frames(&mut self, samples: &mut [f32]) -> Voice {
        let mut voice = Voice {
            probability: 0.0,
            level_dbfs: -100.0,
        };
        for frame in samples.chunks_mut(PROCESS_FRAME) {
            let v = self.process(frame);
            voice.probability = voice.probability.max(v.probability);
            voice.level_dbfs = voice.level_dbfs.max(v.level_dbfs);
        }
        voice
    }

    /// Throws away the far-end audio that has arrived, for a caller that processes nothing
    /// (everything off): the ring keeps room for what plays next, so turning echo
    /// cancellation on later starts from a current reference, not a stale one.
    pub fn discard_reference(&mut self) {
        if let Some(tap) = self.reference.as_mut() {
            let n = tap.consumer.slots();
            if let Ok(chunk) = tap.consumer.read_chunk(n) {
                chunk.commit_all();
            }
        }
        self.pending.clear();
    }

    /// AEC3's own figures: echo return loss enhancement and its delay estimate, when known.
    #[must_use]
    pub fn echo_stats(&self) -> (Option<f64>, Option<i32>) {
        self.apm.as_ref().map_or((None, None), |apm| {
            let s = apm.statistics();
            (s.echo_return_loss_enhancement, s.delay_ms)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize, start: usize, hz: f32, amp: f32) -> Vec<f32> {
        (start..start + n)
            .map(|i| amp * (2.0 * std::f32::consts::PI * hz * i as f32 / SAMPLE_RATE as f32).sin())
            .collect()
    }

    fn power(x: &[f32]) -> f32 {
        x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32
    }

    /// The muted hint rests on this: the VAD is sure of the synthetic voice (the app test's
    /// microphone), and hears no speech in silence or in steady noise. (A steady tone it takes
    /// for a voice: a whistle would show the hint too.)
    #[test]
    fn the_voice_activity_tells_the_synthetic_voice_from_silence_and_noise() {
        use crate::AudioSource;
        use crate::synthetic::{SyntheticMic, Voice};
        type Source = Box<dyn FnMut(&mut [f32])>;
        const FRAMES: u32 = 150;
        let voiced_share = |mut next: Source| {
            let mut p = CaptureProcessor::new(ProcessingSettings::OFF, None);
            let mut frame = vec![0.0; 960];
            let mut voiced = 0;
            for _ in 0..FRAMES {
                next(&mut frame);
                if p.process_frames(&mut frame).probability >= 0.8 {
                    voiced += 1;
                }
            }
            f64::from(voiced) / f64::from(FRAMES)
        };
        let mic = |voice| {
            let mut mic = SyntheticMic::new(voice, false);
            Box::new(move |f: &mut [f32]| mic.read(f).unwrap()) as Source
        };
        // White noise at about -30 dBFS, from a small linear congruential generator.
        let mut state = 1u32;
        let noise = Box::new(move |f: &mut [f32]| {
            for s in f.iter_mut() {
                state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                *s = 0.055 * ((state >> 8) as f32 / (1u32 << 23) as f32 - 1.0);
            }
        });
        let (speech, silence, noise) = (
            voiced_share(mic(Voice::Speech)),
            voiced_share(mic(Voice::Silence)),
            voiced_share(noise),
        );
        eprintln!(
            "voiced 20 ms frames: speech {speech:.2}, silence {silence:.2}, noise {noise:.2}"
        );
        assert!(speech >= 0.5, "speech voiced in {speech:.2} of its frames");
        assert!(
            silence < 0.05 && noise < 0.05,
            "silence {silence:.2}, noise {noise:.2}"
        );
    }

    #[test]
    fn settings_round_trip_through_their_bits() {
        for bits in 0..8 {
            assert_eq!(ProcessingSettings::from_bits(bits).bits(), bits);
        }
        assert_eq!(ProcessingSettings::default().bits(), 7);
    }

    #[test]
    fn everything_off_leaves_the_microphone_as_it_is() {
        let mut p = CaptureProcessor::new(ProcessingSettings::OFF, None);
        let mut frame = tone(PROCESS_FRAME, 0, 440.0, 0.3);
        let before = frame.clone();
        p.process(&mut frame);
        assert_eq!(frame, before);
    }

    #[test]
    fn the_reference_ring_drops_at_its_cap_and_the_tap_keeps_only_the_newest() {
        let (mut feed, mut tap) = echo_reference();
        feed.write(&vec![0.5; REFERENCE_CAPACITY + 100]);
        assert_eq!(tap.dropped(), 100);
        let mut out = Vec::new();
        tap.drain_into(&mut out);
        assert!(out.len() <= MAX_REFERENCE_LAG);
        assert!(out.len() > MAX_REFERENCE_LAG - PROCESS_FRAME);
    }

    #[test]
    fn with_everything_off_the_reference_is_discarded_so_the_ring_never_fills() {
        let (mut feed, tap) = echo_reference();
        let mut p = CaptureProcessor::new(ProcessingSettings::OFF, Some(tap));
        for _ in 0..3 {
            feed.write(&vec![0.1; REFERENCE_CAPACITY]);
            p.discard_reference();
        }
        let (mut feed2, tap2) = echo_reference();
        feed2.write(&vec![0.1; REFERENCE_CAPACITY + 1]);
        // The same writes without discarding would have dropped samples; with it, none.
        assert_eq!(tap2.dropped(), 1);
        assert_eq!(p.reference.as_ref().map(ReferenceTap::dropped), Some(0));
    }

    /// A delayed, attenuated copy of the far end in the microphone is cancelled: the far end
    /// is a noise-like signal (many tones), the echo path 60 ms and -6 dB.
    #[test]
    fn an_echo_of_the_reference_is_cancelled() {
        let (mut feed, tap) = echo_reference();
        let mut p = CaptureProcessor::new(
            ProcessingSettings {
                echo_cancellation: true,
                noise_suppression: false,
                auto_gain: false,
            },
            Some(tap),
        );
        let delay = SAMPLE_RATE as usize * 60 / 1000;
        let seconds = 4;
        let mut far = vec![0.0f32; SAMPLE_RATE as usize * seconds];
        let mut state = 1u32;
        for s in &mut far {
            // A xorshift: a broadband far end the filter can learn from.
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *s = (state as f32 / u32::MAX as f32 - 0.5) * 0.2;
        }
        let (mut echo_in, mut echo_out) = (0.0f32, 0.0f32);
        for (i, chunk) in far.chunks(PROCESS_FRAME).enumerate() {
            feed.write(chunk);
            let start = i * PROCESS_FRAME;
            let mut mic: Vec<f32> = (start..start + PROCESS_FRAME)
                .map(|j| {
                    if j >= delay {
                        far[j - delay] * 0.5
                    } else {
                        0.0
                    }
                })
                .collect();
            let before = power(&mic);
            p.process(&mut mic);
            if start >= SAMPLE_RATE as usize * 2 {
                echo_in += before;
                echo_out += power(&mic);
            }
        }
        let erle = 10.0 * (echo_in / echo_out.max(1e-12)).log10();
        assert!(erle > 20.0, "echo return loss enhancement {erle:.1} dB");
    }
}
