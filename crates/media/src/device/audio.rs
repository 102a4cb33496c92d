//! Microphones and speakers through cpal (PulseAudio when its server runs, else ALSA on Linux;
//! CoreAudio and WASAPI elsewhere).
//!
//! Capture converts whatever the device delivers to 48 kHz mono in the callback and keeps at
//! most one second in a ring, dropping the oldest: audio never blocks the capture thread.
//! Playout: the callback takes 48 kHz mono from a wait-free ring ([`SpeakerFeed`]) and copies it
//! to every output channel; its consumption is the playout clock.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{BufferSize, ErrorKind, StreamConfig};

use super::DeviceEvent;
use crate::audio::{SpeakerFeed, ToMono48k, speaker_ring};
use crate::{AudioSource, DeviceInfo, MediaError, SAMPLE_RATE};

fn err(kind: &'static str, e: impl std::fmt::Display) -> MediaError {
    MediaError::Device {
        kind,
        message: e.to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn describe(device: &cpal::Device) -> (String, String) {
    let id = device.id().map(|i| i.to_string()).unwrap_or_default();
    let name = device
        .description()
        .map(|d| d.name().to_owned())
        .unwrap_or_else(|_| id.clone());
    (id, name)
}

fn list_of(input: bool) -> Result<Vec<DeviceInfo>, MediaError> {
    let kind = if input { "microphone" } else { "speaker" };
    let host = cpal::default_host();
    let default = if input {
        host.default_input_device()
    } else {
        host.default_output_device()
    }
    .map(|d| describe(&d).0);
    let devices: Vec<cpal::Device> = if input {
        host.input_devices().map_err(|e| err(kind, e))?.collect()
    } else {
        host.output_devices().map_err(|e| err(kind, e))?.collect()
    };
    Ok(devices
        .iter()
        .map(|d| {
            let (id, name) = describe(d);
            DeviceInfo {
                is_default: Some(&id) == default.as_ref(),
                id,
                name,
            }
        })
        .collect())
}

/// Microphones on this system.
///
/// # Errors
/// When the audio system cannot be queried.
pub fn list_microphones() -> Result<Vec<DeviceInfo>, MediaError> {
    list_of(true)
}

/// Speakers (outputs) on this system.
///
/// # Errors
/// When the audio system cannot be queried.
pub fn list_speakers() -> Result<Vec<DeviceInfo>, MediaError> {
    list_of(false)
}

fn find(input: bool, id: Option<&str>) -> Result<(cpal::Device, String), MediaError> {
    let kind = if input { "microphone" } else { "speaker" };
    let host = cpal::default_host();
    let device = match id {
        None => if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        }
        .ok_or(MediaError::NoDevice {
            kind,
            hint: Some("no default audio device".into()),
        })?,
        Some(id) => {
            let mut all: Vec<cpal::Device> = if input {
                host.input_devices().map_err(|e| err(kind, e))?.collect()
            } else {
                host.output_devices().map_err(|e| err(kind, e))?.collect()
            };
            let pos = all
                .iter()
                .position(|d| describe(d).0 == id)
                .ok_or_else(|| MediaError::UnknownDevice {
                    kind,
                    id: id.to_owned(),
                })?;
            all.swap_remove(pos)
        }
    };
    let name = describe(&device).1;
    Ok((device, name))
}

fn on_stream_error(
    kind: &'static str,
    name: String,
    events: Sender<DeviceEvent>,
    lost: Arc<(Mutex<bool>, Condvar)>,
) -> impl FnMut(cpal::Error) + Send + 'static {
    move |e: cpal::Error| {
        let event = match e.kind() {
            ErrorKind::DeviceNotAvailable | ErrorKind::HostUnavailable => {
                *lock(&lost.0) = true;
                lost.1.notify_all();
                DeviceEvent::Lost {
                    kind,
                    name: name.clone(),
                }
            }
            ErrorKind::DeviceChanged => DeviceEvent::Rerouted {
                kind,
                name: name.clone(),
            },
            _ => DeviceEvent::Error {
                kind,
                message: e.to_string(),
            },
        };
        let _ = events.send(event);
    }
}

