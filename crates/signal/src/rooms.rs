//! The room-dialect client with reconnect and rejoin.
//!
//! A rejoin after a reconnect carries the resume secret the server's `joined` gave (LiveLoop's
//! extension, docs/signaling.md), so the id comes back even if the old connection still looks
//! live to the server or is reserved for it. [`Rejoin`] is that logic, pure.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveloop_core::backoff::Backoff;
use liveloop_proto::rooms::{ClientMessage, ErrorCode, MAX_RELAY_BYTES, RelayKind, ServerMessage};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::SignalError;

/// What the room client reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SignalEvent {
    /// Joined (or rejoined after a reconnect) as `id`.
    Joined { room: String, id: String },
    /// The room's members, sorted, this client included.
    Members(Vec<String>),
    /// An offer, answer, candidate or hangup from another member.
    Relay {
        kind: RelayKind,
        from: String,
        payload: Option<serde_json::Value>,
    },
    /// The server refused something.
    Error { code: ErrorCode, message: String },
    /// The connection dropped; retrying after `delay`.
    Reconnecting { attempt: u32, delay: Duration },
}

enum Command {
    Send(ClientMessage),
    /// This computer's network changed: if the connection's own address is gone, it is dead
    /// (nothing will say so until the server's pings stop): reconnect now.
    NetworkChanged,
    Close,
}

/// Messages kept while the connection is down, sent after the rejoin (an ICE restart's offer
/// made during a network change, say); past it the oldest are dropped.
pub const MAX_QUEUED_WHILE_AWAY: usize = 64;

/// A handle to the driver task.
#[derive(Debug, Clone)]
pub struct RoomClient {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(m) => write!(f, "Send({m:?})"),
            Self::NetworkChanged => f.write_str("NetworkChanged"),
            Self::Close => f.write_str("Close"),
        }
    }
}

impl RoomClient {
    /// Starts a client that connects to `ws_url` (e.g. `ws://host:8080/ws`) and joins `room` as
    /// `id`, reconnecting and rejoining until [`RoomClient::close`].
    ///
    /// # Errors
    /// [`SignalError::Invalid`] for an invalid room or id (checked before anything is sent).
    pub fn start(
        ws_url: String,
        room: String,
        id: String,
    ) -> Result<(Self, mpsc::Receiver<SignalEvent>), SignalError> {
        let rejoin = Rejoin::new(room, id);
        // Validate exactly as the server will.
        ClientMessage::from_wire(rejoin.join_message().to_wire())
            .map_err(|e| SignalError::Invalid(e.to_string()))?;
        let (commands, rx) = mpsc::channel(256);
        let (events_tx, events) = mpsc::channel(1024);
        tokio::spawn(drive(ws_url, rejoin, rx, events_tx));
        Ok((Self { commands }, events))
    }

    /// Relays `kind` with `payload` to member `to`.
    ///
    /// # Errors
    /// [`SignalError::Invalid`] for a payload the server would refuse; [`SignalError::Stopped`].
    pub async fn relay(
        &self,
        kind: RelayKind,
        to: &str,
        payload: Option<serde_json::Value>,
    ) -> Result<(), SignalError> {
        let msg = ClientMessage::Relay {
            kind,
            to: to.to_owned(),
            payload,
        };
        let msg = ClientMessage::from_wire(msg.to_wire())
            .map_err(|e| SignalError::Invalid(e.to_string()))?;
        let size = serde_json::to_string(&msg.to_wire()).map_or(0, |t| t.len());
        if size > MAX_RELAY_BYTES {
            return Err(SignalError::Invalid(format!(
                "{} of {size} bytes: the server relays at most {MAX_RELAY_BYTES}",
                kind.as_str()
            )));
        }
        self.commands
            .send(Command::Send(msg))
            .await
            .map_err(|_| SignalError::Stopped)
    }

    /// This computer's network changed: a connection whose local address is gone reconnects
    /// (and rejoins) at once.
    pub async fn network_changed(&self) {
        let _ = self.commands.send(Command::NetworkChanged).await;
    }

    /// Leaves the room and stops.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

/// What to (re)join as, and the resume secret the server gave: the client's identity across
/// reconnects. Pure.
#[derive(Clone, PartialEq, Eq)]
pub struct Rejoin {
    room: String,
    id: String,
    secret: Option<String>,
    /// A join was answered: every later join is a rejoin.
    joined: bool,
}

impl std::fmt::Debug for Rejoin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rejoin")
            .field("room", &self.room)
            .field("id", &self.id)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("joined", &self.joined)
            .finish()
    }
}

