//! Tauri commands: each one translates arguments to a domain call and back.

use liveloop_engine::Command;
use tauri::{AppHandle, State};

use crate::call::{self, CallStarted, Start};
use crate::{AppError, AppState, Servers, Settings, settings};

/// Version and the signaling servers in use.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub version: &'static str,
    pub servers: Servers,
    /// Whether *Nearby* runs (built-in servers on the network, mDNS started).
    pub nearby: bool,
    /// A room link the app was started with (given once).
    pub open_link: Option<String>,
}

#[tauri::command]
pub fn app_status(state: State<'_, AppState>) -> AppStatus {
    AppStatus {
        version: env!("CARGO_PKG_VERSION"),
        servers: state.servers.clone(),
        nearby: state.nearby.running(),
        open_link: crate::lock(&state.open_link).take(),
    }
}

/// The rooms LiveLoop apps nearby chose to list, and how many wait in random chat there
/// (Home's *Nearby*).
#[tauri::command]
pub fn nearby_rooms(state: State<'_, AppState>) -> crate::nearby::NearbyView {
    state.nearby.view()
}

/// Shows a room on the built-in servers to people on the network, or stops showing it.
#[tauri::command]
pub fn room_listed(state: State<'_, AppState>, room: String, listed: bool) -> Result<(), AppError> {
    if !liveloop_proto::is_valid_id(&room) {
        return Err(AppError::InvalidSetting(format!("not a room name: {room}")));
    }
    state.nearby.set_listed(&room, listed);
    Ok(())
}

#[tauri::command]
pub fn get_settings(state: State<'_, AppState>) -> Settings {
    crate::lock(&state.settings).clone()
}

/// Validates and persists the settings. Server changes apply at the next start.
#[tauri::command]
pub fn save_settings(
    state: State<'_, AppState>,
    settings: settings::Settings,
) -> Result<Settings, AppError> {
    let settings = settings.validated()?;
    settings.save(&state.settings_path)?;
    *crate::lock(&state.settings) = settings.clone();
    Ok(settings)
}

fn devices(state: &AppState) -> call::Devices {
    let s = crate::lock(&state.settings);
    call::Devices {
        camera: s.camera.clone(),
        microphone: s.microphone.clone(),
        speaker: s.speaker.clone(),
        processing: s.audio_processing(),
    }
}

fn avatar(state: &AppState) -> String {
    crate::lock(&state.settings).avatar.clone()
}

fn display_name(state: &AppState) -> String {
    let name = crate::lock(&state.settings).display_name.clone();
    if name.trim().is_empty() {
        "Guest".into()
    } else {
        name
    }
}

/// Starts a call as the user set up in Settings (name, devices).
async fn start(app: AppHandle, state: &AppState, how: Start) -> Result<CallStarted, AppError> {
    let name = display_name(state);
    let devices = devices(state);
    let servers = &state.servers;
    // A room on the built-in room service: the link names this computer's address on the
    // network (the app itself reaches it on loopback), or says it is for this computer.
    let built_in_room = servers.embedded
        && matches!(&how, Start::Room { ws_url, .. }
            if liveloop_proto::link::same_server(ws_url, &call::rooms_ws_url(&servers.rooms_url)));
    let private = {
        let s = crate::lock(&state.settings);
        match &how {
            Start::Random { .. } => s.private_random,
            Start::Room { .. } => s.private_rooms,
            Start::Test { .. } => false,
        }
    };
    let mut started = state
        .calls
        .start(app, state.video.clone(), name, devices, how, private)
        .await?;
    if built_in_room && let Some(room) = started.room.clone() {
        // The https link first: it works in a browser (a secure page may use the camera) and
        // in LiveLoop alike, so one link serves every guest.
        started.browser_links = servers.browser_links(&room);
        let links = servers.network_links(&room);
        if let Some(first) = started.browser_links.first().or(links.first()) {
            started.link = Some(first.clone());
        }
        if !links.is_empty() {
            started.links = links;
        }
        // No address on a network (or the setting): only this computer can use it.
        started.link_reach = if servers.network_rooms_urls.is_empty() {
            "this computer"
        } else {
            "network"
        };
    }
    Ok(started)
}

/// What a link would do, for the UI to ask about before it ends a call or joins a server the
/// user has not set up.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkCheck {
    pub room: String,
    /// The room server's `host:port`.
    pub host: String,
    /// The link names a server other than the configured (or built-in) one.
    pub foreign: bool,
}

#[tauri::command]
pub fn link_check(state: State<'_, AppState>, link: String) -> Result<LinkCheck, AppError> {
    let link = call::parse_link(&link)?;
    let ours = call::rooms_ws_url(&state.servers.rooms_url);
    let server = link.server.unwrap_or_else(|| ours.clone());
    Ok(LinkCheck {
        room: link.room,
        host: liveloop_proto::link::server_host(&server)
            .unwrap_or(&server)
            .to_owned(),
        foreign: !liveloop_proto::link::same_server(&server, &ours),
    })
}

