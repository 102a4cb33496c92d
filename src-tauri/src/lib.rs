//! The Tauri shell: it starts the window, the embedded signaling services when no server is
//! configured, and translates UI commands to domain calls. It holds no call logic.

pub mod call;
mod commands;
mod devices;
mod error;
mod names;
pub mod nearby;
pub mod preview;
mod settings;
pub mod video;

use std::sync::Mutex;

use anyhow::Context;
use tauri::{Emitter, Manager};
use tauri_plugin_deep_link::DeepLinkExt;

pub use error::AppError;
pub use settings::Settings;

/// Where the app's servers are: configured in Settings, or built in (on the network, or on
/// this computer only).
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Servers {
    /// What this app connects to (loopback for the built-in ones).
    pub matchmaking_url: String,
    pub rooms_url: String,
    pub embedded: bool,
    /// Who can use a link to the built-in servers: `network`, `this computer`; `server` for
    /// configured ones.
    pub reach: &'static str,
    /// The built-in room service's base URLs for other computers, best first (empty: this
    /// computer only, or configured servers).
    pub network_rooms_urls: Vec<String>,
    /// The same over HTTPS, for browser guests (whose camera needs a secure origin).
    pub network_rooms_https_urls: Vec<String>,
}

impl Servers {
    /// The links to `room` on the built-in room service that other computers can open, best
    /// first (empty when there are none).
    #[must_use]
    pub fn network_links(&self, room: &str) -> Vec<String> {
        self.network_rooms_urls
            .iter()
            .map(|base| liveloop_proto::link::room_link_on(base, room))
            .collect()
    }

    /// The HTTPS links to `room` for browsers on other computers, best first.
    #[must_use]
    pub fn browser_links(&self, room: &str) -> Vec<String> {
        self.network_rooms_https_urls
            .iter()
            .map(|base| liveloop_proto::link::room_link_on(base, room))
            .collect()
    }
}

