//! Video into the webview: decoded (and self-view) frames are scaled natively to each tile's
//! size and streamed as binary I420 over a loopback WebSocket that only this launch's UI can
//! open (a per-launch secret token and an Origin check). Each tile gets the newest frame; a
//! slow tile skips frames instead of queueing them (the send completes before the next frame
//! is taken).
//!
//! Wire format, one binary message per frame: width and height as little-endian `u32`, then
//! the Y, U and V planes. The UI may send `{"w":…,"h":…}` when a tile is resized.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::{SinkExt, StreamExt};
use liveloop_media::VideoFrame;
use liveloop_media::convert::Scaler;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

type Slot = watch::Sender<Option<Arc<VideoFrame>>>;

/// Origins the app's own webview uses (Linux/macOS custom scheme, Windows http scheme).
const ALLOWED_ORIGINS: [&str; 3] = [
    "tauri://localhost",
    "http://tauri.localhost",
    "https://tauri.localhost",
];

/// The loopback frame server.
#[derive(Debug, Clone)]
pub struct VideoHub {
    addr: SocketAddr,
    token: String,
    tiles: Arc<Mutex<HashMap<String, Slot>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a tile asked for: `?token=…&id=…&w=…&h=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileRequest {
    pub id: String,
    pub width: u32,
    pub height: u32,
}

/// Parses and checks a tile's request path against the launch token.
#[must_use]
pub fn parse_request(path_and_query: &str, token: &str) -> Option<TileRequest> {
    let query = path_and_query.split_once('?')?.1;
    let mut id = None;
    let (mut width, mut height) = (320u32, 180u32);
    let mut token_ok = false;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        match k {
            "token" => token_ok = !token.is_empty() && v == token,
            "id" if !v.is_empty() && v.len() <= 64 => id = Some(v.to_owned()),
            "w" => width = v.parse().ok()?,
            "h" => height = v.parse().ok()?,
            _ => {}
        }
    }
    (token_ok).then_some(())?;
    Some(TileRequest {
        id: id?,
        width: width.clamp(16, 3840),
        height: height.clamp(16, 2160),
    })
}

impl VideoHub {
    /// Starts the server on loopback.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let token: String = (0..32)
            .map(|_| {
                let n: u8 = rand::random_range(0..36);
                char::from(if n < 26 { b'a' + n } else { b'0' + n - 26 })
            })
            .collect();
        let hub = Self {
            addr,
            token,
            tiles: Arc::default(),
        };
        let server = hub.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let hub = server.clone();
                tokio::spawn(async move {
                    if let Err(e) = hub.serve(stream).await {
                        tracing::debug!(error = %e, "video tile connection ended");
                    }
                });
            }
        });
        Ok(hub)
    }

    /// Where the UI connects: `ws://127.0.0.1:<port>/?token=<token>`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("ws://{}/?token={}", self.addr, self.token)
    }

    fn slot(&self, id: &str) -> Slot {
        lock(&self.tiles)
            .entry(id.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .clone()
    }

    /// The newest frame of tile `id` (a participant's id, or `self`).
    pub fn publish(&self, id: &str, frame: Arc<VideoFrame>) {
        self.slot(id).send_replace(Some(frame));
    }

    /// Clears a tile (its participant left or turned the camera off).
    pub fn clear(&self, id: &str) {
        if let Some(slot) = lock(&self.tiles).get(id) {
            slot.send_replace(None);
        }
    }

    async fn serve(&self, stream: tokio::net::TcpStream) -> anyhow::Result<()> {
        let token = self.token.clone();
        let mut wanted: Option<TileRequest> = None;
        let ws = tokio_tungstenite::accept_hdr_async(
            stream,
            // The callback's signature is tungstenite's; its error is a whole HTTP response.
            #[allow(clippy::result_large_err)]
            |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
                let origin_ok = req
                    .headers()
                    .get("origin")
                    .and_then(|o| o.to_str().ok())
                    .is_some_and(|o| ALLOWED_ORIGINS.contains(&o));
                let path = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str())
                    .unwrap_or_default();
                match parse_request(path, &token) {
                    Some(r) if origin_ok => {
                        wanted = Some(r);
                        Ok(resp)
                    }
                    _ => {
                        let mut refusal = ErrorResponse::new(Some("forbidden".into()));
                        *refusal.status_mut() = StatusCode::FORBIDDEN;
                        Err(refusal)
                    }
                }
            },
        )
        .await?;
        let Some(mut tile) = wanted else {
            return Ok(());
        };
        let mut frames = self.slot(&tile.id).subscribe();
        let (mut sink, mut incoming) = ws.split();
        let mut scaler = Scaler::new();
        // Send what is there now, then every new frame.
        frames.mark_changed();
        loop {
            tokio::select! {
                changed = frames.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let frame = frames.borrow_and_update().clone();
                    let Some(frame) = frame else { continue };
                    let (w, h) = liveloop_media::device::screen::fit(
                        (frame.width, frame.height),
                        (tile.width, tile.height),
                    );
                    let scaled = if (w, h) == (frame.width, frame.height) {
                        (*frame).clone()
                    } else {
                        scaler.scale(&frame, w, h)?
                    };
                    let mut message = Vec::with_capacity(8 + scaled.data.len());
                    message.extend_from_slice(&scaled.width.to_le_bytes());
                    message.extend_from_slice(&scaled.height.to_le_bytes());
                    message.extend_from_slice(&scaled.data);
                    sink.send(Message::Binary(message.into())).await?;
                }
                msg = incoming.next() => match msg {
                    Some(Ok(Message::Text(text))) => {
                        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                            let dim = |k: &str, d: u32| {
                                v.get(k).and_then(serde_json::Value::as_u64)
                                    .map_or(d, |x| (x as u32).clamp(16, 3840))
                            };
                            tile.width = dim("w", tile.width);
                            tile.height = dim("h", tile.height);
                        }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return Ok(()),
                    Some(Ok(_)) => {}
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_need_the_token_and_an_id() {
        let ok = parse_request("/?token=abc&id=bob&w=640&h=360", "abc");
        assert_eq!(
            ok,
            Some(TileRequest {
                id: "bob".into(),
                width: 640,
                height: 360
            })
        );
        assert_eq!(parse_request("/?token=abd&id=bob", "abc"), None);
        assert_eq!(parse_request("/?id=bob", "abc"), None);
        assert_eq!(parse_request("/?token=abc", "abc"), None);
        assert_eq!(parse_request("/?token=&id=x", ""), None);
        assert_eq!(parse_request("/?token=abc&id=x&w=huge", "abc"), None);
        let clamped = parse_request("/?token=abc&id=x&w=1&h=99999", "abc");
        assert_eq!(clamped.map(|r| (r.width, r.height)), Some((16, 2160)));
    }
}