/// What a server error means for the client.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterError {
    /// Report it and carry on.
    Report(SignalEvent),
    /// Report it and stop: the id is no longer ours, reconnecting would not bring it back (or
    /// would take it from whoever resumed it).
    Stop(SignalEvent),
}

impl Rejoin {
    #[must_use]
    pub fn new(room: String, id: String) -> Self {
        Self {
            room,
            id,
            secret: None,
            joined: false,
        }
    }

    /// The `join` to send on each connection: with the id's secret once the server gave one.
    #[must_use]
    pub fn join_message(&self) -> ClientMessage {
        ClientMessage::Join {
            room: self.room.clone(),
            id: Some(self.id.clone()),
            secret: self.secret.clone(),
        }
    }

    /// The server answered a join: keep the secret it gave (a server without the extension
    /// gives none, and the old one, if any, is kept).
    pub fn on_joined(&mut self, secret: Option<String>) {
        self.joined = true;
        if secret.is_some() {
            self.secret = secret;
        }
    }

    /// An error from the server: `replaced` always ends the client; `duplicate_id` does on a
    /// rejoin (our secret no longer holds the id: it was taken after its reservation ran out).
    #[must_use]
    pub fn on_error(&self, code: ErrorCode, message: String) -> AfterError {
        match code {
            ErrorCode::Replaced => AfterError::Stop(SignalEvent::Error {
                code,
                message: format!(
                    "another connection took over {} in room {} with this client's secret; not \
                     reconnecting ({message})",
                    self.id, self.room
                ),
            }),
            ErrorCode::DuplicateId if self.joined => {
                let why = if self.secret.is_some() {
                    "our resume secret no longer holds it"
                } else {
                    "the server gave no resume secret"
                };
                AfterError::Stop(SignalEvent::Error {
                    code,
                    message: format!(
                        "could not rejoin room {} as {} after reconnecting: {why}, someone else \
                         has the id now ({message})",
                        self.room, self.id
                    ),
                })
            }
            _ => AfterError::Report(SignalEvent::Error { code, message }),
        }
    }
}

/// Outcome of one connection.
enum Ended {
    Closed,
    Dropped,
    /// Its local address went away with a network change: reconnect without waiting.
    PathGone,
}

/// The messages waiting for the next connection.
type Queue = std::collections::VecDeque<ClientMessage>;

fn queue_while_away(queue: &mut Queue, message: ClientMessage) {
    if queue.len() >= MAX_QUEUED_WHILE_AWAY {
        queue.pop_front();
    }
    queue.push_back(message);
}

async fn drive(
    url: String,
    mut rejoin: Rejoin,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SignalEvent>,
) {
    let mut backoff = Backoff::default();
    let mut queued = Queue::new();
    loop {
        match session(
            &url,
            &mut rejoin,
            &mut commands,
            &events,
            &mut backoff,
            &mut queued,
        )
        .await
        {
            Ended::Closed => return,
            Ended::PathGone => {
                tracing::info!("the signaling connection's address is gone: reconnecting now");
            }
            Ended::Dropped => {
                let delay = backoff.next_delay();
                let _ = events
                    .send(SignalEvent::Reconnecting {
                        attempt: backoff.attempts(),
                        delay,
                    })
                    .await;
                // Messages sent while away (an offer, candidates) wait for the next
                // connection, the newest 64. A Close still ends the client.
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        cmd = commands.recv() => match cmd {
                            Some(Command::Close) | None => return,
                            Some(Command::Send(m)) => queue_while_away(&mut queued, m),
                            // A new network may well be what brings the server back.
                            Some(Command::NetworkChanged) => break,
                        },
                    }
                }
            }
        }
    }
}

