//! The room service (seed 001): axum routes and the WebSocket driver around
//! [`liveloop_core::rooms::RoomRegistry`].
//!
//! Per socket there are two tasks: the reader (parses frames, runs the heartbeat, feeds the
//! registry) and the writer (drains a bounded queue of 64 messages into the socket, each send
//! limited to 2 s). Deliveries are queued with `try_send`, never awaited, so one slow socket never
//! delays a room: when its queue is full or a send times out it is evicted and closed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use liveloop_core::rooms::{ConnId, Limits, RoomRegistry};
use liveloop_proto::rooms::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ParseError, ServerMessage,
};
use liveloop_proto::rtc_config::RtcConfig;
use tokio::sync::{Notify, mpsc, watch};

use crate::lock;

/// Which browser origins may open `/ws` (`WS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    /// Entries are host names (`example.com`, matching any scheme and port) or full origins
    /// (`https://example.com:8443`).
    List(Vec<String>),
}

impl AllowedOrigins {
    /// Parses the comma-separated form; `*` (or an empty value) allows every origin.
    #[must_use]
    pub fn parse(value: &str) -> Self {
        let list: Vec<String> = value
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if list.is_empty() || list.iter().any(|s| s == "*") {
            Self::Any
        } else {
            Self::List(list)
        }
    }

    /// A request without an `Origin` header comes from a native client (browsers always send
    /// one on WebSocket upgrades) and is allowed.
    #[must_use]
    pub fn allows(&self, origin: Option<&str>) -> bool {
        let (Self::List(list), Some(origin)) = (self, origin) else {
            return true;
        };
        let origin = origin.trim().to_ascii_lowercase();
        let host = origin
            .split_once("://")
            .map_or(origin.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        list.iter().any(|entry| {
            if entry.contains("://") {
                *entry == origin
            } else {
                entry == host
            }
        })
    }
}

/// Everything the room service can be configured with.
#[derive(Debug, Clone)]
pub struct RoomsConfig {
    pub allowed_origins: AllowedOrigins,
    pub rtc_config: RtcConfig,
    pub limits: Limits,
    /// A WebSocket ping goes out this often...
    pub ping_interval: Duration,
    /// ...and a socket silent for this long is closed.
    pub pong_wait: Duration,
    /// Messages queued per socket before it counts as too slow.
    pub outbound_buffer: usize,
    /// Longest a single send may take before the socket counts as too slow.
    pub send_timeout: Duration,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: AllowedOrigins::Any,
            rtc_config: RtcConfig::default(),
            limits: Limits::default(),
            ping_interval: Duration::from_secs(15),
            pong_wait: Duration::from_secs(20),
            outbound_buffer: 64,
            send_timeout: Duration::from_secs(2),
        }
    }
}

/// What the writer task sends.
#[derive(Debug)]
enum Outbound {
    Text(Arc<str>),
    Ping,
}

#[derive(Debug)]
struct ConnHandle {
    tx: mpsc::Sender<Outbound>,
    kill: Arc<Notify>,
}

#[derive(Debug)]
struct Shared {
    registry: RoomRegistry,
    conns: HashMap<ConnId, ConnHandle>,
}

#[derive(Debug)]
struct Inner {
    config: RoomsConfig,
    config_js: String,
    epoch: Instant,
    next_conn: AtomicU64,
    shared: Mutex<Shared>,
    shutdown: watch::Receiver<bool>,
}

/// The room service; clone it freely (it is a handle).
#[derive(Debug, Clone)]
pub struct RoomsService(Arc<Inner>);

impl RoomsService {
    /// A service that closes its sockets when `shutdown` turns true.
    #[must_use]
    pub fn new(config: RoomsConfig, shutdown: watch::Receiver<bool>) -> Self {
        let json = serde_json::to_string(&config.rtc_config).unwrap_or_else(|_| "{}".into());
        let config_js = format!("window.RTC_CONFIG = {json};\n");
        let registry = RoomRegistry::new(config.limits.clone());
        Self(Arc::new(Inner {
            config,
            config_js,
            epoch: Instant::now(),
            next_conn: AtomicU64::new(1),
            shared: Mutex::new(Shared {
                registry,
                conns: HashMap::new(),
            }),
            shutdown,
        }))
    }

