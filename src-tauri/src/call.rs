//! The bridge between the UI and the engine: one call at a time. Control events go to the UI
//! as Tauri events (`call`), frames to the [`VideoHub`]; the engine plays the audio. Nothing
//! here decides anything about calls; the engine does.

use std::sync::Arc;
use std::time::Duration;

use liveloop_engine::echo::echo_media;
use liveloop_engine::recording::{Recorder, RecordingOptions};
use liveloop_engine::{
    AudioTap, Command, EngineConfig, EngineEvent, EngineHandle, FrameTap, Matchmaker,
    join_room_with, random_chat,
};
use serde_json::json;
use tauri::{AppHandle, Emitter};
use tokio::sync::Mutex;

use crate::AppError;
pub use crate::devices::Devices;
use crate::devices::{SpeakerGuard, media, start_speaker};
pub use crate::names::{member_id, new_room_name, recording_file_name};
use crate::video::VideoHub;

/// The call in progress, if any, and the in-process echo peer of a test call.
#[derive(Debug, Default)]
pub struct Calls {
    current: Mutex<Option<EngineHandle>>,
    echo: Mutex<Option<EngineHandle>>,
    /// The recording in progress, fed by the call's events and the local taps.
    recording: Arc<RecordingSlot>,
    /// What the call in progress is called in file names (the room, or "random chat").
    title: std::sync::Mutex<String>,
    /// Numbers the calls: every event carries its call's number, so the UI can drop what an
    /// ended call still says (its last "idle" must not end the next call).
    generation: std::sync::atomic::AtomicU64,
}

/// Where the recorder lives while it runs; the media taps and the event forwarder feed it.
#[derive(Debug, Default)]
pub struct RecordingSlot(std::sync::Mutex<Option<Recorder>>);

impl RecordingSlot {
    fn with(&self, f: impl FnOnce(&Recorder)) {
        if let Some(r) = crate::lock(&self.0).as_ref() {
            f(r);
        }
    }
}

/// A finished recording, for the UI.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordingSaved {
    pub path: String,
    pub duration_ms: u64,
    pub bytes: u64,
}

pub use liveloop_proto::link::{RoomLink, rooms_ws_url, share_link};

/// Parses a room link ([`liveloop_proto::link::parse_link`]).
///
/// # Errors
/// [`AppError::InvalidLink`] saying what is wrong.
pub fn parse_link(text: &str) -> Result<RoomLink, AppError> {
    // Plain ws:// also from this computer's own networks (a LAN on global IPv6, say).
    liveloop_proto::link::parse_link_on(text, &liveloop_signal::net::on_link)
        .map_err(|e| AppError::InvalidLink(e.to_string()))
}

/// What starting a call tells the UI.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallStarted {
    /// This call's number; its events carry it as `callId`.
    pub call_id: u64,
    pub mode: &'static str,
    pub room: Option<String>,
    pub link: Option<String>,
    /// Every link to the room other computers can open (one per address of this computer on
    /// the network, best first; `link` is the first), for the UI to offer when several.
    pub links: Vec<String>,
    /// The HTTPS links to the room for browsers on other computers (the built-in servers; a
    /// browser asks for the camera only on a secure origin), best first.
    pub browser_links: Vec<String>,
    /// Who can use the link: `network` (the built-in servers, people on your network), `this
    /// computer`, or `server` (a configured server).
    pub link_reach: &'static str,
    pub me: Option<String>,
    /// Device notes (no camera, no microphone) to show.
    pub notes: Vec<String>,
    /// Private mode in this call: `on` (relay candidates only), `off`, or `unavailable`
    /// (asked for, but the server offers no TURN relay).
    pub private: &'static str,
}

/// How to start a call.
#[derive(Debug)]
pub enum Start {
    Room {
        ws_url: String,
        room: String,
    },
    /// `image`: your picture for the matchmaking dialect's `userImage` (or empty).
    Random {
        matchmaker: Matchmaker,
        image: String,
    },
    /// A test call: a fresh room with an in-process echo peer that sends back what it gets.
    Test {
        ws_url: String,
    },
}

/// The STUN and TURN servers for a call, from the server it goes through
/// (`/api/rtc-config`, with fresh TURN credentials when the server has a TURN secret), whether
/// ICE is relay-only, and what private mode comes to. A server that does not answer leaves
/// the call with host candidates only (and a note); a test call stays on this computer.
async fn ice_setup(
    start: &Start,
    private: bool,
    notes: &mut Vec<String>,
) -> (
    Vec<liveloop_engine::IceServer>,
    bool,
    liveloop_engine::Privacy,
) {
    let server = match start {
        Start::Room { ws_url, .. } => Some(ws_url.clone()),
        Start::Random { matchmaker, .. } => matchmaker.pick().await,
        Start::Test { .. } => None,
    };
    let (servers, relay_policy) = match server {
        Some(server) => match liveloop_signal::rtc_config::fetch(&server).await {
            Ok(config) => liveloop_engine::ice_servers_of(&config),
            Err(e) => {
                tracing::warn!(error = %e, "no STUN/TURN configuration from the server");
                (Vec::new(), false)
            }
        },
        None => (Vec::new(), false),
    };
    let privacy = liveloop_engine::Privacy::of(private, &servers);
    if privacy == liveloop_engine::Privacy::Unavailable {
        notes.push(
            "Private mode can't apply: this server has no TURN relay, so the other side can see your IP address. Set a server with one in Settings."
                .into(),
        );
    }
    let relay_only = relay_policy || privacy == liveloop_engine::Privacy::On;
    (servers, relay_only, privacy)
}