async fn session(
    url: &str,
    rejoin: &mut Rejoin,
    commands: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<SignalEvent>,
    backoff: &mut Backoff,
    queued: &mut Queue,
) -> Ended {
    let connector = crate::tls::connector_for(url);
    let connected =
        // No Nagle: a small message written while the previous one is unacknowledged must not
        // wait for the server's delayed ACK (40 ms on Linux, every join paid it).
        tokio_tungstenite::connect_async_tls_with_config(url, None, true, connector).await;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        Err(e) => {
            tracing::debug!(url, error = %e, "room server connection failed");
            return Ended::Dropped;
        }
    };
    let local_ip = local_ip(ws.get_ref());
    let text = |m: &ClientMessage| {
        Message::Text(
            serde_json::to_string(&m.to_wire())
                .unwrap_or_default()
                .into(),
        )
    };
    if ws.send(text(&rejoin.join_message())).await.is_err() {
        return Ended::Dropped;
    }
    // The server handles a socket's messages in order: these follow the join.
    while let Some(m) = queued.front() {
        if ws.send(text(m)).await.is_err() {
            return Ended::Dropped;
        }
        queued.pop_front();
    }
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { return Ended::Dropped };
                let Message::Text(t) = frame else { continue };
                let event = match ServerMessage::parse(t.as_str()) {
                    Ok(ServerMessage::Joined { room, id, secret }) => {
                        backoff.reset();
                        rejoin.on_joined(secret);
                        SignalEvent::Joined { room, id }
                    }
                    Ok(ServerMessage::RoomMembers { members, .. }) => SignalEvent::Members(members),
                    Ok(ServerMessage::Relay { kind, from, payload, .. }) => SignalEvent::Relay { kind, from, payload },
                    Ok(ServerMessage::Error { code, message }) => match rejoin.on_error(code, message) {
                        AfterError::Report(event) => event,
                        AfterError::Stop(event) => {
                            tracing::warn!(?event, "the room server took our id; stopping");
                            let _ = events.send(event).await;
                            let _ = ws.close(None).await;
                            return Ended::Closed;
                        }
                    },
                    Ok(ServerMessage::Ping | ServerMessage::Pong) => continue,
                    Ok(_) => continue,
                    Err(e) => {
                        tracing::warn!(error = %e, "ignoring a server message we do not understand");
                        continue;
                    }
                };
                if events.send(event).await.is_err() {
                    return Ended::Closed;
                }
            }
            cmd = commands.recv() => match cmd {
                Some(Command::Send(m)) => {
                    if ws.send(text(&m)).await.is_err() {
                        queue_while_away(queued, m);
                        return Ended::Dropped;
                    }
                }
                Some(Command::NetworkChanged) => {
                    if let Some(ip) = local_ip
                        && !crate::net::reading().addrs.contains(&ip)
                        && !ip.is_loopback()
                    {
                        return Ended::PathGone;
                    }
                }
                Some(Command::Close) | None => {
                    let _ = ws.send(text(&ClientMessage::Leave)).await;
                    let _ = ws.close(None).await;
                    return Ended::Closed;
                }
            },
        }
    }
}