    /// The routes: `/healthz`, `/ws`, `/config.js`, `/api/rtc-config`, `/api/stats`, and the
    /// browser client: `/`, `/r/<room>`, `/styles.css`, `/app.js`, `/app.*.js`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/", get(crate::web::index))
            .route("/r/{room}", get(crate::web::room))
            .route("/{file}", get(crate::web::file))
            .route("/healthz", get(|| async { "ok" }))
            .route("/ws", get(ws_handler))
            .route("/config.js", get(config_js))
            .route("/api/rtc-config", get(rtc_config))
            .route("/api/stats", get(stats))
            .with_state(self.clone())
    }

    /// Connections, rooms and members right now.
    #[must_use]
    pub fn stats(&self) -> liveloop_core::rooms::Stats {
        lock(&self.0.shared).registry.stats()
    }

    fn now(&self) -> Duration {
        self.0.epoch.elapsed()
    }

    /// Runs `f` on the registry, then hands every resulting delivery to its socket's queue.
    /// A socket whose queue is full is evicted from its room and told to close.
    fn with_registry(&self, f: impl FnOnce(&mut RoomRegistry, Duration)) {
        let now = self.now();
        let mut shared = lock(&self.0.shared);
        f(&mut shared.registry, now);
        // Evicting a slow socket tells its room, which can find another slow socket: repeat
        // until nothing is left to deliver.
        loop {
            let mut slow = Vec::new();
            while let Some(d) = shared.registry.poll_output() {
                let Some(conn) = shared.conns.get(&d.to) else {
                    continue;
                };
                if conn
                    .tx
                    .try_send(Outbound::Text(d.msg.to_json().into()))
                    .is_err()
                {
                    slow.push(d.to);
                }
            }
            if slow.is_empty() {
                break;
            }
            for id in slow {
                if let Some(conn) = shared.conns.remove(&id) {
                    tracing::info!(conn = id, "evicting a client whose outbound queue is full");
                    conn.kill.notify_one();
                    shared.registry.evict(id);
                }
            }
        }
    }
}

async fn config_js(State(svc): State<RoomsService>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/javascript; charset=utf-8",
        )],
        svc.0.config_js.clone(),
    )
        .into_response()
}

async fn rtc_config(State(svc): State<RoomsService>) -> Response {
    axum::Json(svc.0.config.rtc_config.clone()).into_response()
}

async fn stats(State(svc): State<RoomsService>) -> Response {
    let s = svc.stats();
    axum::Json(
        serde_json::json!({"connections": s.connections, "rooms": s.rooms, "members": s.members}),
    )
    .into_response()
}

async fn ws_handler(
    State(svc): State<RoomsService>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if !svc.0.config.allowed_origins.allows(origin) {
        tracing::info!(?origin, "refused a WebSocket from a disallowed origin");
        return (StatusCode::FORBIDDEN, "origin not allowed").into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => {
            let mut response = (
                StatusCode::UPGRADE_REQUIRED,
                format!("this endpoint speaks WebSocket only ({rejection})"),
            )
                .into_response();
            response
                .headers_mut()
                .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            return response;
        }
    };
    // Small buffers: an idle client should cost a few KB, not the 128 KB defaults. Frames up
    // to 4 MB are read so that 1-4 MB messages get a clear `message_too_large` error.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| run_connection(svc, socket))
}

