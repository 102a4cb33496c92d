//! One interface over both signaling dialects, as the engine sees them: a [`Signaling`]
//! handle to send with and a stream of [`SessionEvent`]s. The room dialect (seed 001) and the
//! matchmaking dialect (seed 000) each get an adapter here, so the engine's call logic is the
//! same for a room and for random chat.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use liveloop_proto::rooms::RelayKind;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::SignalError;
use crate::matchmaking::{MatchClient, MatchEvent, Matchmaker};
use crate::rooms::{RoomClient, SignalEvent};

/// What a session reports, in either dialect.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum SessionEvent {
    /// Signed in: joined the room as `id`, or connected to the matchmaker (`id` empty).
    Ready { id: String },
    /// Someone to call. `polite`: this side yields on offer collisions and waits for the
    /// offer; the other side offers.
    PeerJoined {
        id: String,
        name: Option<String>,
        polite: bool,
    },
    /// The participant left (the room, or the random call).
    PeerLeft { id: String },
    /// The participant hung up on us but stays in the room.
    HungUp { id: String },
    /// An offer or answer (`{type, sdp}`).
    Description { from: String, payload: Value },
    /// An ICE candidate (`RTCIceCandidateInit`).
    Candidate { from: String, payload: Value },
    /// A chat message relayed by the server (the matchmaking dialect's chat).
    Chat { from: String, text: String },
    /// The server refused something.
    Error { code: String, message: String },
    /// The connection dropped; retrying after `delay`.
    Reconnecting { attempt: u32, delay: Duration },
    /// Random chat: connected (again) to the matchmaker at `url`, another one than before when
    /// the one in use went away.
    Matchmaker { url: String },
}

/// A message for one participant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Outgoing {
    Description(Value),
    Candidate(Value),
    Hangup,
}

/// The sending half of a session, in either dialect.
#[async_trait::async_trait]
pub trait Signaling: Send + Sync + std::fmt::Debug {
    /// Sends `message` to participant `to` (validated first).
    ///
    /// # Errors
    /// [`SignalError::Invalid`] for a payload the server would refuse; [`SignalError::Stopped`].
    async fn send(&self, to: &str, message: Outgoing) -> Result<(), SignalError>;

    /// Sends chat through the server, where the dialect carries chat.
    ///
    /// # Errors
    /// [`SignalError::Unsupported`] where chat goes over the data channel instead.
    async fn send_chat(&self, text: &str) -> Result<(), SignalError>;

    /// Random chat: asks for a partner (ending the current call first, if any).
    ///
    /// # Errors
    /// [`SignalError::Unsupported`] in a room.
    async fn find_partner(&self) -> Result<(), SignalError>;

    /// Random chat: ends the current call; the partner is told.
    ///
    /// # Errors
    /// [`SignalError::Unsupported`] in a room.
    async fn end_call(&self) -> Result<(), SignalError>;

    /// This computer's network changed: a connection whose address went away reconnects now
    /// (rather than when the server's pings stop). The default does nothing.
    async fn network_changed(&self) {}

    /// Leaves and stops.
    async fn close(&self);
}

/// The room dialect as a session.
#[derive(Debug, Clone)]
pub struct RoomSession {
    client: RoomClient,
}

