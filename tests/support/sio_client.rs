//! A rust_socketio client for the matchmaking service that records every event it receives.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::FutureExt;
use rust_socketio::asynchronous::{Client, ClientBuilder};
use rust_socketio::{Event, Payload};
use serde_json::Value;
use tokio::sync::mpsc;

/// A connected socket.io client and the events it has received, in order.
pub struct SioClient {
    pub client: Client,
    events: mpsc::UnboundedReceiver<(String, Value)>,
}

impl std::fmt::Debug for SioClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SioClient").finish_non_exhaustive()
    }
}

fn first_arg(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut values) if !values.is_empty() => values.swap_remove(0),
        _ => Value::Null,
    }
}

impl SioClient {
    /// Connects to `url` (e.g. `http://127.0.0.1:3000`).
    ///
    /// # Errors
    /// When the connection fails.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_from_page(url, None).await
    }

    /// [`SioClient::connect`] as a web page at `origin` would (its `Origin` header).
    ///
    /// # Errors
    /// When the connection fails or the server refuses it.
    pub async fn connect_from_page(url: &str, origin: Option<&str>) -> Result<Self> {
        let (tx, events) = mpsc::unbounded_channel();
        let tx_err = tx.clone();
        let tx_close = tx.clone();
        // The server's CONNECT, or its CONNECT_ERROR (a refusal) with its reason.
        let (connected_tx, connected) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let connected_tx = std::sync::Arc::new(std::sync::Mutex::new(Some(connected_tx)));
        let refused_tx = connected_tx.clone();
        let mut builder = ClientBuilder::new(url).reconnect(false);
        if let Some(origin) = origin {
            builder = builder.opening_header("Origin", origin);
        }
        let client = builder
            .on_any(move |event: Event, payload: Payload, _| {
                let _ = tx.send((String::from(event), first_arg(payload)));
                async {}.boxed()
            })
            .on(Event::Error, move |payload: Payload, _| {
                // Our server's `error` event arrives here (rust_socketio maps the name to
                // Event::Error); transport errors arrive as strings.
                let payload = first_arg(payload);
                if let Some(text) = payload.as_str().filter(|t| t.contains("ConnectError"))
                    && let Some(tx) = refused_tx.lock().ok().and_then(|mut t| t.take())
                {
                    let _ = tx.send(Err(text.to_owned()));
                }
                let _ = tx_err.send(("error".to_owned(), payload));
                async {}.boxed()
            })
            .on(Event::Close, move |_, _| {
                let _ = tx_close.send(("close".to_owned(), Value::Null));
                async {}.boxed()
            })
            .on(Event::Connect, move |_, _| {
                if let Some(tx) = connected_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(Ok(()));
                }
                async {}.boxed()
            })
            .connect()
            .await
            .context("socket.io connect")?;
        // rust_socketio returns before the namespace is acknowledged; events sent earlier are
        // not part of any namespace yet. Wait for the server's CONNECT, as socket.io-client does.
        tokio::time::timeout(Duration::from_secs(5), connected)
            .await
            .context("no CONNECT from the server")??
            .map_err(|why| anyhow::anyhow!("the server refused the connection: {why}"))?;
        Ok(Self { client, events })
    }

    /// # Errors
    /// When the client is disconnected.
    pub async fn emit(&self, event: &str, payload: Value) -> Result<()> {
        self.client
            .emit(event, payload)
            .await
            .with_context(|| format!("emit {event}"))
    }

    /// The next event of any name.
    ///
    /// # Errors
    /// After 5 s.
    pub async fn next(&mut self) -> Result<(String, Value)> {
        match tokio::time::timeout(Duration::from_secs(5), self.events.recv()).await {
            Ok(Some(ev)) => Ok(ev),
            Ok(None) => bail!("client closed"),
            Err(_) => bail!("no event within 5 s"),
        }
    }

    /// Waits for the next `event`, skipping others.
    ///
    /// # Errors
    /// After 5 s.
    pub async fn expect(&mut self, event: &str) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some((name, payload))) if name == event => return Ok(payload),
                Ok(Some(_)) => {}
                Ok(None) => bail!("client closed while waiting for {event}"),
                Err(_) => bail!("no {event} within 5 s"),
            }
        }
    }

    /// Waits for an `error` event with `code`.
    ///
    /// # Errors
    /// After 5 s.
    pub async fn expect_error(&mut self, code: &str) -> Result<Value> {
        loop {
            let e = self
                .expect("error")
                .await
                .with_context(|| format!("waiting for error {code}"))?;
            if e["code"] == code {
                return Ok(e);
            }
        }
    }

    /// Asserts that no event at all arrives for `quiet`.
    ///
    /// # Errors
    /// When one does.
    pub async fn expect_silence(&mut self, quiet: Duration) -> Result<()> {
        match tokio::time::timeout(quiet, self.events.recv()).await {
            Ok(Some((name, payload))) => bail!("expected silence, got {name} {payload}"),
            _ => Ok(()),
        }
    }

    /// # Errors
    /// When the disconnect fails.
    pub async fn disconnect(&self) -> Result<()> {
        self.client.disconnect().await.context("disconnect")
    }
}
