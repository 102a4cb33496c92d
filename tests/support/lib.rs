//! Helpers for LiveLoop's end-to-end tests: locating built binaries, child processes that
//! die with the test, free ports, and a small W3C WebDriver client for the app window.

// This crate is test code: indexing serde_json values (which yields Null, never panics) and
// failing loudly are what it is for.
#![allow(
    clippy::indexing_slicing,
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used
)]

pub mod app;
pub mod browser;
pub mod cli_peer;
pub mod netlab;
pub mod rooms_client;
pub mod sio_client;
pub mod webdriver;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// Locks a mutex, taking the data even if a panicking thread poisoned it (test helpers only
/// push and read).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The cargo target profile folder the running test was built into (e.g. `target/debug`).
///
/// # Errors
/// When the test executable's path is unusual.
pub fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Tests live in target/<profile>/deps/<test>-<hash>, binaries in target/<profile>/<bin>.
    let dir = exe.parent().context("executable has no folder")?;
    Ok(if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    }
    .to_path_buf())
}

/// A workspace binary built beside the tests (the test command builds them first).
///
/// # Errors
/// When it has not been built.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let path = profile_dir()?.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        bail!(
            "{} is missing: build it first (cargo build --workspace --bins)",
            path.display()
        );
    }
    Ok(path)
}

/// Where tests put screenshots and other artifacts: `$LIVELOOP_ARTIFACTS` or
/// `<target>/e2e-artifacts`.
///
/// # Errors
/// When the folder cannot be created.
pub fn artifacts_dir() -> Result<PathBuf> {
    let dir = match std::env::var_os("LIVELOOP_ARTIFACTS") {
        Some(dir) => PathBuf::from(dir),
        None => profile_dir()?.join("..").join("e2e-artifacts"),
    };
    std::fs::create_dir_all(&dir)?;
    Ok(dir.canonicalize()?)
}

/// A fresh, empty temporary folder for one test.
///
/// # Errors
/// When it cannot be created.
pub fn temp_dir(label: &str) -> Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let dir = std::env::temp_dir().join(format!("liveloop-{label}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// This process's resident memory in bytes (`VmRSS`; nextest runs each test in a process of
/// its own, so it is the test's).
///
/// # Errors
/// Where `/proc/self/status` is missing or unreadable (not Linux).
pub fn rss_bytes() -> Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kib * 1024)
}

/// A TCP port that was free a moment ago on 127.0.0.1.
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A child process killed (with its process group) when dropped.
#[derive(Debug)]
pub struct ChildGuard {
    pub child: Child,
    pub name: String,
}

impl ChildGuard {
    /// Spawns `cmd` in its own process group.
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn(name: &str, cmd: &mut Command) -> Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::process::CommandExt;
            cmd.process_group(0);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Self {
            child,
            name: name.to_owned(),
        })
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        #[cfg(unix)]
        {
            use nix::sys::signal::{Signal, killpg};
            use nix::unistd::Pid;
            // The child leads its own process group (see `spawn`); signal the whole group so
            // grandchildren (tauri-driver's WebKitWebDriver and the app) go too. Signals are
            // sent by syscall: procps `kill -TERM -<pgid>` was seen to call kill(-1) here.
            // The group id cannot be reused before the leader is reaped (by `wait` below).
            let group = i32::try_from(self.child.id())
                .ok()
                .filter(|g| *g > 1)
                .map(Pid::from_raw);
            if let Some(group) = group {
                let _ = killpg(group, Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline && !is_zombie_or_gone(self.child.id()) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = killpg(group, Signal::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// True when `pid` has exited (a zombie awaiting `wait`) or does not exist.
#[cfg(unix)]
fn is_zombie_or_gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
        .unwrap_or(true)
}

/// Polls `f` every 50 ms until it returns `Some` or `timeout` passes.
///
/// # Errors
/// When time runs out; the message says what was awaited.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Finds a program: `$<env>` if set, else the first match on `PATH` or in `extra` folders.
#[must_use]
pub fn find_program(env: &str, name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(extra.iter().cloned())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A channel of events the end-to-end tests wait on.
pub trait EventSource<T> {
    fn recv_event(&mut self) -> impl std::future::Future<Output = Option<T>> + Send;
}

impl<T: Send> EventSource<T> for tokio::sync::mpsc::Receiver<T> {
    fn recv_event(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

impl<T: Send> EventSource<T> for tokio::sync::mpsc::UnboundedReceiver<T> {
    fn recv_event(&mut self) -> impl std::future::Future<Output = Option<T>> + Send {
        self.recv()
    }
}

/// Skips events until one satisfies `pred` and returns it; panics naming `what` when `timeout`
/// passes or the stream ends first.
pub async fn next_event<T>(
    rx: &mut impl EventSource<T>,
    what: &str,
    timeout: Duration,
    mut pred: impl FnMut(&T) -> bool,
) -> T {
    let found = tokio::time::timeout(timeout, async {
        loop {
            match rx.recv_event().await {
                Some(ev) if pred(&ev) => return ev,
                Some(_) => {}
                None => panic!("event stream ended while waiting for {what}"),
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// Both signaling services on loopback with the room service on `rooms_port` (0: any), retrying
/// while a previous instance still holds the port (a restart in a test).
///
/// # Panics
/// When the port stays taken for 5 s.
pub async fn start_servers_on(rooms_port: u16) -> liveloop_server::embedded::Embedded {
    for _ in 0..100 {
        if let Ok(e) = liveloop_server::embedded::start(
            std::net::Ipv4Addr::LOCALHOST.into(),
            (0, rooms_port),
            liveloop_server::matchmaking::MatchmakingConfig::default(),
            liveloop_server::rooms::RoomsConfig::default(),
        )
        .await
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    #[allow(clippy::panic)] // test support: failing loudly is the point
    {
        panic!("could not (re)start the servers on port {rooms_port}");
    }
}
