//! A real browser peer: Debian's Chromium driven by `tests/js/browser.mjs` (playwright-core),
//! one request per JSON line. See that file for the operations.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::ChildGuard;

type Waiters = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// A headless Chromium (or Firefox) with fake camera and microphone, and the pages it has open.
pub struct Browser {
    stdin: Mutex<ChildStdin>,
    waiters: Waiters,
    next: AtomicU64,
    // Dropped last: kills node and Chromium.
    child: ChildGuard,
}

/// How to start Chromium.
#[derive(Debug, Clone, Default)]
pub struct BrowserOptions {
    /// A WAV the microphone plays in a loop.
    pub fake_audio: Option<PathBuf>,
    /// A Y4M the camera plays in a loop.
    pub fake_video: Option<PathBuf>,
    /// The Chromium executable (a wrapper that enters a network namespace, say).
    pub chromium: Option<PathBuf>,
    /// Let evaluated code ignore the page's Content-Security-Policy.
    pub bypass_csp: bool,
    /// More Chromium flags.
    pub extra_args: Vec<String>,
    /// Debian's Firefox ESR (puppeteer-core over WebDriver BiDi) instead of Chromium.
    pub firefox: bool,
    /// Run the driver and its browser inside this network namespace.
    pub netns: Option<String>,
    /// `host:port` of a plain-HTTP page that may still use the camera (Firefox only).
    pub insecure_origin: Option<String>,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").finish_non_exhaustive()
    }
}

/// The workspace's `tests/js` folder (holding `node_modules`, installed by `./dev test`).
#[must_use]
pub fn js_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("js")
}

impl Browser {
    /// Starts Chromium. `fake_audio` is a WAV its microphone plays in a loop; the page console
    /// goes to `log`.
    ///
    /// # Errors
    /// When node, playwright-core or Chromium is missing.
    pub fn start(fake_audio: Option<&Path>, log: &Path) -> Result<Self> {
        Self::start_with(
            &BrowserOptions {
                fake_audio: fake_audio.map(Path::to_owned),
                ..BrowserOptions::default()
            },
            log,
        )
    }

    /// Starts Chromium with more options (see [`BrowserOptions`]).
    ///
    /// # Errors
    /// When node, playwright-core or Chromium is missing.
    pub fn start_with(opts: &BrowserOptions, log: &Path) -> Result<Self> {
        let fake_audio = opts.fake_audio.as_deref();
        let dir = js_dir();
        if !dir.join("node_modules/playwright-core").is_dir() {
            bail!("playwright-core is missing: run `./dev test` (it runs npm ci in tests/js)");
        }
        if opts.firefox && !dir.join("node_modules/puppeteer-core").is_dir() {
            bail!("puppeteer-core is missing: run `./dev test` (it runs npm ci in tests/js)");
        }
        let mut cmd = match &opts.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "node"]);
                c
            }
            None => Command::new("node"),
        };
        if opts.firefox {
            cmd.env("BROWSER", "firefox");
        }
        if let Some(origin) = &opts.insecure_origin {
            cmd.env("INSECURE_ORIGIN", origin);
        }
        cmd.arg(dir.join("browser.mjs"))
            .current_dir(&dir)
            .env("BROWSER_LOG", log)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        if let Some(wav) = fake_audio {
            cmd.env("FAKE_AUDIO", wav);
        }
        if let Some(y4m) = &opts.fake_video {
            cmd.env("FAKE_VIDEO", y4m);
        }
        if let Some(exe) = &opts.chromium {
            cmd.env("CHROMIUM", exe);
        }
        if opts.bypass_csp {
            cmd.env("BYPASS_CSP", "1");
        }
        if !opts.extra_args.is_empty() {
            cmd.env("EXTRA_ARGS", serde_json::to_string(&opts.extra_args)?);
        }
        let mut child = ChildGuard::spawn("chromium (playwright)", &mut cmd)?;
        let stdin = child.child.stdin.take().context("no stdin")?;
        let stdout = child.child.stdout.take().context("no stdout")?;
        let waiters: Waiters = Arc::default();
        let w = waiters.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let Ok(reply) = serde_json::from_str::<Value>(&line) else {
                    eprintln!("browser: {line}");
                    continue;
                };
                let id = reply["id"].as_u64().unwrap_or_default();
                if let Some(tx) = crate::lock(&w).remove(&id) {
                    let _ = tx.send(reply);
                }
            }
            // The driver is gone: fail everyone still waiting.
            crate::lock(&w).clear();
        });
        Ok(Self {
            stdin: Mutex::new(stdin),
            waiters,
            next: AtomicU64::new(1),
            child,
        })
    }

    /// The driver's process id: Chromium's processes are its descendants.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    async fn request(&self, mut req: Value, timeout: Duration) -> Result<Value> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        req["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        crate::lock(&self.waiters).insert(id, tx);
        {
            let mut stdin = crate::lock(&self.stdin);
            writeln!(stdin, "{req}")?;
            stdin.flush()?;
        }
        let reply = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| anyhow!("the browser did not answer within {timeout:?}: {req}"))?
            .map_err(|_| anyhow!("the browser driver exited during {req}"))?;
        if reply["ok"] == true {
            Ok(reply["value"].clone())
        } else {
            Err(anyhow!("browser: {} (during {req})", reply["error"]))
        }
    }

    /// Runs `body` (an async function body) in `page`, allowing it `timeout`: for answers that
    /// take long to make or to carry (many megabytes of samples).
    ///
    /// # Errors
    /// When it throws or takes longer.
    pub async fn request_long(&self, page: &str, body: &str, timeout: Duration) -> Result<Value> {
        self.request(json!({"op": "eval", "page": page, "expr": body}), timeout)
            .await
    }

    /// Opens a new page (tab) at `url`, named `page`.
    ///
    /// # Errors
    /// When the page does not load.
    pub async fn open(&self, page: &str, url: &str) -> Result<()> {
        self.request(
            json!({"op": "open", "page": page, "url": url}),
            Duration::from_secs(30),
        )
        .await
        .map(drop)
    }

    /// Runs `body` (the body of an async function) in the page and returns its JSON result.
    ///
    /// # Errors
    /// When it throws.
    pub async fn eval(&self, page: &str, body: &str) -> Result<Value> {
        self.request(
            json!({"op": "eval", "page": page, "expr": body}),
            Duration::from_secs(30),
        )
        .await
    }

    /// Runs `body` every 100 ms until it returns something truthy, and returns that.
    ///
    /// # Errors
    /// When `timeout` passes first.
    pub async fn wait(&self, page: &str, body: &str, timeout: Duration) -> Result<Value> {
        let ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
        self.request(
            json!({"op": "wait", "page": page, "expr": body, "timeoutMs": ms}),
            timeout + Duration::from_secs(10),
        )
        .await
    }

    /// Runs `body`, which makes the page download a file, and saves that file into `dir`.
    /// Returns `{path, size, value}`.
    ///
    /// # Errors
    /// When no download starts.
    pub async fn download(&self, page: &str, body: &str, dir: &Path) -> Result<Value> {
        self.request(
            json!({"op": "download", "page": page, "expr": body, "dir": dir}),
            Duration::from_secs(30),
        )
        .await
    }

    /// Saves a screenshot of the page.
    ///
    /// # Errors
    /// When the page is gone.
    pub async fn screenshot(&self, page: &str, path: &Path) -> Result<()> {
        self.request(
            json!({"op": "screenshot", "page": page, "path": path}),
            Duration::from_secs(30),
        )
        .await
        .map(drop)
    }
}
