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
    open(label, None, env, settings, args)
}

/// [`open_app`] on another "computer": tauri-driver, WebKitWebDriver and the app run in the
/// network namespace `netns` (with a D-Bus session of their own there), reached from here
/// through [`forward_from_netns`]. The display is shared: X11's socket is a file.
///
/// # Errors
/// No display, tools missing, or the session cannot start.
pub fn open_app_in_netns(
    label: &str,
    netns: &str,
    env: &[(&str, &str)],
    settings: Option<&serde_json::Value>,
) -> Result<(ChildGuard, Session, PathBuf)> {
    open(label, Some(netns), env, settings, &[])
}

fn open(
    label: &str,
    netns: Option<&str>,
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
    let mut cmd = match netns {
        Some(ns) => {
            let mut cmd = Command::new("ip");
            cmd.args(["netns", "exec", ns, "dbus-run-session", "--"])
                .arg(driver);
            cmd
        }
        None => Command::new(driver),
    };
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
    wait_for(
        "tauri-driver to listen",
        Duration::from_secs(20),
        || match netns {
            Some(ns) => connects_in_netns(ns, port).then_some(()),
            None => std::net::TcpStream::connect(("127.0.0.1", port))
                .ok()
                .map(drop),
        },
    )?;
    // tauri-driver listens on loopback only: there, its loopback is the namespace's.
    let port = match netns {
        Some(ns) => forward_from_netns(ns, port)?,
        None => port,
    };
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

/// Runs `f` on a thread that has entered the network namespace `netns` (sockets it makes
/// belong there, and stay there).
fn in_netns<T: Send + 'static>(
    netns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> std::thread::JoinHandle<Result<T>> {
    let path = format!("/run/netns/{netns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).with_context(|| format!("cannot open {path}"))?;
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("cannot enter {path}"))?;
        Ok(f())
    })
}

/// Whether something listens on `port` on the loopback of network namespace `netns`.
fn connects_in_netns(netns: &str, port: u16) -> bool {
    in_netns(netns, move || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    })
    .join()
    .ok()
    .and_then(Result::ok)
    .unwrap_or(false)
}

/// Makes `port` on the loopback of network namespace `netns` reachable on this namespace's
/// loopback, at the port returned, for as long as the test process runs: each connection is
/// accepted here and connected there, bytes copied both ways.
///
/// # Errors
/// When no port can be had here.
pub fn forward_from_netns(netns: &str, port: u16) -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let local = listener.local_addr()?.port();
    // The listener was made here; the thread that accepts then connects there.
    drop(in_netns(netns, move || {
        for conn in listener.incoming() {
            let Ok(near) = conn else { continue };
            let Ok(far) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let (Ok(near2), Ok(far2)) = (near.try_clone(), far.try_clone()) else {
                continue;
            };
            let pipe = |mut from: std::net::TcpStream, mut to: std::net::TcpStream| {
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            };
            pipe(near, far);
            pipe(far2, near2);
        }
    }));
    Ok(local)
}
