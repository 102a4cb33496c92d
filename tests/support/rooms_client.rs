//! A WebSocket client for the room service, for tests: send JSON, await the next message of a
//! type, with timeouts that name what was awaited.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One room-service client.
#[derive(Debug)]
pub struct RoomClient {
    pub ws: Ws,
}

impl RoomClient {
    /// Connects to `ws://addr/ws`, optionally with an `Origin` header.
    ///
    /// # Errors
    /// When the handshake fails (the error includes the HTTP status).
    pub async fn connect(addr: std::net::SocketAddr, origin: Option<&str>) -> Result<Self> {
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        let (ws, _) = tokio_tungstenite::connect_async(request).await?;
        Ok(Self { ws })
    }

    /// As [`RoomClient::connect`], from the local address `src` (any 127.x.y.z on loopback, so
    /// that one test can be several client addresses).
    ///
    /// # Errors
    /// When the connection or the handshake fails (the error includes the HTTP status).
    pub async fn connect_from(
        addr: std::net::SocketAddr,
        src: std::net::IpAddr,
        origin: Option<&str>,
    ) -> Result<Self> {
        let mut request = format!("ws://{addr}/ws").into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", origin.parse()?);
        }
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(std::net::SocketAddr::new(src, 0))?;
        let stream = socket.connect(addr).await?;
        let (ws, _) =
            tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream)).await?;
        Ok(Self { ws })
    }

    /// Connects and joins `room` as `id`, consuming `joined` and the first `room_members`.
    ///
    /// # Errors
    /// When the join is refused.
    pub async fn join(addr: std::net::SocketAddr, room: &str, id: &str) -> Result<Self> {
        let mut c = Self::connect(addr, None).await?;
        c.send(&serde_json::json!({"type": "join", "room": room, "from": id}))
            .await?;
        let joined = c.next().await?;
        if joined["type"] != "joined" {
            bail!("expected joined, got {joined}");
        }
        c.expect("room_members").await?;
        Ok(c)
    }

    /// # Errors
    /// When the socket is closed.
    pub async fn send(&mut self, msg: &Value) -> Result<()> {
        self.send_text(msg.to_string()).await
    }

    /// # Errors
    /// When the socket is closed.
    pub async fn send_text(&mut self, text: String) -> Result<()> {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .context("send")
    }

    /// The next JSON text message (pings are answered by tungstenite itself).
    ///
    /// # Errors
    /// After 5 s without one, or when the socket closes.
    pub async fn next(&mut self) -> Result<Value> {
        self.next_within(Duration::from_secs(5)).await
    }

    /// # Errors
    /// See [`RoomClient::next`].
    pub async fn next_within(&mut self, timeout: Duration) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("no message in time")?;
            match frame {
                Some(Ok(Message::Text(t))) => {
                    return serde_json::from_str(t.as_str()).context("server sent non-JSON");
                }
                Some(Ok(Message::Close(frame))) => bail!("closed by server: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("socket ended"),
            }
        }
    }

    /// Skips messages until one of type `kind` arrives.
    ///
    /// # Errors
    /// When none arrives within 5 s.
    pub async fn expect(&mut self, kind: &str) -> Result<Value> {
        loop {
            let msg = self
                .next()
                .await
                .with_context(|| format!("waiting for {kind}"))?;
            if msg["type"] == kind {
                return Ok(msg);
            }
        }
    }

    /// Skips messages until an `error` with `code` arrives.
    ///
    /// # Errors
    /// When none arrives within 5 s.
    pub async fn expect_error(&mut self, code: &str) -> Result<Value> {
        loop {
            let msg = self
                .expect("error")
                .await
                .with_context(|| format!("waiting for error {code}"))?;
            if msg["code"] == code {
                return Ok(msg);
            }
        }
    }

    /// Waits for the close frame (skipping messages) and returns its code.
    ///
    /// # Errors
    /// When the socket stays open for 10 s.
    pub async fn closed_with(&mut self) -> Result<Option<u16>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            match tokio::time::timeout_at(deadline, self.ws.next())
                .await
                .context("socket still open")?
            {
                Some(Ok(Message::Close(frame))) => return Ok(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => return Ok(None),
            }
        }
    }

    /// Asserts nothing but pings arrives for `quiet`.
    ///
    /// # Errors
    /// When a message arrives.
    pub async fn expect_silence(&mut self, quiet: Duration) -> Result<()> {
        match self.next_within(quiet).await {
            Ok(msg) => bail!("expected silence, got {msg}"),
            Err(_) => Ok(()),
        }
    }
}