/// Joins a room by link (or by name on our room server).
#[tauri::command]
pub async fn call_join(
    app: AppHandle,
    state: State<'_, AppState>,
    link: String,
) -> Result<CallStarted, AppError> {
    let link = call::parse_link(&link)?;
    let ws_url = link
        .server
        .unwrap_or_else(|| call::rooms_ws_url(&state.servers.rooms_url));
    let room = link.room;
    start(app, &state, Start::Room { ws_url, room }).await
}

/// Creates a new room on our room server and joins it.
#[tauri::command]
pub async fn call_create(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<CallStarted, AppError> {
    let ws_url = call::rooms_ws_url(&state.servers.rooms_url);
    let room = call::new_room_name();
    start(app, &state, Start::Room { ws_url, room }).await
}

/// A test call: your own video and voice through the real encode → network → decode path
/// and back, from an echo peer in this app.
#[tauri::command]
pub async fn call_test(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<CallStarted, AppError> {
    let ws_url = call::rooms_ws_url(&state.servers.rooms_url);
    start(app, &state, Start::Test { ws_url }).await
}

/// Starts random chat on the matchmaking server.
#[tauri::command]
pub async fn call_random(
    app: AppHandle,
    state: State<'_, AppState>,
) -> Result<CallStarted, AppError> {
    // On the built-in servers, the matchmaker the apps on this network share.
    let matchmaker = state
        .nearby
        .matchmaker(state.servers.matchmaking_url.clone());
    let image = avatar(&state);
    start(app, &state, Start::Random { matchmaker, image }).await
}

#[tauri::command]
pub async fn call_mute(state: State<'_, AppState>, muted: bool) -> Result<(), AppError> {
    state.calls.send(Command::SetMuted(muted)).await
}

/// The microphone's processing, from the in-call audio menu: remembered in the settings,
/// and applied to the call in progress if there is one.
#[tauri::command]
pub async fn call_audio_processing(
    state: State<'_, AppState>,
    echo_cancellation: bool,
    noise_suppression: bool,
    auto_gain: bool,
) -> Result<Settings, AppError> {
    let settings = {
        let mut s = crate::lock(&state.settings);
        s.echo_cancellation = echo_cancellation;
        s.noise_suppression = noise_suppression;
        s.auto_gain = auto_gain;
        s.save(&state.settings_path)?;
        s.clone()
    };
    match state
        .calls
        .send(Command::SetAudioProcessing(settings.audio_processing()))
        .await
    {
        Ok(()) | Err(AppError::NoCall) => Ok(settings),
        Err(e) => Err(e),
    }
}

#[tauri::command]
pub async fn call_camera(state: State<'_, AppState>, on: bool) -> Result<(), AppError> {
    state.calls.send(Command::SetCamera(on)).await
}

#[tauri::command]
pub async fn call_chat(state: State<'_, AppState>, text: String) -> Result<(), AppError> {
    state.calls.send(Command::SendChat(text)).await
}

/// Random chat: a new partner.
#[tauri::command]
pub async fn call_next(state: State<'_, AppState>) -> Result<(), AppError> {
    state.calls.send(Command::Next).await
}

/// Random chat: end the call and stop searching.
#[tauri::command]
pub async fn call_stop(state: State<'_, AppState>) -> Result<(), AppError> {
    state.calls.send(Command::Stop).await
}

/// Something that can be shared, as the picker shows it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScreenChoice {
    pub id: String,
    pub name: String,
    /// `monitor` or `window`.
    pub kind: &'static str,
    /// A small picture of it (JPEG data URL), when it could be captured.
    pub thumbnail: Option<String>,
}

/// Screens, then windows, with thumbnails (for the share picker).
#[tauri::command]
pub async fn screen_sources() -> Result<Vec<ScreenChoice>, AppError> {
    tauri::async_runtime::spawn_blocking(|| {
        use liveloop_media::VideoSource as _;
        use liveloop_media::device::screen::{ScreenSource, list};
        let sources = list().map_err(|e| AppError::Call(format!("cannot list screens: {e}")))?;
        Ok(sources
            .into_iter()
            .map(|s| {
                let thumbnail = ScreenSource::open(Some(&s.id), Some((320, 180)), 1.0)
                    .and_then(|mut src| src.next_frame(0))
                    .ok()
                    .and_then(|f| crate::preview::jpeg_data_url(&f).ok());
                ScreenChoice {
                    kind: if s.id.starts_with("window:") {
                        "window"
                    } else {
                        "monitor"
                    },
                    id: s.id,
                    name: s.name,
                    thumbnail,
                }
            })
            .collect())
    })
    .await
    .map_err(|e| AppError::Call(e.to_string()))?
}

/// Shares a screen or window (an id from `screen_sources`) in the call.
#[tauri::command]
pub async fn call_share_screen(state: State<'_, AppState>, id: String) -> Result<(), AppError> {
    let source = tauri::async_runtime::spawn_blocking(move || {
        liveloop_media::device::screen::ScreenSource::open_for_sharing(Some(&id))
    })
    .await
    .map_err(|e| AppError::Call(e.to_string()))?
    .map_err(|e| AppError::Call(format!("cannot share it: {e}")))?;
    state
        .calls
        .send(Command::ShareScreen(Box::new(source)))
        .await
}

/// Stops sharing.
#[tauri::command]
pub async fn call_stop_share(state: State<'_, AppState>) -> Result<(), AppError> {
    state.calls.send(Command::StopScreenShare).await
}

/// Starts recording the call into the recording folder from Settings (default:
/// `Videos/LiveLoop` in the home folder); returns the file's path.
#[tauri::command]
pub async fn call_record_start(state: State<'_, AppState>) -> Result<String, AppError> {
    let folder = recording_folder(&crate::lock(&state.settings).recording_dir);
    state.calls.start_recording(&folder).await
}

/// Stops the recording; says where the file is.
#[tauri::command]
pub fn call_record_stop(state: State<'_, AppState>) -> Result<call::RecordingSaved, AppError> {
    state.calls.stop_recording()
}

fn recording_folder(setting: &str) -> std::path::PathBuf {
    if !setting.trim().is_empty() {
        return std::path::PathBuf::from(setting.trim());
    }
    let home = std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join("Videos").join("LiveLoop")
}

/// Hang up and leave (the UI goes back to Home).
#[tauri::command]
pub async fn call_leave(state: State<'_, AppState>) -> Result<(), AppError> {
    state.calls.leave().await;
    Ok(())
}

/// Where the UI fetches video frames (a loopback WebSocket with this launch's token).
#[tauri::command]
pub fn video_endpoint(state: State<'_, AppState>) -> String {
    state.video.url()
}

/// One device as the pickers show it.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

/// The devices the pickers offer; a kind that cannot be listed comes with a note instead.
#[derive(Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Devices {
    pub cameras: Vec<Device>,
    pub microphones: Vec<Device>,
    pub speakers: Vec<Device>,
    pub notes: Vec<String>,
}

