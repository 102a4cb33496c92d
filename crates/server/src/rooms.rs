//! The room service (seed 001): axum routes and the WebSocket driver around
//! [`liveloop_core::rooms::RoomRegistry`].
//!
//! Per socket there are two tasks: the reader (parses frames, runs the heartbeat, feeds the
//! registry) and the writer (drains a bounded queue of 64 messages into the socket, each send
//! limited to 2 s). Deliveries are queued with `try_send`, never awaited, so one slow socket never
//! delays a room: when its queue is full or a send times out it is evicted and closed.
//!
//! Fairness: each queue counts the relayed messages in it per sender
//! ([`liveloop_core::rooms::QueueShares`], each place given back by a `Ticket` when the message
//! has been sent or dropped). A relay that would give one sender more than half of a receiver's queue
//! evicts the sender instead (`membership_lost`, 1008), so a flood aimed at one member never
//! evicts that member. A member whose id another connection resumed with its secret is closed
//! with `replaced` and 4000.
//!
//! Closing is the writer's job, told by the reader why ([`Closing`]): it sends what is still
//! queued (not for an eviction: an evicted socket gets `membership_lost` instead), then the
//! close frame, all within one more `send_timeout`. A send still stuck is not abandoned: its
//! bytes stay buffered ahead of the close frame, so a socket that starts reading again within
//! that time gets the close code; one that reads nothing is dropped without a close frame.
//! Once the close frame is out, the reader waits (again at most `send_timeout`) for the
//! client's close reply before the connection is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::http::{Extensions, HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use liveloop_core::rooms::{ConnId, Limits, QueueShares, RoomRegistry};
use liveloop_proto::rooms::{
    ClientMessage, ErrorCode, MAX_MESSAGE_BYTES, ParseError, ServerMessage,
};
use liveloop_proto::rtc_config::RtcConfig;
use tokio::sync::{Notify, mpsc, oneshot, watch};
use tokio_tungstenite::tungstenite;

use crate::limits::PerIpLimit;
use crate::lock;

/// Which browser origins may open `/ws` (`WS_ALLOWED_ORIGINS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigins {
    Any,
    /// Only pages this server served: the `Origin`'s host and port must be the request's
    /// `Host` (the built-in servers, which serve their own browser client).
    SameHost,
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
        self.allows_request(origin, None)
    }

    /// As [`AllowedOrigins::allows`], for a request to `host` (its `Host` header), which
    /// [`AllowedOrigins::SameHost`] compares the origin with (no `Host`: refused).
    #[must_use]
    pub fn allows_request(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        let list = match self {
            Self::Any => return true,
            Self::SameHost => {
                let authority = origin
                    .trim()
                    .split_once("://")
                    .map_or("", |(_, rest)| rest)
                    .trim_end_matches('/');
                return host.is_some_and(|h| {
                    !authority.is_empty() && h.trim().eq_ignore_ascii_case(authority)
                });
            }
            Self::List(list) => list,
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
    /// Open WebSockets per client address (an IPv4 address or an IPv6 /64); more get 429.
    /// `0`: no cap.
    pub max_connections_per_ip: usize,
    /// A WebSocket ping goes out this often...
    pub ping_interval: Duration,
    /// ...and a socket silent for this long is closed.
    pub pong_wait: Duration,
    /// Messages queued per socket before it counts as too slow.
    pub outbound_buffer: usize,
    /// Longest a single send may take before the socket counts as too slow.
    pub send_timeout: Duration,
    /// The port this room service also serves HTTPS on, if any: the browser client opened
    /// over plain HTTP on another computer (no camera: not a secure origin) points the guest
    /// there.
    pub https_port: Option<u16>,
    /// Time-limited TURN credentials for every TURN server in `rtc_config`, made anew for
    /// each page and each `/api/rtc-config` request (`--turn-secret`).
    pub turn: Option<crate::turn::TurnSecret>,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            allowed_origins: AllowedOrigins::Any,
            rtc_config: RtcConfig::default(),
            limits: Limits::default(),
            max_connections_per_ip: crate::limits::DEFAULT_MAX_CONNECTIONS_PER_IP,
            ping_interval: Duration::from_secs(15),
            pong_wait: Duration::from_secs(20),
            outbound_buffer: 64,
            send_timeout: Duration::from_secs(2),
            https_port: None,
            turn: None,
        }
    }
}

