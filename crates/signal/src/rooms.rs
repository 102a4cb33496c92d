//! The room-dialect client with reconnect and rejoin.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use liveloop_core::backoff::Backoff;
use liveloop_proto::rooms::{ClientMessage, ErrorCode, RelayKind, ServerMessage};
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
    Close,
}

/// A handle to the driver task.
#[derive(Debug, Clone)]
pub struct RoomClient {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(m) => write!(f, "Send({m:?})"),
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
        let join = ClientMessage::Join { room, id: Some(id) };
        // Validate exactly as the server will.
        ClientMessage::from_wire(join.to_wire())
            .map_err(|e| SignalError::Invalid(e.to_string()))?;
        let (commands, rx) = mpsc::channel(256);
        let (events_tx, events) = mpsc::channel(1024);
        tokio::spawn(drive(ws_url, join, rx, events_tx));
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
        self.commands
            .send(Command::Send(msg))
            .await
            .map_err(|_| SignalError::Stopped)
    }

    /// Leaves the room and stops.
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }
}

/// Outcome of one connection.
enum Ended {
    Closed,
    Dropped,
}

async fn drive(
    url: String,
    join: ClientMessage,
    mut commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<SignalEvent>,
) {
    let mut backoff = Backoff::default();
    loop {
        match session(&url, &join, &mut commands, &events, &mut backoff).await {
            Ended::Closed => return,
            Ended::Dropped => {
                let delay = backoff.next_delay();
                let _ = events
                    .send(SignalEvent::Reconnecting {
                        attempt: backoff.attempts(),
                        delay,
                    })
                    .await;
                // Commands sent while away (e.g. candidates) are dropped: the peer connection
                // renegotiates if it needs to. A Close still ends the client.
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        cmd = commands.recv() => match cmd {
                            Some(Command::Close) | None => return,
                            Some(Command::Send(_)) => {}
                        },
                    }
                }
            }
        }
    }
}

async fn session(
    url: &str,
    join: &ClientMessage,
    commands: &mut mpsc::Receiver<Command>,
    events: &mpsc::Sender<SignalEvent>,
    backoff: &mut Backoff,
) -> Ended {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url).await else {
        return Ended::Dropped;
    };
    let text = |m: &ClientMessage| {
        Message::Text(
            serde_json::to_string(&m.to_wire())
                .unwrap_or_default()
                .into(),
        )
    };
    if ws.send(text(join)).await.is_err() {
        return Ended::Dropped;
    }
    loop {
        tokio::select! {
            frame = ws.next() => {
                let Some(Ok(frame)) = frame else { return Ended::Dropped };
                let Message::Text(t) = frame else { continue };
                let event = match ServerMessage::parse(t.as_str()) {
                    Ok(ServerMessage::Joined { room, id }) => {
                        backoff.reset();
                        SignalEvent::Joined { room, id }
                    }
                    Ok(ServerMessage::RoomMembers { members, .. }) => SignalEvent::Members(members),
                    Ok(ServerMessage::Relay { kind, from, payload, .. }) => SignalEvent::Relay { kind, from, payload },
                    Ok(ServerMessage::Error { code, message }) => SignalEvent::Error { code, message },
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
                        return Ended::Dropped;
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
