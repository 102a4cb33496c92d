//! A native peer for interop tests: `liveloop-cli` in its own process, its JSON-line events
//! readable as they come and all together at the end.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;
use tokio::sync::mpsc;

use crate::{ChildGuard, workspace_bin};

/// A running `liveloop-cli`.
#[derive(Debug)]
pub struct CliPeer {
    pub name: String,
    pub events: mpsc::UnboundedReceiver<Value>,
    all: Arc<Mutex<Vec<Value>>>,
    child: ChildGuard,
}

impl CliPeer {
    /// Starts `liveloop-cli <args>`; its stderr goes to `<artifacts>/<name>.stderr.log`.
    ///
    /// # Errors
    /// When the binary is missing.
    pub fn spawn(name: &str, args: &[&str]) -> Result<Self> {
        let mut cmd = Command::new(workspace_bin("liveloop-cli")?);
        cmd.args(args);
        Self::spawn_command(name, cmd)
    }

    /// Starts `cmd` (a `liveloop-cli` command line, perhaps behind `ip netns exec`).
    ///
    /// # Errors
    /// When it cannot start.
    pub fn spawn_command(name: &str, mut cmd: Command) -> Result<Self> {
        let log =
            std::fs::File::create(crate::artifacts_dir()?.join(format!("{name}.stderr.log")))?;
        cmd.stdout(Stdio::piped()).stderr(Stdio::from(log));
        if !cmd.get_envs().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", "error");
        }
        let mut child = ChildGuard::spawn(name, &mut cmd)?;
        let stdout = child.child.stdout.take().context("no stdout")?;
        let (tx, events) = mpsc::unbounded_channel();
        let all: Arc<Mutex<Vec<Value>>> = Arc::default();
        let keep = all.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    crate::lock(&keep).push(v.clone());
                    let _ = tx.send(v);
                }
            }
        });
        Ok(Self {
            name: name.to_owned(),
            events,
            all,
            child,
        })
    }

    /// `liveloop-cli join --server <ws> --room <room> --id <id> --name <id> <extra…>`, named
    /// `id`; its stderr log is `<room>-<id>.stderr.log`.
    ///
    /// # Panics
    /// When the binary is missing.
    #[must_use]
    pub fn join(ws: &str, room: &str, id: &str, extra: &[&str]) -> Self {
        let mut args = vec![
            "join", "--server", ws, "--room", room, "--id", id, "--name", id,
        ];
        args.extend_from_slice(extra);
        let mut peer =
            Self::spawn(&format!("{room}-{id}"), &args).unwrap_or_else(|e| panic!("{e:#}"));
        // Named as the room knows it.
        id.clone_into(&mut peer.name);
        peer
    }

    /// Waits for an event matching `pred`.
    pub async fn next(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl FnMut(&Value) -> bool,
    ) -> Value {
        crate::next_event(
            &mut self.events,
            &format!("{}: {what}", self.name),
            timeout,
            pred,
        )
        .await
    }

    /// Kills the process at once (SIGKILL), as a crash or the OOM killer would.
    /// The process id.
    #[must_use]
    pub fn pid(&self) -> u32 {
        self.child.child.id()
    }

    pub fn kill(&mut self) {
        let _ = self.child.child.kill();
        let _ = self.child.child.wait();
    }

    /// Waits (blocking, polling) until an event matching `pred` has been printed, at any time
    /// since the start, and returns it.
    ///
    /// # Panics
    /// After 30 s without one, naming `what`.
    pub fn seen(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        crate::wait_for(
            &format!("{}: {what}", self.name),
            Duration::from_secs(30),
            || crate::lock(&self.all).iter().find(|v| pred(v)).cloned(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// How many events so far match `pred`.
    pub fn count(&self, pred: impl Fn(&Value) -> bool) -> usize {
        crate::lock(&self.all).iter().filter(|v| pred(v)).count()
    }

    /// Every event so far.
    #[must_use]
    pub fn all(&self) -> Vec<Value> {
        crate::lock(&self.all).clone()
    }

    /// Waits for the process to end by itself (`--seconds`) and returns every event; the last
    /// is the summary.
    ///
    /// # Errors
    /// When it does not end within `timeout` or fails.
    pub async fn finish(mut self, timeout: Duration) -> Result<Vec<Value>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.child.try_wait()? {
                break status;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("{} did not end within {timeout:?}", self.name);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // Let the reader take the last lines.
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !status.success() {
            bail!("{} failed ({status}); see its stderr log", self.name);
        }
        Ok(self.all())
    }
}