impl Calls {
    /// Starts a call, ending any other first.
    ///
    /// # Errors
    /// When the engine refuses (bad room, unreachable matchmaker).
    pub async fn start(
        &self,
        app: AppHandle,
        hub: VideoHub,
        name: String,
        devices: Devices,
        start: Start,
        private: bool,
    ) -> Result<CallStarted, AppError> {
        self.leave().await;
        let mut notes = Vec::new();
        let (ice_servers, relay_only, privacy) = ice_setup(&start, private, &mut notes).await;
        let mut media = media(&devices, &mut notes);
        let (feed, speaker) = start_speaker(devices.speaker.clone(), &mut notes);
        media.speaker = feed;
        let preview = hub.clone();
        let (frames_to_record, audio_to_record) = (self.recording.clone(), self.recording.clone());
        let testing = matches!(start, Start::Test { .. });
        let image = match &start {
            Start::Random { image, .. } => image.clone(),
            _ => String::new(),
        };
        let config = EngineConfig {
            name: name.clone(),
            image,
            local_preview: Some(FrameTap(Arc::new(move |frame| {
                preview.publish("self", Arc::new(frame.clone()));
                frames_to_record.with(|r| r.local_frame(frame));
            }))),
            local_audio: Some(AudioTap(Arc::new(move |pcm| {
                audio_to_record.with(|r| r.local_audio(pcm));
            }))),
            // A test call measures the round trip from frames that come back.
            stamp_outgoing: testing,
            ice_servers,
            relay_only,
            audio_processing: devices.processing,
            ..EngineConfig::default()
        };
        let start = match start {
            Start::Test { ws_url } => {
                let room = format!("test-{}", new_room_name());
                self.start_echo(&ws_url, &room).await?;
                Start::Room { ws_url, room }
            }
            other => other,
        };
        let (handle, events, mut started) = match start {
            Start::Room { ws_url, room } => {
                let me = member_id(&name);
                let link = share_link(&ws_url, &room);
                let (h, e) = join_room_with(config, ws_url, room.clone(), me.clone(), media)
                    .map_err(|e| AppError::Call(e.to_string()))?;
                let started = CallStarted {
                    call_id: 0,
                    mode: "room",
                    room: Some(room),
                    links: vec![link.clone()],
                    browser_links: Vec::new(),
                    link: Some(link),
                    link_reach: "server",
                    me: Some(me),
                    notes,
                    private: privacy.as_str(),
                };
                (h, e, started)
            }
            Start::Random { matchmaker, .. } => {
                let (h, e) = tokio::time::timeout(
                    Duration::from_secs(10),
                    random_chat(config, matchmaker, media),
                )
                .await
                .map_err(|_| AppError::Call("the matchmaking server did not answer".into()))?
                .map_err(|e| AppError::Call(e.to_string()))?;
                let started = CallStarted {
                    call_id: 0,
                    mode: "random",
                    room: None,
                    link: None,
                    links: Vec::new(),
                    browser_links: Vec::new(),
                    link_reach: "server",
                    me: None,
                    notes,
                    private: privacy.as_str(),
                };
                (h, e, started)
            }
            Start::Test { .. } => return Err(AppError::Call("a test call starts a room".into())),
        };
        if testing {
            started.mode = "test";
            started.link = None;
        }
        *crate::lock(&self.title) = match (&started.room, testing) {
            (_, true) => "test call".into(),
            (Some(room), _) => room.clone(),
            (None, _) => "random chat".into(),
        };
        started.call_id = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        *self.current.lock().await = Some(handle);
        tauri::async_runtime::spawn(forward(
            Emit {
                app,
                call_id: started.call_id,
            },
            hub,
            speaker,
            testing,
            events,
            self.recording.clone(),
        ));
        Ok(started)
    }

    /// The echo peer of a test call: an engine in this process, in the same room, whose camera
    /// and microphone are what it receives.
    async fn start_echo(&self, ws_url: &str, room: &str) -> Result<(), AppError> {
        let (media, feed) = echo_media(liveloop_media::VideoFormat {
            width: 640,
            height: 360,
            fps: 30.0,
        });
        let config = EngineConfig {
            name: "Echo (test call)".into(),
            stats_interval: None,
            ..EngineConfig::default()
        };
        let id = format!("echo-{:04x}", rand::random::<u16>());
        let (handle, mut events) =
            join_room_with(config, ws_url.to_owned(), room.to_owned(), id, media)
                .map_err(|e| AppError::Call(e.to_string()))?;
        tauri::async_runtime::spawn(async move {
            while let Some(ev) = events.recv().await {
                feed.on_event(&ev);
            }
        });
        *self.echo.lock().await = Some(handle);
        Ok(())
    }