/// Capture samples queued at most (1 s) between the callback and the capture thread: the
/// callback never blocks and never allocates; past this it drops what it captured (the
/// reader is a second behind and catches up, see [`MAX_CAPTURE_LAG`]).
const CAPTURE_RING: usize = SAMPLE_RATE as usize;
/// A reader further behind than this skips the oldest samples: capture → send latency stays
/// bounded after a stall (the previous samples are stale for a live call).
const MAX_CAPTURE_LAG: usize = SAMPLE_RATE as usize / 5;

/// An open microphone: an [`AudioSource`] of 48 kHz mono.
pub struct Microphone {
    _stream: cpal::Stream,
    /// Filled by the capture callback (wait-free SPSC ring).
    ring: rtrb::Consumer<f32>,
    lost: Arc<(Mutex<bool>, Condvar)>,
    name: String,
    events: Receiver<DeviceEvent>,
}

impl std::fmt::Debug for Microphone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Microphone")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Microphone {
    /// Opens microphone `id` (from [`list_microphones`]) or the default one, at its native rate
    /// and channel count.
    ///
    /// # Errors
    /// [`MediaError::NoDevice`], [`MediaError::UnknownDevice`], [`MediaError::DeviceBusy`].
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        const KIND: &str = "microphone";
        let (device, name) = find(true, id)?;
        let native = device.default_input_config().map_err(|e| err(KIND, e))?;
        let config = StreamConfig {
            channels: native.channels(),
            sample_rate: native.sample_rate(),
            buffer_size: BufferSize::Default,
        };
        let mut convert = ToMono48k::new(config.sample_rate, config.channels)?;
        let (mut producer, ring) = rtrb::RingBuffer::<f32>::new(CAPTURE_RING);
        let lost = Arc::new((Mutex::new(false), Condvar::new()));
        let (tx, events) = channel();
        // Sized for a large device buffer up front, so the callback does not allocate.
        let mut scratch = Vec::with_capacity(SAMPLE_RATE as usize / 10);
        let stream = device
            .build_input_stream::<f32, _, _>(
                config,
                move |data: &[f32], _| {
                    scratch.clear();
                    convert.push(data, &mut scratch);
                    // A full ring (the reader a second behind) drops what does not fit.
                    let n = scratch.len().min(producer.slots());
                    if let Ok(chunk) = producer.write_chunk_uninit(n) {
                        chunk.fill_from_iter(scratch.iter().copied());
                    }
                },
                on_stream_error(KIND, name.clone(), tx, lost.clone()),
                None,
            )
            .map_err(|e| match e.kind() {
                ErrorKind::DeviceBusy => MediaError::DeviceBusy {
                    kind: KIND,
                    name: name.clone(),
                },
                _ => err(KIND, e),
            })?;
        stream.play().map_err(|e| err(KIND, e))?;
        Ok(Self {
            _stream: stream,
            ring,
            lost,
            name,
            events,
        })
    }

    /// Device events (lost, rerouted, errors).
    #[must_use]
    pub fn events(&self) -> &Receiver<DeviceEvent> {
        &self.events
    }
}