/// What the writer task sends.
#[derive(Debug)]
enum Outbound {
    /// A relayed message carries its sender's [`Ticket`].
    Text(Arc<str>, Option<Ticket>),
    Ping,
}

/// One relayed message counted against its sender's share of a receiver's queue; dropping it
/// (once the message is sent, or thrown away) gives the place back.
#[derive(Debug)]
struct Ticket {
    shares: Arc<Mutex<QueueShares>>,
    sender: ConnId,
}

impl Ticket {
    /// Counts a relay from `sender`, or `None` if the sender already has its share queued.
    fn take(shares: &Arc<Mutex<QueueShares>>, sender: ConnId) -> Option<Self> {
        lock(shares).admit(sender).ok()?;
        Some(Self {
            shares: shares.clone(),
            sender,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        lock(&self.shares).release(self.sender);
    }
}

/// Why a socket is being closed; each reason has its close code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closing {
    /// The client closed or its connection failed.
    Normal,
    /// A message over [`MAX_MESSAGE_BYTES`] (its `message_too_large` error is queued).
    TooLarge,
    /// Nothing heard for `pong_wait`.
    Silent,
    /// The server is shutting down.
    Shutdown,
    /// Too slow (outbound queue full, or a send over `send_timeout`), or over its share of
    /// another member's queue: removed from its room.
    Evicted,
    /// Another connection took this member's id with its secret.
    Replaced,
}

impl Closing {
    const fn frame(self) -> (u16, &'static str) {
        match self {
            Self::Normal => (1000, "bye"),
            Self::TooLarge => (1009, "message too large"),
            Self::Silent => (1001, "heartbeat timeout"),
            Self::Shutdown => (1001, "server shutting down"),
            Self::Evicted => (1008, "too slow"),
            Self::Replaced => (REPLACED_CLOSE_CODE, "replaced"),
        }
    }
}

/// The close code of a member whose id another connection resumed with its secret (the
/// application range, 4000-4999; a client should not reconnect on it).
pub const REPLACED_CLOSE_CODE: u16 = 4000;

#[derive(Debug)]
struct ConnHandle {
    tx: mpsc::Sender<Outbound>,
    /// Tells the reader to close the socket: evicted, or `replaced` if that is set.
    kill: Arc<Notify>,
    replaced: Arc<AtomicBool>,
    /// The relayed messages in `tx`'s queue, per sender.
    shares: Arc<Mutex<QueueShares>>,
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
    per_ip: PerIpLimit,
}

/// The room service; clone it freely (it is a handle).
#[derive(Debug, Clone)]
pub struct RoomsService(Arc<Inner>);

impl RoomsService {
    /// A service that closes its sockets when `shutdown` turns true.
    #[must_use]
    pub fn new(config: RoomsConfig, shutdown: watch::Receiver<bool>) -> Self {
        // Everything in config.js but the RTC configuration, which may carry credentials
        // made for each page.
        let mut config_js = String::new();
        if let Some(port) = config.https_port {
            config_js.push_str(&format!("window.LIVELOOP_HTTPS_PORT = {port};\n"));
        }
        // The resume secrets' randomness: rand's thread generator (ChaCha, seeded and reseeded
        // by the operating system).
        let registry = RoomRegistry::new(config.limits.clone(), |bytes| {
            rand::RngCore::fill_bytes(&mut rand::rng(), bytes);
        });
        let per_ip = PerIpLimit::new(config.max_connections_per_ip);
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
            per_ip,
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
        Self::deliver(&mut shared, now);
    }

    /// Evicts a socket that is too slow: its room hears it is gone, its reader is told to
    /// close it (1008).
    fn evict(&self, id: ConnId) {
        let now = self.now();
        let mut shared = lock(&self.0.shared);
        Self::evict_locked(&mut shared, id, now);
        Self::deliver(&mut shared, now);
    }

    fn evict_locked(shared: &mut Shared, id: ConnId, now: Duration) {
        if let Some(conn) = shared.conns.remove(&id) {
            conn.kill.notify_one();
        }
        shared.registry.evict(now, id);
    }