    /// Sends a command to the call in progress.
    ///
    /// # Errors
    /// [`AppError::NoCall`] when there is none.
    pub async fn send(&self, command: Command) -> Result<(), AppError> {
        let current = self.current.lock().await;
        let handle = current.as_ref().ok_or(AppError::NoCall)?;
        handle
            .send(command)
            .await
            .map_err(|e| AppError::Call(e.to_string()))
    }

    /// Starts recording the call in progress into `folder` (created if missing); returns the
    /// file's path.
    ///
    /// # Errors
    /// Without a call, while already recording, or when the file cannot be created.
    pub async fn start_recording(&self, folder: &std::path::Path) -> Result<String, AppError> {
        if self.current.lock().await.is_none() {
            return Err(AppError::NoCall);
        }
        let mut slot = crate::lock(&self.recording.0);
        if slot.is_some() {
            return Err(AppError::Call("already recording".into()));
        }
        std::fs::create_dir_all(folder).map_err(|e| {
            AppError::Call(format!(
                "cannot create the recording folder {}: {e}",
                folder.display()
            ))
        })?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let title = crate::lock(&self.title).clone();
        let path = folder.join(recording_file_name(&title, now));
        let options = RecordingOptions::new(path.clone(), format!("LiveLoop: {title}"));
        let recorder =
            Recorder::start(options).map_err(|e| AppError::Call(format!("recording: {e}")))?;
        *slot = Some(recorder);
        Ok(path.display().to_string())
    }

    /// Stops the recording in progress and says where it is.
    ///
    /// # Errors
    /// When nothing is being recorded or the file could not be finished.
    pub fn stop_recording(&self) -> Result<RecordingSaved, AppError> {
        let recorder = crate::lock(&self.recording.0)
            .take()
            .ok_or_else(|| AppError::Call("not recording".into()))?;
        let done = recorder
            .stop()
            .map_err(|e| AppError::Call(format!("recording: {e}")))?;
        Ok(RecordingSaved {
            path: done.path.display().to_string(),
            duration_ms: u64::try_from(done.duration.as_millis()).unwrap_or(u64::MAX),
            bytes: done.bytes,
        })
    }

    /// Leaves the call in progress, if any (finishing a recording first).
    pub async fn leave(&self) {
        let _ = self.stop_recording();
        if let Some(handle) = self.current.lock().await.take() {
            let _ = handle.send(Command::Leave).await;
        }
        if let Some(echo) = self.echo.lock().await.take() {
            let _ = echo.send(Command::Leave).await;
        }
    }
}

/// Sends one call's events to the UI, each marked with the call's number.
struct Emit {
    app: AppHandle,
    call_id: u64,
}

impl Emit {
    fn emit(&self, mut event: serde_json::Value) {
        if let Some(obj) = event.as_object_mut() {
            obj.insert("callId".into(), self.call_id.into());
        }
        let _ = self.app.emit("call", event);
    }
}

/// Forwards one call's events until it ends.
async fn forward(
    app: Emit,
    hub: VideoHub,
    speaker: SpeakerGuard,
    testing: bool,
    mut events: tokio::sync::mpsc::Receiver<EngineEvent>,
    recording: Arc<RecordingSlot>,
) {
    // A test call: round trips of our own stamped frames, reported once a second.
    let mut round_trips: Vec<u32> = Vec::new();
    let mut reported = std::time::Instant::now();
    while let Some(ev) = events.recv().await {
        recording.with(|r| r.on_event(&ev));
        match &ev {
            EngineEvent::FrameDecoded {
                from,
                frame,
                stamp,
                shown_ms,
                ..
            } => {
                hub.publish(from, frame.clone());
                if testing && let Some(stamp) = stamp {
                    round_trips.push(shown_ms.wrapping_sub(stamp.capture_ms));
                    if reported.elapsed() >= Duration::from_secs(1) {
                        reported = std::time::Instant::now();
                        round_trips.sort_unstable();
                        let median = round_trips.get(round_trips.len() / 2).copied();
                        round_trips.clear();
                        app.emit(json!({"event": "test_latency", "videoMs": median}));
                    }
                }
                continue;
            }
            // Played by the engine itself; the speaker closes when the call ends.
            EngineEvent::AudioPlayout { .. } => continue,
            EngineEvent::PeerLeft { id } => hub.clear(id),
            _ => {}
        }
        if let Some(json) = ev.to_json() {
            app.emit(json);
        }
    }
    hub.clear("self");
    drop(speaker);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_parsed_by_proto_with_the_apps_error() {
        assert_eq!(
            parse_link("https://calls.example/r/standup")
                .ok()
                .map(|l| l.room),
            Some("standup".to_owned())
        );
        assert!(matches!(
            parse_link("two words"),
            Err(AppError::InvalidLink(m)) if m.contains("two words")
        ));
    }
}