/// The local address of a room-server connection, plain or TLS.
fn local_ip(
    stream: &tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
) -> Option<std::net::IpAddr> {
    let tcp = match stream {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        tokio_tungstenite::MaybeTlsStream::Rustls(tls) => tls.get_ref().0,
        _ => return None,
    };
    tcp.local_addr().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use serde_json::{Value, json};
    use tokio::net::TcpListener;

    const SECRET: &str = "00112233445566778899aabbccddeeff";

    fn wire(m: &ClientMessage) -> Value {
        serde_json::to_value(m.to_wire()).unwrap()
    }

    #[test]
    fn the_secret_from_joined_goes_with_every_rejoin() {
        let mut r = Rejoin::new("r".into(), "me".into());
        assert_eq!(
            wire(&r.join_message()),
            json!({"type":"join","room":"r","from":"me"})
        );
        r.on_joined(Some(SECRET.into()));
        let join = r.join_message();
        assert_eq!(
            wire(&join),
            json!({"type":"join","room":"r","from":"me","secret":SECRET})
        );
        // ...and the server accepts what we send.
        assert_eq!(ClientMessage::from_wire(join.to_wire()), Ok(join));
        // A server without the extension sends none: the one we have is kept.
        r.on_joined(None);
        assert_eq!(wire(&r.join_message())["secret"], SECRET);
        assert!(
            !format!("{r:?}").contains(SECRET),
            "the secret is never printed"
        );
    }

    #[test]
    fn a_refused_rejoin_or_a_replacement_stops_with_a_clear_error() {
        let mut r = Rejoin::new("r".into(), "me".into());
        // On the first join, duplicate_id is an ordinary refusal.
        assert_eq!(
            r.on_error(ErrorCode::DuplicateId, "taken".into()),
            AfterError::Report(SignalEvent::Error {
                code: ErrorCode::DuplicateId,
                message: "taken".into()
            })
        );
        r.on_joined(Some(SECRET.into()));
        let AfterError::Stop(SignalEvent::Error { code, message }) =
            r.on_error(ErrorCode::DuplicateId, "me is in this room".into())
        else {
            panic!("a refused rejoin stops the client");
        };
        assert_eq!(code, ErrorCode::DuplicateId);
        assert!(
            message.contains("could not rejoin room r as me")
                && message.contains("secret no longer holds it")
                && message.contains("me is in this room"),
            "{message}"
        );
        assert!(matches!(
            r.on_error(ErrorCode::Replaced, "resumed".into()),
            AfterError::Stop(SignalEvent::Error {
                code: ErrorCode::Replaced,
                ..
            })
        ));
        assert!(matches!(
            r.on_error(ErrorCode::RateLimited, "slow".into()),
            AfterError::Report(_)
        ));
    }

    async fn next_json(
        ws: &mut tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>,
    ) -> Value {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("a frame from the client")
                .expect("the client's socket is open")
                .expect("a readable frame");
            if let Message::Text(t) = frame {
                return serde_json::from_str(t.as_str()).unwrap();
            }
        }
    }

    async fn next_event(events: &mut mpsc::Receiver<SignalEvent>) -> Option<SignalEvent> {
        tokio::time::timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("an event in time")
    }

    /// Over loopback against a scripted server: the first join has no secret, the rejoin after
    /// a dropped connection carries the one `joined` gave, and a refused rejoin ends the client
    /// with an error that says so.
    #[tokio::test]
    async fn a_reconnect_rejoins_with_the_secret() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, mut events) =
            RoomClient::start(format!("ws://{addr}/ws"), "r".into(), "me".into()).unwrap();

        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type":"join","room":"r","from":"me"})
        );
        let joined = json!({"type":"joined","room":"r","from":"me","secret":SECRET});
        ws.send(Message::Text(joined.to_string().into()))
            .await
            .unwrap();
        assert_eq!(
            next_event(&mut events).await,
            Some(SignalEvent::Joined {
                room: "r".into(),
                id: "me".into()
            })
        );
        // The connection drops without a word (as a network outage would).
        drop(ws);
        assert!(matches!(
            next_event(&mut events).await,
            Some(SignalEvent::Reconnecting { attempt: 1, .. })
        ));

        let (tcp, _) = listener.accept().await.unwrap();
        let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
        assert_eq!(
            next_json(&mut ws).await,
            json!({"type":"join","room":"r","from":"me","secret":SECRET})
        );
        // This time the id went to someone else: the client reports it and stops.
        let refused =
            json!({"type":"error","code":"duplicate_id","error":"me is already in this room"});
        ws.send(Message::Text(refused.to_string().into()))
            .await
            .unwrap();
        let Some(SignalEvent::Error { code, message }) = next_event(&mut events).await else {
            panic!("expected an error event");
        };
        assert_eq!(code, ErrorCode::DuplicateId);
        assert!(message.contains("could not rejoin"), "{message}");
        assert_eq!(next_event(&mut events).await, None, "the client stopped");
        assert!(
            client.relay(RelayKind::Hangup, "x", None).await.is_err(),
            "a stopped client refuses to send"
        );
    }

    #[tokio::test]
    async fn relays_over_64_kib_are_refused_before_sending() {
        // Nothing listens here: the check comes before any network.
        let (client, _events) =
            RoomClient::start("ws://127.0.0.1:9/ws".into(), "r".into(), "me".into()).unwrap();
        let sdp = json!({"type":"offer","sdp":"a".repeat(MAX_RELAY_BYTES)});
        let refused = client.relay(RelayKind::Offer, "you", Some(sdp)).await;
        assert!(
            matches!(refused, Err(SignalError::Invalid(_))),
            "{refused:?}"
        );
        let small = json!({"type":"offer","sdp":"v=0"});
        assert!(
            client
                .relay(RelayKind::Offer, "you", Some(small))
                .await
                .is_ok()
        );
        client.close().await;
    }
}
