//! The matchmaking service (seed 000): socket.io v4 via socketioxide, driving
//! [`liveloop_core::matchmaker::Matchmaker`], plus `GET /` and `GET /api/status`.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::Json;
use axum::routing::get;
use liveloop_core::conn_limit::{NewConnectionRate, TooManyConnections};
use liveloop_core::matchmaker::{Config, Matchmaker};
use liveloop_proto::matchmaking as mm;
use liveloop_proto::rtc_config::RtcConfig;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use socketioxide::SocketIo;
use socketioxide::adapter::LocalAdapter;
use socketioxide::extract::{Event, SocketRef, State as IoState, TryData};
use socketioxide::handler::{ConnectHandler, FromMessageParts, MessageHandler, Value as RawValue};
use socketioxide::socket::{DisconnectReason, Sid, Socket};

use crate::limits::{IpPermit, PerIpLimit};
use crate::lock;
use crate::rooms::AllowedOrigins;

/// Everything the matchmaking service can be configured with.
#[derive(Debug, Clone)]
pub struct MatchmakingConfig {
    pub matcher: Config,
    /// Which browser origins may connect (as the room service's `WS_ALLOWED_ORIGINS`).
    pub allowed_origins: AllowedOrigins,
    /// Open socket.io connections per client address; more are refused (`connect_error`).
    /// `0`: no cap.
    pub max_connections_per_ip: usize,
    /// `/api/status` lists the waiting users' names (off: counts only).
    pub status_names: bool,
    /// New engine.io sessions (handshakes) per client address and second, in bursts of five
    /// seconds' worth; more get 429. A session that connects no namespace is never counted
    /// by `max_connections_per_ip` (it ends after 10 s), so this caps a handshake flood.
    /// `0`: no limit.
    pub handshakes_per_ip_per_sec: u32,
    /// What `GET /api/rtc-config` hands clients (the room service's `RTC_CONFIG_JSON`): seed
    /// 000's clients bring their own, LiveLoop's ask here for the TURN servers.
    pub rtc_config: RtcConfig,
    /// Time-limited credentials for its TURN servers, made for each request.
    pub turn: Option<crate::turn::TurnSecret>,
}

/// The default rate of new engine.io sessions per address: a household or an office behind
/// one NAT reconnecting at once after a restart (bursts of 100), not one host opening
/// thousands a second.
pub const DEFAULT_HANDSHAKES_PER_IP_PER_SEC: u32 = 20;

impl Default for MatchmakingConfig {
    fn default() -> Self {
        Self {
            matcher: Config::default(),
            allowed_origins: AllowedOrigins::Any,
            max_connections_per_ip: crate::limits::DEFAULT_MAX_CONNECTIONS_PER_IP,
            status_names: false,
            handshakes_per_ip_per_sec: DEFAULT_HANDSHAKES_PER_IP_PER_SEC,
            rtc_config: RtcConfig::default(),
            turn: None,
        }
    }
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    matcher: Mutex<Matchmaker>,
    allowed_origins: AllowedOrigins,
    status_names: bool,
    per_ip: PerIpLimit,
    /// Each connected socket's count against [`Inner::per_ip`], given back at disconnect.
    permits: Mutex<HashMap<Sid, IpPermit>>,
    handshakes: Mutex<NewConnectionRate>,
    rtc_config: RtcConfig,
    turn: Option<crate::turn::TurnSecret>,
}

/// Why a connection is refused before it is registered (socket.io's `connect_error`).
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("origin not allowed")]
    Origin,
    #[error(transparent)]
    TooMany(#[from] TooManyConnections),
}

type Shared = Arc<Inner>;

