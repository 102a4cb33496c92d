//! The app under test: tauri-driver with WebKitWebDriver behind it, and a session launching
//! the `liveloop` binary with its own configuration folder and environment.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};

use crate::webdriver::Session;
use crate::{ChildGuard, find_program, free_port, temp_dir, wait_for, workspace_bin};

/// Starts tauri-driver and a session on the app. `env` reaches the app (tauri-driver passes
/// its environment on); `settings` (JSON) is written as the app's settings.json first.
///
/// # Errors
/// No display, tools missing, or the session cannot start.
pub fn open_app(
    label: &str,
    env: &[(&str, &str)],
    settings: Option<&serde_json::Value>,
) -> Result<(ChildGuard, Session, PathBuf)> {
    open_app_with_args(label, env, settings, &[])
}

/// [`open_app`] with command-line arguments for the app.
///
/// # Errors
/// No display, tools missing, or the session cannot start.
pub fn open_app_with_args(
    label: &str,
    env: &[(&str, &str)],
    settings: Option<&serde_json::Value>,
    args: &[&str],
) -> Result<(ChildGuard, Session, PathBuf)> {
    ensure!(
        std::env::var_os("DISPLAY").is_some(),
        "no DISPLAY: run the UI tests under Xvfb (the README's test command does)"
    );
    let app = workspace_bin("liveloop")?;
    let tools = std::env::var_os("LIVELOOP_TOOLS")
        .map(|d| PathBuf::from(d).join("bin"))
        .into_iter()
        .collect::<Vec<_>>();
    let driver = find_program("TAURI_DRIVER", "tauri-driver", &tools)
        .context("tauri-driver not found (the test command installs it)")?;
    let native = find_program("WEBKIT_WEBDRIVER", "WebKitWebDriver", &[])
        .context("WebKitWebDriver not found (apt package webkit2gtk-driver)")?;
    let config_dir = temp_dir(label)?;
    if let Some(settings) = settings {
        std::fs::write(config_dir.join("settings.json"), settings.to_string())?;
    }
    let port = free_port()?;
    let native_port = free_port()?;
    let mut cmd = Command::new(driver);
    cmd.args([
        "--port",
        &port.to_string(),
        "--native-port",
        &native_port.to_string(),
    ])
    .arg("--native-driver")
    .arg(native)
    .env("LIVELOOP_CONFIG_DIR", &config_dir)
    .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let guard = ChildGuard::spawn("tauri-driver", &mut cmd)?;
    wait_for("tauri-driver to listen", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })?;
    // Under load WebKitWebDriver can drop the first session request while it starts up.
    let mut attempt = 0;
    let session = loop {
        attempt += 1;
        match Session::start_with_args(port, &app, args) {
            Ok(s) => break s,
            Err(e) if attempt < 3 => {
                eprintln!("new session failed ({e:#}); retrying");
                std::thread::sleep(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    };
    Ok((guard, session, config_dir))
}