    /// Drains the registry's output into the sockets' queues, and closes the members it
    /// replaced.
    fn deliver(shared: &mut Shared, now: Duration) {
        while let Some(id) = shared.registry.poll_replaced() {
            if let Some(conn) = shared.conns.remove(&id) {
                tracing::info!(conn = id, "closing a member whose id was resumed elsewhere");
                conn.replaced.store(true, Ordering::Release);
                conn.kill.notify_one();
            }
        }
        // Evicting a slow socket tells its room, which can find another slow socket: repeat
        // until nothing is left to deliver.
        loop {
            let mut slow = Vec::new();
            let mut unfair = Vec::new();
            while let Some(d) = shared.registry.poll_output() {
                let Some(conn) = shared.conns.get(&d.to) else {
                    continue;
                };
                let ticket = match d.sender {
                    Some(sender) => match Ticket::take(&conn.shares, sender) {
                        Some(ticket) => Some(ticket),
                        None => {
                            // Over its share: the sender goes, this relay with it.
                            unfair.push(sender);
                            continue;
                        }
                    },
                    None => None,
                };
                // A refused message hands its ticket back as it is dropped.
                if conn
                    .tx
                    .try_send(Outbound::Text(d.msg.to_json().into(), ticket))
                    .is_err()
                {
                    slow.push(d.to);
                }
            }
            if slow.is_empty() && unfair.is_empty() {
                break;
            }
            unfair.sort_unstable();
            unfair.dedup();
            for id in unfair {
                tracing::info!(
                    conn = id,
                    "evicting a client over its share of another member's outbound queue"
                );
                Self::evict_locked(shared, id, now);
            }
            for id in slow {
                tracing::info!(conn = id, "evicting a client whose outbound queue is full");
                Self::evict_locked(shared, id, now);
            }
        }
    }
}

impl RoomsService {
    /// The RTC configuration for one client: with a TURN secret, fresh time-limited
    /// credentials on its TURN servers.
    #[must_use]
    pub fn rtc_config_for_client(&self) -> RtcConfig {
        crate::turn::for_client(&self.0.config.rtc_config, self.0.config.turn.as_ref())
    }
}

async fn config_js(State(svc): State<RoomsService>) -> Response {
    let json = serde_json::to_string(&svc.rtc_config_for_client()).unwrap_or_else(|_| "{}".into());
    (
        [
            (
                header::CONTENT_TYPE,
                "application/javascript; charset=utf-8",
            ),
            // Credentials in it are made for this page.
            (header::CACHE_CONTROL, "no-store"),
        ],
        format!("window.RTC_CONFIG = {json};\n{}", svc.0.config_js),
    )
        .into_response()
}

async fn rtc_config(State(svc): State<RoomsService>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(svc.rtc_config_for_client()),
    )
        .into_response()
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
    extensions: Extensions,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !svc.0.config.allowed_origins.allows_request(origin, host) {
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
    // Counted before the upgrade, so that a refused connection costs no WebSocket.
    let permit = match svc.0.per_ip.acquire_for(&extensions) {
        Ok(permit) => permit,
        Err(e) => {
            tracing::info!(ip = ?crate::limits::peer_ip(&extensions), "refused a WebSocket: {e}");
            let mut response = (StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
            return response;
        }
    };
    // Small buffers: an idle client should cost a few KB, not the 128 KB defaults. Nothing
    // over the seed's 1 MB is read: a larger frame or message gets `message_too_large`, 1009.
    ws.read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            run_connection(svc, socket).await;
            drop(permit);
        })
}