impl AudioSource for Microphone {
    /// Blocks until `out.len()` samples are captured (at most 2 s). The ring is polled (every
    /// millisecond or two) rather than signalled: the callback must not take a lock or make a
    /// system call.
    fn read(&mut self, out: &mut [f32]) -> Result<(), MediaError> {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        // Behind after a stall: the oldest samples are dropped.
        let excess = self
            .ring
            .slots()
            .saturating_sub(MAX_CAPTURE_LAG.max(out.len()));
        if let Ok(stale) = self.ring.read_chunk(excess) {
            stale.commit_all();
        }
        while self.ring.slots() < out.len() {
            if *lock(&self.lost.0) {
                return Err(MediaError::DeviceLost {
                    kind: "microphone",
                    name: self.name.clone(),
                });
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(MediaError::Device {
                    kind: "microphone",
                    message: format!("{} delivered nothing for 2 s", self.name),
                });
            }
            // Wait about as long as the missing samples take to arrive.
            let missing = out.len() - self.ring.slots();
            let wait = Duration::from_micros(
                (missing as u64 * 1_000_000 / u64::from(SAMPLE_RATE)).max(1000),
            );
            std::thread::sleep(wait.min(left).min(Duration::from_millis(10)));
        }
        let chunk = self
            .ring
            .read_chunk(out.len())
            .map_err(|e| err("microphone", e))?;
        let (first, second) = chunk.as_slices();
        for (o, s) in out.iter_mut().zip(first.iter().chain(second)) {
            *o = *s;
        }
        chunk.commit_all();
        Ok(())
    }
}

/// An open speaker, playing what its [`SpeakerFeed`] is given.
pub struct Speaker {
    _stream: cpal::Stream,
    events: Receiver<DeviceEvent>,
    name: String,
}

impl std::fmt::Debug for Speaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Speaker")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// The speaker ring for live calls: 200 ms (the playout keeps about 20-40 ms in it).
pub const LIVE_SPEAKER_RING: usize = SAMPLE_RATE as usize / 5;

impl Speaker {
    /// Opens speaker `id` (from [`list_speakers`]) or the default one at 48 kHz, in 20 ms
    /// buffers, and returns it with the feed that writes to it: a ring of `ring` samples
    /// ([`LIVE_SPEAKER_RING`] for calls; more for a clip queued at once). The callback only
    /// reads the ring: no lock, no allocation. The stream stays on the thread that opened it
    /// (cpal streams are not `Send` everywhere); the feed can go anywhere.
    ///
    /// # Errors
    /// [`MediaError::NoDevice`], [`MediaError::UnknownDevice`], [`MediaError::DeviceBusy`].
    pub fn open(id: Option<&str>, ring: usize) -> Result<(Self, SpeakerFeed), MediaError> {
        const KIND: &str = "speaker";
        let (device, name) = find(false, id)?;
        let channels = device
            .default_output_config()
            .map(|c| c.channels())
            .unwrap_or(2)
            .max(1);
        let config = StreamConfig {
            channels,
            sample_rate: SAMPLE_RATE,
            buffer_size: BufferSize::Fixed(960),
        };
        let (feed, mut drain) = speaker_ring(ring);
        let (tx, events) = channel();
        let lost = Arc::new((Mutex::new(false), Condvar::new()));
        let ch = usize::from(channels);
        // Sized for a large device buffer up front, so the callback does not allocate.
        let mut mono = Vec::with_capacity(SAMPLE_RATE as usize / 10);
        let stream = device
            .build_output_stream::<f32, _, _>(
                config,
                move |data: &mut [f32], _| {
                    mono.resize(data.len() / ch, 0.0);
                    drain.fill(&mut mono);
                    for (frame, s) in data.chunks_mut(ch).zip(&mono) {
                        frame.fill(*s);
                    }
                },
                on_stream_error(KIND, name.clone(), tx, lost),
                None,
            )
            .map_err(|e| match e.kind() {
                ErrorKind::DeviceBusy => MediaError::DeviceBusy {
                    kind: KIND,
                    name: name.clone(),
                },
                _ => err(KIND, e),
            })?;
        stream.play().map_err(|e| err(KIND, e))?;
        Ok((
            Self {
                _stream: stream,
                events,
                name,
            },
            feed,
        ))
    }

    /// Device events (lost, rerouted, errors).
    #[must_use]
    pub fn events(&self) -> &Receiver<DeviceEvent> {
        &self.events
    }
}