/// State shared by the commands.
#[derive(Debug)]
pub struct AppState {
    pub settings_path: std::path::PathBuf,
    pub settings: Mutex<Settings>,
    pub servers: Servers,
    pub calls: call::Calls,
    pub video: video::VideoHub,
    pub preview: preview::Preview,
    /// A room link the app was started with, for the UI to open once.
    pub open_link: Mutex<Option<String>>,
    /// Apps and listed rooms on the network, and this app's announcement.
    pub nearby: nearby::Nearby,
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
        // First: a second launch (a clicked link, `liveloop --join …`) hands its arguments to
        // the running app, which opens the link, and exits.
        .plugin(tauri_plugin_single_instance::init(|app, argv, _cwd| {
            if let Some(window) = app.get_webview_window("main") {
                let _ = window.unminimize();
                let _ = window.set_focus();
            }
            if let Some(link) = link_in(argv) {
                let _ = app.emit("open-link", link);
            }
        }))
        .plugin(tauri_plugin_deep_link::init())
        .invoke_handler(tauri::generate_handler![
            commands::app_status,
            commands::get_settings,
            commands::save_settings,
            commands::call_join,
            commands::call_create,
            commands::call_random,
            commands::call_test,
            commands::call_mute,
            commands::call_audio_processing,
            commands::call_camera,
            commands::call_chat,
            commands::call_next,
            commands::call_stop,
            commands::call_leave,
            commands::call_record_start,
            commands::screen_sources,
            commands::call_share_screen,
            commands::call_stop_share,
            commands::call_record_stop,
            commands::video_endpoint,
            commands::list_devices,
            commands::preview_start,
            commands::preview_stop,
            commands::preview_snapshot,
            commands::speaker_test,
            commands::link_check,
            commands::nearby_rooms,
            commands::room_listed,
        ])
        .setup(|app| {
            let state = init_state(app.handle())?;
            app.manage(state);
            // Where the OS does not pass links as arguments (macOS), they arrive as events.
            let handle = app.handle().clone();
            app.deep_link().on_open_url(move |event| {
                if let Some(url) = event.urls().first() {
                    let _ = handle.emit("open-link", url.to_string());
                }
            });
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
    let mut settings = Settings::load(&settings_path);
    let (servers, embedded) =
        if settings.matchmaking_url.is_empty() || settings.rooms_url.is_empty() {
            let (embedded, servers) = built_in(&settings, &dir)?;
            // The ports it got are kept, so that today's links still work tomorrow.
            let ports = [embedded.matchmaking.port(), embedded.rooms.port()];
            let https = embedded.rooms_https.map_or(0, |a| a.port());
            if settings.built_in_ports != ports || settings.built_in_https_port != https {
                settings.built_in_ports = ports;
                settings.built_in_https_port = https;
                if let Err(e) = settings.save(&settings_path) {
                    tracing::warn!(error = %e, "the built-in servers' ports could not be kept");
                }
            }
            (servers, Some(embedded))
        } else {
            let servers = Servers {
                matchmaking_url: settings.matchmaking_url.clone(),
                rooms_url: settings.rooms_url.clone(),
                embedded: false,
                reach: "server",
                network_rooms_urls: Vec::new(),
                network_rooms_https_urls: Vec::new(),
            };
            (servers, None)
        };
    tracing::info!(?servers, "signaling servers");
    let nearby = match &embedded {
        Some(e) if servers.reach == "network" && settings.rooms_url.is_empty() => {
            nearby::Nearby::start(
                liveloop_server::nearby::Announcement {
                    instance: format!("liveloop-{:016x}", rand::random::<u64>()),
                    name: settings.display_name.clone(),
                    rooms_port: e.rooms.port(),
                    https_port: e.rooms_https.map_or(0, |a| a.port()),
                    matchmaking_port: e.matchmaking.port(),
                    since_ms: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis() as u64),
                    rooms: Vec::new(),
                    waiting: 0,
                },
                e.waiting.clone(),
            )
        }
        _ => nearby::Nearby::default(),
    };
    let video = tauri::async_runtime::block_on(video::VideoHub::start())
        .context("could not start the video server on loopback")?;
    Ok(AppState {
        settings_path,
        settings: Mutex::new(settings),
        servers,
        calls: call::Calls::default(),
        video,
        preview: preview::Preview::default(),
        open_link: Mutex::new(link_in(std::env::args())),
        nearby,
        _embedded: embedded,
    })
}

/// Starts the built-in servers as the settings say: on the network (or this computer only),
/// at the kept ports, the room service over HTTPS too for browser guests (with a certificate
/// made once for this computer's addresses and kept in `dir`).
fn built_in(
    settings: &Settings,
    dir: &std::path::Path,
) -> anyhow::Result<(liveloop_server::embedded::Embedded, Servers)> {
    use liveloop_server::network::Reach;
    let reach = if settings.built_in_this_computer_only {
        Reach::ThisComputer
    } else {
        Reach::Network
    };
    let https = match reach {
        Reach::ThisComputer => None,
        Reach::Network => {
            let names = liveloop_server::network::certificate_names();
            match liveloop_server::tls::kept(dir, &names)
                .and_then(|id| liveloop_server::tls::server_config(&id))
            {
                Ok(config) => Some((settings.built_in_https_port, config)),
                // Browser guests need it; the app and its native guests do not.
                Err(e) => {
                    tracing::warn!(error = %e, "no HTTPS for browser guests");
                    None
                }
            }
        }
    };
    let [mm, rooms] = settings.built_in_ports;
    let embedded = tauri::async_runtime::block_on(async {
        liveloop_server::embedded::start_built_in(liveloop_server::embedded::BuiltIn {
            reach,
            ports: (mm, rooms),
            https,
        })
    })
    .context("could not start the built-in signaling services")?;
    let (network_rooms_urls, network_rooms_https_urls) = if settings.rooms_url.is_empty() {
        (
            embedded.rooms_urls_on_network(),
            embedded.rooms_https_urls_on_network(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let servers = Servers {
        matchmaking_url: pick(&settings.matchmaking_url, embedded.matchmaking_url()),
        rooms_url: pick(&settings.rooms_url, embedded.rooms_url()),
        embedded: true,
        reach: match reach {
            Reach::Network => "network",
            Reach::ThisComputer => "this computer",
        },
        network_rooms_urls,
        network_rooms_https_urls,
    };
    Ok((embedded, servers))
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

/// The room link in a command line: `--join <link>`, `--join=<link>`, or a bare
/// `liveloop://…` argument (how the OS passes a clicked link).
pub fn link_in(args: impl IntoIterator<Item = String>) -> Option<String> {
    let mut args = args.into_iter().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--join" {
            return args.next();
        }
        if let Some(link) = arg.strip_prefix("--join=") {
            return Some(link.to_owned());
        }
        if arg.starts_with("liveloop://") {
            return Some(arg);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::link_in;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn links_on_the_command_line() {
        let l = "liveloop://join/r?server=ws://h/ws";
        assert_eq!(
            link_in(args(&["liveloop", "--join", l])).as_deref(),
            Some(l)
        );
        assert_eq!(
            link_in(args(&["liveloop", &format!("--join={l}")])).as_deref(),
            Some(l)
        );
        assert_eq!(link_in(args(&["liveloop", l])).as_deref(), Some(l));
        assert_eq!(link_in(args(&["liveloop"])), None);
        assert_eq!(link_in(args(&["liveloop", "--join"])), None);
        // The program name itself is never taken for a link.
        assert_eq!(link_in(args(&["liveloop://x"])), None);
    }
}