impl Inner {
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Runs `f` on the matchmaker, then emits everything it produced.
    fn drive(&self, io: &SocketIo, f: impl FnOnce(&mut Matchmaker, Duration)) {
        let emits: Vec<_> = {
            let mut matcher = lock(&self.matcher);
            f(&mut matcher, self.now());
            std::iter::from_fn(|| matcher.poll_output()).collect()
        };
        for emit in emits {
            let Some(socket) = Sid::from_str(&emit.to)
                .ok()
                .and_then(|sid| io.get_socket(sid))
            else {
                continue;
            };
            let sent = if emit.payload.is_null() {
                socket.emit(emit.event, &())
            } else {
                socket.emit(emit.event, &emit.payload)
            };
            if let Err(e) = sent {
                tracing::debug!(to = %emit.to, event = emit.event, error = %e, "emit failed");
            }
        }
    }
}

/// How many users wait for a match now, read from a running service (the app announces it
/// to the network: *Nearby*). Zero once the service is gone.
#[derive(Debug, Clone)]
pub struct Waiting(Weak<Inner>);

impl Waiting {
    #[must_use]
    pub fn count(&self) -> usize {
        self.0
            .upgrade()
            .map_or(0, |inner| lock(&inner.matcher).status().queue.len())
    }
}

/// The service: an axum router with the socket.io layer, and the status endpoints.
///
/// Must be called inside a tokio runtime: it starts the once-a-second matching timer, which ends
/// when the router is dropped.
pub fn router(config: MatchmakingConfig) -> Router {
    router_with_waiting(config).0
}

/// As [`router`], with a handle on how many wait.
pub fn router_with_waiting(config: MatchmakingConfig) -> (Router, Waiting) {
    let inner: Shared = Arc::new(Inner {
        epoch: Instant::now(),
        matcher: Mutex::new(Matchmaker::new(config.matcher)),
        allowed_origins: config.allowed_origins,
        status_names: config.status_names,
        per_ip: PerIpLimit::new(config.max_connections_per_ip),
        permits: Mutex::new(HashMap::new()),
        handshakes: Mutex::new(NewConnectionRate::new(
            config.handshakes_per_ip_per_sec.saturating_mul(5),
            config.handshakes_per_ip_per_sec as f32,
        )),
        rtc_config: config.rtc_config,
        turn: config.turn,
    });
    let (layer, io) = SocketIo::builder()
        .max_payload(256 * 1024)
        // Over WebSocket, nothing over 1 MB is read (tungstenite's defaults are 64 MB
        // messages of 16 MB frames); 256 KB-1 MB events are read and refused (`InOrder`).
        .ws_max_message_size(mm::MAX_MESSAGE_BYTES)
        .ws_max_frame_size(mm::MAX_MESSAGE_BYTES)
        // Room for a burst of trickled ICE candidates to a peer that reads a little late
        // (the default of 128 packets dropped some in a 200-candidate burst).
        .max_buffer_size(1024)
        // An engine.io session that connects no namespace (or was refused one: over the
        // per-address cap, or from a foreign origin) is closed after this, not the default 45 s.
        .connect_timeout(Duration::from_secs(10))
        .with_state(inner.clone())
        .build_layer();
    io.ns("/", connected.with(register));
    tokio::spawn(timer(Arc::downgrade(&inner), io));
    let waiting = Waiting(Arc::downgrade(&inner));
    let router = Router::new()
        .route(
            "/",
            get(|| async { Json(json!({"status": "OK", "message": "LiveLoop matchmaking"})) }),
        )
        .route("/api/status", get(status))
        .route(
            "/api/rtc-config",
            get(|State(inner): State<Shared>| async move {
                (
                    [(axum::http::header::CACHE_CONTROL, "no-store")],
                    Json(crate::turn::for_client(
                        &inner.rtc_config,
                        inner.turn.as_ref(),
                    )),
                )
            }),
        )
        .with_state(inner.clone())
        .layer(layer)
        .layer(axum::middleware::from_fn_with_state(
            inner,
            limit_handshakes,
        ));
    (router, waiting)
}

