//! The Tauri shell: it starts the window, the embedded signaling services when no server is
//! configured, and translates UI commands to domain calls. It holds no call logic.

pub mod call;
mod commands;
mod error;
mod settings;
pub mod video;

use std::sync::Mutex;

use anyhow::Context;
use tauri::Manager;

pub use error::AppError;
pub use settings::Settings;

/// Where the app's servers are: configured in Settings, or embedded on loopback.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Servers {
    pub matchmaking_url: String,
    pub rooms_url: String,
    pub embedded: bool,
}

/// State shared by the commands.
#[derive(Debug)]
pub struct AppState {
    pub settings_path: std::path::PathBuf,
    pub settings: Mutex<Settings>,
    pub servers: Servers,
    pub calls: call::Calls,
    pub video: video::VideoHub,
    /// Keeps the embedded services alive for the app's lifetime.
    _embedded: Option<liveloop_server::embedded::Embedded>,
}

/// Builds and runs the app until its last window closes.
///
/// # Errors
/// When the window system or the webview cannot start.
pub fn run() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    tauri::Builder::default()
        .invoke_handler(tauri::generate_handler![
            commands::app_status,
            commands::get_settings,
            commands::save_settings,
            commands::call_join,
            commands::call_create,
            commands::call_random,
            commands::call_mute,
            commands::call_camera,
            commands::call_chat,
            commands::call_next,
            commands::call_stop,
            commands::call_leave,
            commands::video_endpoint,
        ])
        .setup(|app| {
            let state = init_state(app.handle())?;
            app.manage(state);
            Ok(())
        })
        .run(tauri::generate_context!("../tauri.conf.json"))
        .context("the app window could not run")
}

fn init_state(app: &tauri::AppHandle) -> anyhow::Result<AppState> {
    let dir = match std::env::var_os("LIVELOOP_CONFIG_DIR") {
        Some(dir) => dir.into(),
        None => app
            .path()
            .app_config_dir()
            .context("no configuration folder on this system")?,
    };
    let settings_path = dir.join("settings.json");
    let settings = Settings::load(&settings_path);
    let (servers, embedded) = if settings.matchmaking_url.is_empty()
        || settings.rooms_url.is_empty()
    {
        let embedded = tauri::async_runtime::block_on(liveloop_server::embedded::start_loopback())
            .context("could not start the embedded signaling services on loopback")?;
        let servers = Servers {
            matchmaking_url: pick(&settings.matchmaking_url, embedded.matchmaking_url()),
            rooms_url: pick(&settings.rooms_url, embedded.rooms_url()),
            embedded: true,
        };
        (servers, Some(embedded))
    } else {
        let servers = Servers {
            matchmaking_url: settings.matchmaking_url.clone(),
            rooms_url: settings.rooms_url.clone(),
            embedded: false,
        };
        (servers, None)
    };
    tracing::info!(?servers, "signaling servers");
    let video = tauri::async_runtime::block_on(video::VideoHub::start())
        .context("could not start the video server on loopback")?;
    Ok(AppState {
        settings_path,
        settings: Mutex::new(settings),
        servers,
        calls: call::Calls::default(),
        video,
        _embedded: embedded,
    })
}

fn pick(configured: &str, embedded: String) -> String {
    if configured.is_empty() {
        embedded
    } else {
        configured.to_owned()
    }
}

/// Locks a mutex, recovering from poisoning: settings stay a valid value at every step.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