impl RoomSession {
    /// Joins `room` at `ws_url` as `id` (reconnecting and rejoining by itself).
    ///
    /// # Errors
    /// [`SignalError::Invalid`] for an invalid room or id.
    pub fn start(
        ws_url: String,
        room: String,
        id: String,
    ) -> Result<(Self, mpsc::Receiver<SessionEvent>), SignalError> {
        let (client, mut events) = RoomClient::start(ws_url, room, id.clone())?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut members = RoomMembers::new(id);
            while let Some(event) = events.recv().await {
                for out in members.translate(event) {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok((Self { client }, rx))
    }
}

/// Turns room events into session events: member lists become joins and leaves.
#[derive(Debug)]
pub struct RoomMembers {
    me: String,
    known: BTreeSet<String>,
    /// Reconnecting: the first member list after the rejoin may lack members that have not
    /// rejoined yet; their calls go on (media does not pass through the server).
    rejoining: bool,
}

impl RoomMembers {
    #[must_use]
    pub fn new(me: String) -> Self {
        Self {
            me,
            known: BTreeSet::new(),
            rejoining: false,
        }
    }

    /// One room event in, the session events it means out. Pure.
    pub fn translate(&mut self, event: SignalEvent) -> Vec<SessionEvent> {
        match event {
            SignalEvent::Joined { id, .. } => {
                self.me.clone_from(&id);
                vec![SessionEvent::Ready { id }]
            }
            SignalEvent::Members(list) => {
                let mut now: BTreeSet<String> =
                    list.into_iter().filter(|m| *m != self.me).collect();
                let mut out = Vec::new();
                if std::mem::take(&mut self.rejoining) {
                    now.extend(self.known.iter().cloned());
                } else {
                    out.extend(
                        self.known
                            .difference(&now)
                            .map(|id| SessionEvent::PeerLeft { id: id.clone() }),
                    );
                }
                out.extend(
                    now.difference(&self.known)
                        .map(|id| SessionEvent::PeerJoined {
                            id: id.clone(),
                            name: None,
                            // Rooms have no caller: the larger id yields (both sides agree on it).
                            polite: self.me > *id,
                        }),
                );
                self.known = now;
                out
            }
            SignalEvent::Relay {
                kind,
                from,
                payload,
            } => match (kind, payload) {
                (RelayKind::Offer | RelayKind::Answer, Some(payload)) => {
                    vec![SessionEvent::Description { from, payload }]
                }
                (RelayKind::Candidate, Some(payload)) => {
                    vec![SessionEvent::Candidate { from, payload }]
                }
                (RelayKind::Hangup, _) => vec![SessionEvent::HungUp { id: from }],
                _ => Vec::new(),
            },
            SignalEvent::Error { code, message } => vec![SessionEvent::Error {
                code: code.as_str().to_owned(),
                message,
            }],
            SignalEvent::Reconnecting { attempt, delay } => {
                self.rejoining = true;
                vec![SessionEvent::Reconnecting { attempt, delay }]
            }
        }
    }
}

#[async_trait::async_trait]
impl Signaling for RoomSession {
    async fn send(&self, to: &str, message: Outgoing) -> Result<(), SignalError> {
        let (kind, payload) = match message {
            Outgoing::Description(d) => {
                let kind = if d.get("type").and_then(Value::as_str) == Some("offer") {
                    RelayKind::Offer
                } else {
                    RelayKind::Answer
                };
                (kind, Some(d))
            }
            Outgoing::Candidate(c) => (RelayKind::Candidate, Some(c)),
            Outgoing::Hangup => (RelayKind::Hangup, None),
        };
        self.client.relay(kind, to, payload).await
    }

    async fn send_chat(&self, _text: &str) -> Result<(), SignalError> {
        Err(SignalError::Unsupported("chat through the room server"))
    }

    async fn find_partner(&self) -> Result<(), SignalError> {
        Err(SignalError::Unsupported("random chat in a room"))
    }

    async fn end_call(&self) -> Result<(), SignalError> {
        Err(SignalError::Unsupported("random chat in a room"))
    }

    async fn network_changed(&self) {
        self.client.network_changed().await;
    }

    async fn close(&self) {
        self.client.close().await;
    }
}

/// The seed's limit on `request-room` (one per 5 s), with a margin for timer skew.
pub const REQUEST_INTERVAL: Duration = Duration::from_millis(5_100);

/// The matchmaking dialect as a session.
#[derive(Debug)]
pub struct RandomSession {
    client: Arc<MatchClient>,
    name: String,
    image: String,
    /// Looking for partners (from `find_partner` to `end_call`): a new matchmaker after a
    /// lost one is asked at once.
    wants: Arc<std::sync::atomic::AtomicBool>,
    /// When the last `request-room` went out, and a request waiting for the limit.
    last_request: Mutex<Option<Instant>>,
    pending: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RandomSession {
    fn cancel_pending(&self) {
        if let Some(task) = lock(&self.pending).take() {
            task.abort();
        }
    }
}

impl RandomSession {
    /// Connects to the matchmaking server (one, or the first that answers among those
    /// `matchmaker` chooses: see [`Matchmaker`]) as `name` (with a `userImage` data URL or
    /// empty). Ask for a partner with [`Signaling::find_partner`]. When the matchmaker goes
    /// away, the call it set up ends, and the session reconnects (to another matchmaker, when
    /// chosen) and asks there for a partner again.
    ///
    /// # Errors
    /// When no server can be reached, or for a name the server would refuse.
    pub async fn connect(
        matchmaker: impl Into<Matchmaker>,
        name: String,
        image: String,
    ) -> Result<(Self, mpsc::Receiver<SessionEvent>), SignalError> {
        liveloop_proto::matchmaking::RequestRoom {
            name: name.clone(),
            room_id: None,
            user_image: image.clone(),
        }
        .validate()
        .map_err(|e| SignalError::Invalid(e.to_string()))?;
        let (client, mut events) = MatchClient::connect(matchmaker.into()).await?;
        let client = Arc::new(client);
        let wants = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = mpsc::channel(1024);
        // Connected is signed in: socket.io names no one, so the id is empty.
        let _ = tx.send(SessionEvent::Ready { id: String::new() }).await;
        let (c, w, n, i) = (client.clone(), wants.clone(), name.clone(), image.clone());
        tokio::spawn(async move {
            let mut partner = RandomPartner::default();
            while let Some(event) = events.recv().await {
                let again = matches!(event, MatchEvent::Reconnected { .. });
                for out in partner.translate(event) {
                    if tx.send(out).await.is_err() {
                        return;
                    }
                }
                // A new server knows nothing of us: ask again if we were looking.
                if again
                    && w.load(std::sync::atomic::Ordering::SeqCst)
                    && let Err(e) = c.request(&n, &i).await
                {
                    tracing::warn!(error = %e, "request-room after a reconnect failed");
                }
            }
        });
        Ok((
            Self {
                client,
                name,
                image,
                wants,
                last_request: Mutex::new(None),
                pending: Mutex::new(None),
            },
            rx,
        ))
    }
}

/// Turns matchmaking events into session events, remembering the current partner.
#[derive(Debug, Default)]
pub struct RandomPartner {
    current: Option<String>,
}

impl RandomPartner {
    /// One matchmaking event in, the session events it means out. Pure.
    pub fn translate(&mut self, event: MatchEvent) -> Vec<SessionEvent> {
        match event {
            MatchEvent::Matched {
                peer,
                peer_name,
                make_offer,
                ..
            } => {
                let mut out = Vec::new();
                if let Some(old) = self.current.take()
                    && old != peer
                {
                    out.push(SessionEvent::PeerLeft { id: old });
                }
                self.current = Some(peer.clone());
                out.push(SessionEvent::PeerJoined {
                    id: peer,
                    name: Some(peer_name),
                    polite: !make_offer,
                });
                out
            }
            MatchEvent::Offer { from, sdp } | MatchEvent::Answer { from, sdp } => {
                vec![SessionEvent::Description { from, payload: sdp }]
            }
            MatchEvent::Candidate { from, candidate } => vec![SessionEvent::Candidate {
                from,
                payload: candidate,
            }],
            MatchEvent::Chat { from, message } => vec![SessionEvent::Chat {
                from,
                text: message,
            }],
            MatchEvent::PeerLeft => self
                .current
                .take()
                .map(|id| SessionEvent::PeerLeft { id })
                .into_iter()
                .collect(),
            MatchEvent::Error { code, message, .. } => vec![SessionEvent::Error { code, message }],
            // The server that relayed for the call is gone: the call is over (as if the
            // partner had left), and a search starts again on the next server.
            MatchEvent::Lost { attempt } => {
                let left = self.current.take().map(|id| SessionEvent::PeerLeft { id });
                left.into_iter()
                    .chain([SessionEvent::Reconnecting {
                        attempt,
                        delay: Duration::from_secs(1),
                    }])
                    .collect()
            }
            MatchEvent::Reconnected { url } => vec![
                SessionEvent::Ready { id: String::new() },
                SessionEvent::Matchmaker { url },
            ],
        }
    }
}

#[async_trait::async_trait]
impl Signaling for RandomSession {
    async fn send(&self, _to: &str, message: Outgoing) -> Result<(), SignalError> {
        match message {
            Outgoing::Description(d) => {
                if d.get("type").and_then(Value::as_str) == Some("offer") {
                    self.client.send_offer(d).await
                } else {
                    self.client.send_answer(d).await
                }
            }
            Outgoing::Candidate(c) => self.client.send_candidate(c).await,
            Outgoing::Hangup => self.client.stop().await,
        }
    }

    async fn send_chat(&self, text: &str) -> Result<(), SignalError> {
        self.client.send_chat(text).await
    }

    /// The call ends at once; the request goes out as soon as the server's limit (one per
    /// 5 s) allows, so pressing Next quickly never earns a `rate_limited` refusal.
    async fn find_partner(&self) -> Result<(), SignalError> {
        self.cancel_pending();
        self.wants.store(true, std::sync::atomic::Ordering::SeqCst);
        if self.client.state().peer.is_some() {
            self.client.stop().await?;
        }
        let wait = lock(&self.last_request)
            .map(|at| REQUEST_INTERVAL.saturating_sub(at.elapsed()))
            .unwrap_or_default();
        *lock(&self.last_request) = Some(Instant::now() + wait);
        if wait.is_zero() {
            return self.client.request(&self.name, &self.image).await;
        }
        let (client, name, image) = (self.client.clone(), self.name.clone(), self.image.clone());
        *lock(&self.pending) = Some(tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            if let Err(e) = client.request(&name, &image).await {
                tracing::warn!(error = %e, "delayed request-room failed");
            }
        }));
        Ok(())
    }

    async fn end_call(&self) -> Result<(), SignalError> {
        self.cancel_pending();
        self.wants.store(false, std::sync::atomic::Ordering::SeqCst);
        self.client.stop().await
    }

    async fn close(&self) {
        self.cancel_pending();
        self.client.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_become_joins_and_leaves_with_agreed_politeness() {
        let mut m = RoomMembers::new("bob".into());
        let out = m.translate(SignalEvent::Members(vec!["alice".into(), "bob".into()]));
        assert_eq!(
            out,
            vec![SessionEvent::PeerJoined {
                id: "alice".into(),
                name: None,
                polite: true
            }]
        );
        let out = m.translate(SignalEvent::Members(vec!["bob".into(), "carol".into()]));
        assert_eq!(
            out,
            vec![
                SessionEvent::PeerLeft { id: "alice".into() },
                SessionEvent::PeerJoined {
                    id: "carol".into(),
                    name: None,
                    polite: false
                }
            ]
        );
        // A rejoin with the same members changes nothing.
        assert!(
            m.translate(SignalEvent::Members(vec!["bob".into(), "carol".into()]))
                .is_empty()
        );
        let out = m.translate(SignalEvent::Relay {
            kind: RelayKind::Hangup,
            from: "carol".into(),
            payload: None,
        });
        assert_eq!(out, vec![SessionEvent::HungUp { id: "carol".into() }]);
        // After a reconnect, a member that has not rejoined yet is not dropped at once...
        m.translate(SignalEvent::Reconnecting {
            attempt: 1,
            delay: Duration::from_secs(1),
        });
        assert!(
            m.translate(SignalEvent::Members(vec!["bob".into()]))
                .is_empty()
        );
        assert!(
            m.translate(SignalEvent::Members(vec!["bob".into(), "carol".into()]))
                .is_empty()
        );
        // ...but a later list without it is a leave.
        assert_eq!(
            m.translate(SignalEvent::Members(vec!["bob".into()])),
            vec![SessionEvent::PeerLeft { id: "carol".into() }]
        );
    }

    #[test]
    fn a_new_match_ends_the_old_partner_and_peer_left_names_it() {
        let mut p = RandomPartner::default();
        let matched = |peer: &str, make_offer| MatchEvent::Matched {
            room_id: "r".into(),
            peer: peer.into(),
            peer_name: peer.to_uppercase(),
            peer_image: String::new(),
            make_offer,
        };
        assert_eq!(
            p.translate(matched("s1", true)),
            vec![SessionEvent::PeerJoined {
                id: "s1".into(),
                name: Some("S1".into()),
                polite: false
            }]
        );
        let out = p.translate(matched("s2", false));
        assert_eq!(out.len(), 2);
        assert_eq!(out[0], SessionEvent::PeerLeft { id: "s1".into() });
        assert_eq!(
            p.translate(MatchEvent::PeerLeft),
            vec![SessionEvent::PeerLeft { id: "s2".into() }]
        );
        assert!(p.translate(MatchEvent::PeerLeft).is_empty());
    }

    #[test]
    fn a_lost_matchmaker_ends_the_call_and_the_next_one_signs_in_again() {
        let mut p = RandomPartner::default();
        p.translate(MatchEvent::Matched {
            room_id: "r".into(),
            peer: "s1".into(),
            peer_name: "S1".into(),
            peer_image: String::new(),
            make_offer: true,
        });
        assert_eq!(
            p.translate(MatchEvent::Lost { attempt: 1 }),
            vec![
                SessionEvent::PeerLeft { id: "s1".into() },
                SessionEvent::Reconnecting {
                    attempt: 1,
                    delay: Duration::from_secs(1)
                }
            ]
        );
        // A second failed attempt has no call left to end.
        assert_eq!(p.translate(MatchEvent::Lost { attempt: 2 }).len(), 1);
        assert_eq!(
            p.translate(MatchEvent::Reconnected {
                url: "http://10.0.0.2:3000".into()
            }),
            vec![
                SessionEvent::Ready { id: String::new() },
                SessionEvent::Matchmaker {
                    url: "http://10.0.0.2:3000".into()
                }
            ]
        );
    }
}