async fn run_connection(svc: RoomsService, socket: WebSocket) {
    let inner = &svc.0;
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let (tx, rx) = mpsc::channel(inner.config.outbound_buffer.max(1));
    let kill = Arc::new(Notify::new());
    {
        let mut shared = lock(&inner.shared);
        shared.conns.insert(
            id,
            ConnHandle {
                tx: tx.clone(),
                kill: kill.clone(),
            },
        );
    }
    svc.with_registry(|reg, now| reg.connect(now, id));

    let (sink, mut stream) = socket.split();
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        inner.config.send_timeout,
        kill.clone(),
    ));
    let mut heartbeat = tokio::time::interval(inner.config.ping_interval);
    heartbeat.tick().await;
    let mut last_seen = Instant::now();
    let mut close: Option<(u16, &'static str)> = None;
    loop {
        tokio::select! {
            frame = stream.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_MESSAGE_BYTES {
                            svc.with_registry(|reg, now| reg.handle(now, id, Err(ParseError::TooLarge)));
                            close = Some((1009, "message too large"));
                            break;
                        }
                        let msg = ClientMessage::parse(text.as_str());
                        svc.with_registry(|reg, now| reg.handle(now, id, msg));
                    }
                    Some(Ok(Message::Binary(data))) if data.len() > MAX_MESSAGE_BYTES => {
                        // Over the limit is over the limit, whatever the frame type.
                        svc.with_registry(|reg, now| reg.handle(now, id, Err(ParseError::TooLarge)));
                        close = Some((1009, "message too large"));
                        break;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let err = ParseError::Malformed("binary frames are not part of the protocol".into());
                        svc.with_registry(|reg, now| reg.handle(now, id, Err(err)));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(e)) => {
                        tracing::debug!(conn = id, error = %e, "WebSocket read failed");
                        if e.to_string().contains("too long") || e.to_string().contains("Space limit") {
                            let message = ServerMessage::Error { code: ErrorCode::MessageTooLarge, message: e.to_string() };
                            let _ = tx.try_send(Outbound::Text(message.to_json().into()));
                            close = Some((1009, "message too large"));
                        }
                        break;
                    }
                }
            }
            // A client silent for `pong_wait` is closed then, not at the next ping after it.
            () = tokio::time::sleep_until((last_seen + inner.config.pong_wait).into()) => {
                tracing::debug!(conn = id, "closing a silent client");
                close = Some((1001, "heartbeat timeout"));
                break;
            }
            _ = heartbeat.tick() => {
                if tx.try_send(Outbound::Ping).is_err() {
                    break;
                }
            }
            () = kill.notified() => {
                close = Some((1008, "too slow"));
                break;
            }
            () = crate::shutdown_signal(inner.shutdown.clone()) => {
                close = Some((1001, "server shutting down"));
                break;
            }
        }
    }
    {
        let mut shared = lock(&inner.shared);
        shared.conns.remove(&id);
    }
    svc.with_registry(|reg, _| reg.disconnect(id));
    // Let the writer flush what is queued (errors included), then close.
    drop(tx);
    let writer_done = tokio::time::timeout(inner.config.send_timeout, writer).await;
    if let Ok(Ok(Some(mut sink))) = writer_done {
        let (code, reason) = close.unwrap_or((1000, "bye"));
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            inner.config.send_timeout,
            sink.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Sends queued messages until the queue closes; gives the sink back if it is still healthy.
async fn write_loop(
    mut sink: WsSink,
    mut rx: mpsc::Receiver<Outbound>,
    send_timeout: Duration,
    kill: Arc<Notify>,
) -> Option<WsSink> {
    while let Some(out) = rx.recv().await {
        let msg = match out {
            Outbound::Text(text) => Message::Text(text.as_ref().into()),
            Outbound::Ping => Message::Ping(Default::default()),
        };
        match tokio::time::timeout(send_timeout, sink.send(msg)).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return None,
            Err(_) => {
                tracing::info!(
                    "evicting a client that took over {send_timeout:?} to accept a message"
                );
                kill.notify_one();
                return None;
            }
        }
    }
    Some(sink)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let any = AllowedOrigins::parse("*");
        assert!(any.allows(Some("https://evil.example")) && any.allows(None));
        let list = AllowedOrigins::parse("localhost, Example.com,https://app.example.org:8443");
        assert!(list.allows(Some("http://localhost:8080")));
        assert!(list.allows(Some("https://example.com")));
        assert!(list.allows(Some("https://app.example.org:8443")));
        assert!(!list.allows(Some("https://app.example.org")));
        assert!(!list.allows(Some("https://example.com.evil.net")));
        assert!(!list.allows(Some("null")));
        assert!(list.allows(None), "native clients send no Origin");
    }
}