#[tauri::command]
pub async fn list_devices() -> Devices {
    use liveloop_media::device::{audio, camera};
    tauri::async_runtime::spawn_blocking(|| {
        let mut notes = Vec::new();
        let mut take = |kind: &str, r: Result<Vec<liveloop_media::DeviceInfo>, _>| -> Vec<Device> {
            match r {
                Ok(list) => list
                    .into_iter()
                    .map(|d| Device {
                        id: d.id,
                        name: d.name,
                        is_default: d.is_default,
                    })
                    .collect(),
                Err(e) => {
                    let e: liveloop_media::MediaError = e;
                    notes.push(format!("{kind}: {e}"));
                    Vec::new()
                }
            }
        };
        let cameras = take("Cameras", camera::list());
        let microphones = take("Microphones", audio::list_microphones());
        let speakers = take("Speakers", audio::list_speakers());
        Devices {
            cameras,
            microphones,
            speakers,
            notes,
        }
    })
    .await
    .unwrap_or(Devices {
        cameras: Vec::new(),
        microphones: Vec::new(),
        speakers: Vec::new(),
        notes: vec!["the device list could not be read".into()],
    })
}

/// Starts the pre-join check (camera picture on the `preview` tile, `level` events); returns
/// notes about devices that could not open.
#[tauri::command]
pub fn preview_start(app: AppHandle, state: State<'_, AppState>) -> Vec<String> {
    state
        .preview
        .start(app, state.video.clone(), &devices(&state))
}

#[tauri::command]
pub fn preview_stop(state: State<'_, AppState>) {
    state.preview.stop();
}

/// Takes your picture from the preview (a 96x96 JPEG data URL).
#[tauri::command]
pub fn preview_snapshot(state: State<'_, AppState>) -> Result<String, AppError> {
    state.preview.snapshot()
}

/// Plays a test sound on the chosen speaker.
#[tauri::command]
pub async fn speaker_test(state: State<'_, AppState>) -> Result<(), AppError> {
    let speaker = crate::lock(&state.settings).speaker.clone();
    tauri::async_runtime::spawn_blocking(move || crate::preview::speaker_test(&speaker))
        .await
        .map_err(|e| AppError::Call(e.to_string()))?
}