/// Refuses an engine.io handshake (a `/socket.io/` request without a session id) from an
/// address over its rate, with 429, before socketioxide makes a session for it.
async fn limit_handshakes(
    State(inner): State<Shared>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let uri = request.uri();
    let handshake = uri.path().starts_with("/socket.io")
        && !uri
            .query()
            .unwrap_or("")
            .split('&')
            .any(|kv| kv.starts_with("sid="));
    if handshake && let Some(ip) = crate::limits::peer_ip(request.extensions()) {
        let allowed = lock(&inner.handshakes).allow(ip, inner.now());
        if let Err(e) = allowed {
            tracing::debug!(%ip, "refused an engine.io handshake: {e}");
            return (axum::http::StatusCode::TOO_MANY_REQUESTS, e.to_string()).into_response();
        }
    }
    next.run(request).await
}

async fn timer(inner: Weak<Inner>, io: SocketIo) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        inner.drive(&io, |m, now| m.handle_timeout(now));
    }
}

async fn status(State(inner): State<Shared>) -> Json<Value> {
    let s = lock(&inner.matcher).status();
    let timestamp = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    // Who is waiting is nobody else's business: names only when the operator asked for them.
    let queue = if inner.status_names {
        json!({"size": s.queue.len(), "users": s.queue})
    } else {
        json!({"size": s.queue.len()})
    };
    Json(json!({
        "queue": queue,
        "rooms": {"active": s.active_rooms, "total": s.total_rooms},
        "timestamp": timestamp,
    }))
}

/// The connect handler proper has nothing left to do: see [`register`].
async fn connected(socket: SocketRef) {
    tracing::debug!(sid = %socket.id, "matchmaking socket connected");
}

/// A message handler that runs where socketioxide receives the event, in the order one
/// socket's events came in. socketioxide's own async handlers are each spawned as a task, so
/// two events of one socket could be handled in either order: a candidate overtook the offer
/// before it, chat arrived shuffled. Our handlers only lock the matchmaker and queue emits
/// (nothing awaits), so they can run inline. The second field is the largest packet the event
/// may have ([`mm::MAX_EVENT_BYTES`], or [`mm::MAX_RELAY_BYTES`] for what is relayed).
struct InOrder<F>(F, usize);

/// The `T` of [`InOrder`]'s [`MessageHandler`] implementation.
#[derive(Debug)]
struct Sequential;

/// An event's payload, as far as the server reads it.
#[derive(Debug)]
enum Payload {
    /// Larger than [`mm::MAX_EVENT_BYTES`]: not decoded.
    TooLarge,
    /// The event carried no argument at all.
    Missing,
    /// Its first argument.
    Value(Value),
    /// Unreadable (binary attachments, nesting too deep).
    Unreadable,
}

impl<F> MessageHandler<LocalAdapter, Sequential> for InOrder<F>
where
    F: Fn(&SocketRef, &SocketIo, Payload) + Send + Sync + 'static,
{
    fn call(&self, s: Arc<Socket>, mut v: RawValue, ack_id: Option<i64>) {
        let Ok(socket) = SocketRef::from_message_parts(&s, &mut v, &ack_id);
        let Ok(io) = SocketIo::from_message_parts(&s, &mut v, &ack_id);
        let payload = if v.len() > self.1 {
            Payload::TooLarge
        } else {
            let Ok(TryData(data)) = TryData::<Value>::from_message_parts(&s, &mut v, &ack_id);
            match data {
                Ok(value) => Payload::Value(value),
                Err(_) if has_no_argument(&v) => Payload::Missing,
                Err(_) => Payload::Unreadable,
            }
        };
        (self.0)(&socket, &io, payload);
    }
}

/// True when the packet is the event name alone (`["stop-call"]`): the common parser keeps it
/// as the JSON array it arrived as.
fn has_no_argument(v: &RawValue) -> bool {
    v.as_str().is_some_and(|raw| {
        serde_json::from_str::<Vec<serde::de::IgnoredAny>>(raw).is_ok_and(|args| args.len() <= 1)
    })
}