async fn run_connection(svc: RoomsService, socket: WebSocket) {
    let inner = &svc.0;
    let id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
    let capacity = inner.config.outbound_buffer.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let kill = Arc::new(Notify::new());
    let replaced = Arc::new(AtomicBool::new(false));
    {
        let mut shared = lock(&inner.shared);
        shared.conns.insert(
            id,
            ConnHandle {
                tx: tx.clone(),
                kill: kill.clone(),
                replaced: replaced.clone(),
                shares: Arc::new(Mutex::new(QueueShares::new(capacity))),
            },
        );
    }
    svc.with_registry(|reg, now| reg.connect(now, id));

    let (sink, mut stream) = socket.split();
    let (closing_tx, closing_rx) = oneshot::channel();
    let writer = tokio::spawn(write_loop(
        sink,
        rx,
        closing_rx,
        inner.config.send_timeout,
        kill.clone(),
    ));
    let mut heartbeat = tokio::time::interval(inner.config.ping_interval);
    heartbeat.tick().await;
    let mut last_seen = Instant::now();
    let closing = loop {
        tokio::select! {
            frame = stream.next() => {
                last_seen = Instant::now();
                match frame {
                    Some(Ok(Message::Text(text))) => {
                        if text.len() > MAX_MESSAGE_BYTES {
                            svc.with_registry(|reg, now| reg.handle(now, id, Err(ParseError::TooLarge)));
                            break Closing::TooLarge;
                        }
                        let msg = ClientMessage::parse(text.as_str());
                        svc.with_registry(|reg, now| reg.handle(now, id, msg));
                    }
                    Some(Ok(Message::Binary(data))) if data.len() > MAX_MESSAGE_BYTES => {
                        // Over the limit is over the limit, whatever the frame type.
                        svc.with_registry(|reg, now| reg.handle(now, id, Err(ParseError::TooLarge)));
                        break Closing::TooLarge;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        let err = ParseError::Malformed("binary frames are not part of the protocol".into());
                        svc.with_registry(|reg, now| reg.handle(now, id, Err(err)));
                    }
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break Closing::Normal,
                    Some(Err(e)) => {
                        tracing::debug!(conn = id, error = %e, "WebSocket read failed");
                        if is_too_large(e) {
                            // A frame or message over 1 MB, refused while it was read.
                            // It bypasses the rate limit: the socket is closed either way.
                            let message = ServerMessage::Error {
                                code: ErrorCode::MessageTooLarge,
                                message: ParseError::TooLarge.to_string(),
                            };
                            let _ = tx.try_send(Outbound::Text(message.to_json().into(), None));
                            break Closing::TooLarge;
                        }
                        break Closing::Normal;
                    }
                }
            }
            // A client silent for `pong_wait` is closed then, not at the next ping after it.
            () = tokio::time::sleep_until((last_seen + inner.config.pong_wait).into()) => {
                tracing::debug!(conn = id, "closing a silent client");
                break Closing::Silent;
            }
            _ = heartbeat.tick() => match tx.try_send(Outbound::Ping) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    tracing::info!(conn = id, "evicting a client whose outbound queue is full");
                    svc.evict(id);
                    break Closing::Evicted;
                }
                // The writer is gone: the socket failed.
                Err(mpsc::error::TrySendError::Closed(_)) => break Closing::Normal,
            },
            // The queue was full when a delivery was made, the socket went over its share of
            // another's queue, the writer timed out, or another connection took its id.
            () = kill.notified() => {
                if replaced.load(Ordering::Acquire) {
                    break Closing::Replaced;
                }
                svc.evict(id);
                break Closing::Evicted;
            }
            () = crate::shutdown_signal(inner.shutdown.clone()) => break Closing::Shutdown,
        }
    };
    {
        let mut shared = lock(&inner.shared);
        shared.conns.remove(&id);
    }
    svc.with_registry(|reg, now| reg.disconnect(now, id));
    // The writer sends what it should and the close frame, within one more `send_timeout`
    // (it may have started already: after its own send timeout, it closes as evicted).
    let _ = closing_tx.send(closing);
    drop(tx);
    if writer.await.unwrap_or(false) {
        // Take the client's close reply (and pongs still on their way) before dropping the
        // connection: dropping it with their bytes unread resets it, and a client that answers
        // the pings queued ahead of our close frame then fails before it reads that frame.
        let reply = async {
            while let Some(Ok(msg)) = stream.next().await {
                if matches!(msg, Message::Close(_)) {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(inner.config.send_timeout, reply).await;
    }
}

/// True for a read error that says the client's frame or message is over our size limit.
fn is_too_large(e: axum::Error) -> bool {
    e.into_inner()
        .downcast::<tungstenite::Error>()
        .is_ok_and(|e| matches!(*e, tungstenite::Error::Capacity(_)))
}

type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Sends queued messages until the reader says the socket is closing (or a send takes over
/// `send_timeout`: the socket is then evicted), then closes it; see the module docs. True if
/// the close frame went out.
async fn write_loop(
    mut sink: WsSink,
    mut rx: mpsc::Receiver<Outbound>,
    mut closing: oneshot::Receiver<Closing>,
    send_timeout: Duration,
    kill: Arc<Notify>,
) -> bool {
    // A dropped sender means the reader is gone without a reason: a normal close.
    let reason = loop {
        let out = tokio::select! {
            biased;
            reason = &mut closing => break reason.unwrap_or(Closing::Normal),
            out = rx.recv() => out,
        };
        let Some(out) = out else {
            break (&mut closing).await.unwrap_or(Closing::Normal);
        };
        // The ticket (a relay's place in its sender's share) is given back once the send is done.
        let (message, _ticket) = outbound_message(out);
        tokio::select! {
            biased;
            // Closing while a send is stuck: its bytes stay buffered, ahead of the close.
            reason = &mut closing => break reason.unwrap_or(Closing::Normal),
            sent = tokio::time::timeout(send_timeout, sink.send(message)) => match sent {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return false,
                Err(_) => {
                    tracing::info!(
                        "evicting a client that took over {send_timeout:?} to accept a message"
                    );
                    kill.notify_one();
                    break Closing::Evicted;
                }
            },
        }
    };
    let mut last = Vec::new();
    match reason {
        Closing::Evicted => {
            let lost = ServerMessage::Error {
                code: ErrorCode::MembershipLost,
                message: "the server removed you from the room: too slow, or sending more than \
                          your share to one member"
                    .into(),
            };
            last.push(Message::Text(lost.to_json().into()));
        }
        Closing::Replaced => {
            // What was queued was for the member this socket no longer is.
            let replaced = ServerMessage::Error {
                code: ErrorCode::Replaced,
                message: "another connection resumed your id with its secret; this one is closed"
                    .into(),
            };
            last.push(Message::Text(replaced.to_json().into()));
        }
        Closing::Normal | Closing::TooLarge | Closing::Silent | Closing::Shutdown => {
            // Whatever was queued before the reason (a `message_too_large` error, say) goes
            // first.
            while let Ok(out) = rx.try_recv() {
                last.push(outbound_message(out).0);
            }
        }
    }
    // What is left in the queue is dropped with it, tickets included.
    drop(rx);
    let (code, why) = reason.frame();
    let close = Message::Close(Some(CloseFrame {
        code,
        reason: why.into(),
    }));
    let finish = async {
        for msg in last {
            sink.feed(msg).await?;
        }
        sink.send(close).await
    };
    tokio::time::timeout(send_timeout, finish)
        .await
        .is_ok_and(|sent| sent.is_ok())
}

fn outbound_message(out: Outbound) -> (Message, Option<Ticket>) {
    match out {
        Outbound::Text(text, ticket) => (Message::Text(text.as_ref().into()), ticket),
        Outbound::Ping => (Message::Ping(Default::default()), None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_the_documented_one() {
        let c = RoomsConfig::default();
        assert_eq!(c.ping_interval, Duration::from_secs(15));
        assert_eq!(c.pong_wait, Duration::from_secs(20));
        assert_eq!(c.outbound_buffer, 64);
        assert_eq!(c.send_timeout, Duration::from_secs(2));
        assert_eq!(c.allowed_origins, AllowedOrigins::Any);
        assert_eq!(
            (c.limits.max_rooms, c.limits.max_members),
            (1000, 50),
            "the registry's own defaults"
        );
    }

    #[test]
    fn close_codes() {
        assert_eq!(Closing::Evicted.frame().0, 1008);
        assert_eq!(Closing::TooLarge.frame().0, 1009);
        assert_eq!(Closing::Silent.frame().0, 1001);
        assert_eq!(Closing::Shutdown.frame().0, 1001);
        assert_eq!(Closing::Normal.frame().0, 1000);
        assert_eq!(Closing::Replaced.frame(), (4000, "replaced"));
    }

    #[test]
    fn a_ticket_gives_its_place_back_when_dropped() {
        let shares = Arc::new(Mutex::new(QueueShares::new(4)));
        let first = Ticket::take(&shares, 1);
        let second = Ticket::take(&shares, 1);
        assert!(first.is_some() && second.is_some());
        assert!(Ticket::take(&shares, 1).is_none(), "half of 4 is 2");
        assert!(Ticket::take(&shares, 2).is_some(), "another sender's share");
        drop(first);
        assert!(Ticket::take(&shares, 1).is_some());
        assert_eq!(
            lock(&shares).queued(2),
            0,
            "the temporary ticket was dropped"
        );
    }

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
        // An empty setting (or only commas and spaces) allows every origin, as `*` does.
        assert_eq!(AllowedOrigins::parse(""), AllowedOrigins::Any);
        assert_eq!(AllowedOrigins::parse(" , "), AllowedOrigins::Any);
    }
}