/// Decodes a payload within the size limit into the event's type: `None` (`invalid_payload`)
/// when it is too large, missing, not an object or of the wrong shape.
fn decode<T: DeserializeOwned>(payload: Payload) -> Option<T> {
    match payload {
        Payload::Value(value) => mm::decode_payload(value),
        Payload::TooLarge | Payload::Missing | Payload::Unreadable => None,
    }
}

/// Registers the socket and its event handlers. This runs as connect *middleware*, which
/// socketioxide awaits before acknowledging the connection; the connect handler itself is
/// spawned, so an event sent right after connecting could otherwise find no handler yet.
///
/// A page from a disallowed origin, or an address with the most connections open, is refused
/// here (`connect_error` with the reason) and never registered.
async fn register(
    socket: SocketRef,
    io: SocketIo,
    IoState(inner): IoState<Shared>,
) -> Result<(), Refused> {
    let parts = socket.req_parts();
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    if !inner
        .allowed_origins
        .allows_request(header(header::ORIGIN), header(header::HOST))
    {
        tracing::info!(origin = ?header(header::ORIGIN), "refused a matchmaking socket from a disallowed origin");
        return Err(Refused::Origin);
    }
    let permit = inner.per_ip.acquire_for(&parts.extensions).inspect_err(|e| {
        tracing::info!(ip = ?crate::limits::peer_ip(&parts.extensions), "refused a matchmaking socket: {e}");
    })?;
    if let Some(permit) = permit {
        lock(&inner.permits).insert(socket.id, permit);
    }
    let sid = socket.id.to_string();
    inner.drive(&io, |m, now| m.connect(now, &sid));

    let on = |event: &'static str, f: fn(&mut Matchmaker, Duration, &str, Payload)| {
        let inner = inner.clone();
        let limit = if mm::is_relayed(event) {
            mm::MAX_RELAY_BYTES
        } else {
            mm::MAX_EVENT_BYTES
        };
        socket.on(
            event,
            InOrder(
                move |s: &SocketRef, io: &SocketIo, payload: Payload| {
                    inner.drive(io, |m, now| f(m, now, s.id.as_str(), payload));
                },
                limit,
            ),
        );
    };
    on(mm::EV_REQUEST_ROOM, |m, now, sid, p| {
        m.handle_request_room(now, sid, decode(p));
    });
    on(mm::EV_OFFER, |m, now, sid, p| {
        m.handle_offer(now, sid, decode(p))
    });
    on(mm::EV_ANSWER, |m, now, sid, p| {
        m.handle_answer(now, sid, decode(p));
    });
    on(mm::EV_SEND_ICE, |m, now, sid, p| {
        m.handle_ice(now, sid, decode(p))
    });
    on(mm::EV_NEW_MESSAGE, |m, now, sid, p| {
        m.handle_message(now, sid, decode(p));
    });
    on(mm::EV_STOP_CALL, |m, now, sid, p| {
        // No payload at all (or null) is fine: the server knows the call. Anything else must
        // read as one; an oversized or unreadable stop-call is refused and ends nothing.
        let payload = match p {
            Payload::Missing => mm::StopCall::from_payload(None),
            Payload::Value(value) => mm::StopCall::from_payload(Some(value)),
            Payload::TooLarge | Payload::Unreadable => None,
        };
        m.handle_stop(now, sid, payload);
    });
    socket.on_fallback(
        async |s: SocketRef, io: SocketIo, IoState(inner): IoState<Shared>, Event(event): Event| {
            inner.drive(&io, |m, _| m.handle_unknown(s.id.as_str(), &event));
        },
    );
    socket.on_disconnect(
        async |s: SocketRef,
               io: SocketIo,
               IoState(inner): IoState<Shared>,
               reason: DisconnectReason| {
            tracing::debug!(sid = %s.id, ?reason, "matchmaking socket left");
            inner.drive(&io, |m, now| m.disconnect(now, s.id.as_str()));
            lock(&inner.permits).remove(&s.id);
        },
    );
    Ok(())
}
