//! The matchmaking-dialect client (seed 000) over socket.io.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::FutureExt;
use liveloop_proto::matchmaking::{self as mm, RequestRoom};
use rust_socketio::asynchronous::{Client, ClientBuilder, ReconnectSettings};
use rust_socketio::{Event, Payload};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::SignalError;

/// What the matchmaking client reports.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum MatchEvent {
    /// A call started with `peer`. `make_offer`: this side sends the offer.
    Matched {
        room_id: String,
        peer: String,
        peer_name: String,
        peer_image: String,
        make_offer: bool,
    },
    Offer {
        from: String,
        sdp: Value,
    },
    Answer {
        from: String,
        sdp: Value,
    },
    Candidate {
        from: String,
        candidate: Value,
    },
    Chat {
        from: String,
        message: String,
    },
    /// The peer stopped or left; the server queued us again.
    PeerLeft,
    Error {
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
    /// The connection to the matchmaker dropped: the call it set up, if any, is over (its
    /// server, which alone could relay for it, is gone). Reconnecting, attempt `attempt`.
    Lost {
        attempt: u32,
    },
    /// Connected again, to `url` (another matchmaker when [`Matchmaker::Chosen`] chose
    /// another): nobody there knows us yet, so the search starts again.
    Reconnected {
        url: String,
    },
}

/// Where random chat finds its matchmaker.
#[derive(Clone)]
pub enum Matchmaker {
    /// One server (`http://host:3000`): a lost connection comes back to it.
    At(String),
    /// The candidates in order of preference, asked anew at every connect and reconnect (the
    /// matchmakers LiveLoop apps on this network share, say); the first that accepts a TCP
    /// connection is used, so a server that has gone without saying so is passed over.
    Chosen(Arc<dyn Fn() -> Vec<String> + Send + Sync>),
}

impl std::fmt::Debug for Matchmaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::At(url) => f.debug_tuple("At").field(url).finish(),
            Self::Chosen(_) => f.write_str("Chosen(..)"),
        }
    }
}

impl From<&str> for Matchmaker {
    fn from(url: &str) -> Self {
        Self::At(url.to_owned())
    }
}

impl From<&String> for Matchmaker {
    fn from(url: &String) -> Self {
        Self::At(url.clone())
    }
}

impl From<String> for Matchmaker {
    fn from(url: String) -> Self {
        Self::At(url)
    }
}

/// How long a candidate matchmaker has to accept a TCP connection before the next is tried.
pub const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

/// The `host:port` a matchmaker URL (`http(s)://host[:port][/...]`) connects to.
fn authority(url: &str) -> Option<String> {
    let (secure, rest) = if let Some(rest) = url.strip_prefix("https://") {
        (true, rest)
    } else {
        (false, url.strip_prefix("http://")?)
    };
    let host = rest.split(['/', '?', '#']).next()?.rsplit('@').next()?;
    if host.is_empty() {
        return None;
    }
    let has_port = match host.rfind(']') {
        Some(end) => host.get(end + 1..).is_some_and(|t| t.starts_with(':')),
        None => host.contains(':'),
    };
    Some(if has_port {
        host.to_owned()
    } else {
        format!("{host}:{}", if secure { 443 } else { 80 })
    })
}

impl Matchmaker {
    /// The matchmaker to connect to now: the fixed one, or the first candidate that answers.
    /// `None` when there is no candidate (or none answered).
    pub async fn pick(&self) -> Option<String> {
        let candidates = match self {
            Self::At(url) => return Some(url.clone()),
            Self::Chosen(choose) => choose(),
        };
        for url in candidates {
            let Some(addr) = authority(&url) else {
                continue;
            };
            match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(&addr)).await {
                Ok(Ok(_)) => return Some(url),
                Ok(Err(e)) => tracing::info!(%url, error = %e, "matchmaker passed over"),
                Err(_) => tracing::info!(%url, "matchmaker passed over: no answer"),
            }
        }
        None
    }
}

/// The call as this client knows it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CallState {
    pub room_id: Option<String>,
    pub peer: Option<String>,
    pub my_name: String,
}

fn text(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

/// Turns one server event into client events, updating the call state. Pure, so the one-sided
/// `match-done` case is testable without a server.
#[must_use]
pub fn translate(state: &mut CallState, event: &str, payload: &Value) -> Vec<MatchEvent> {
    match event {
        mm::EV_MATCH_DONE => {
            let details = payload
                .get("remoteUserDetails")
                .cloned()
                .unwrap_or_default();
            let peer = text(&details, "socket");
            let room_id = text(payload, "roomId");
            state.peer = Some(peer.clone());
            state.room_id = Some(room_id.clone());
            // The public original sends match-done only to the side that offers.
            let make_offer = payload
                .get("makeOffer")
                .and_then(Value::as_bool)
                .unwrap_or(true);
            vec![MatchEvent::Matched {
                room_id,
                peer,
                peer_name: text(&details, "userName"),
                peer_image: text(&details, "userImage"),
                make_offer,
            }]
        }
        mm::EV_OFFER => {
            let details = payload
                .get("remoteUserDetails")
                .cloned()
                .unwrap_or_default();
            let from = text(&details, "socket");
            let mut out = Vec::new();
            if state.peer.as_deref() != Some(from.as_str()) {
                // No match-done for us: the offer is how we learn of the call.
                state.peer = Some(from.clone());
                state.room_id = Some(text(payload, "roomId"));
                out.push(MatchEvent::Matched {
                    room_id: text(payload, "roomId"),
                    peer: from.clone(),
                    peer_name: text(&details, "userName"),
                    peer_image: String::new(),
                    make_offer: false,
                });
            }
            out.push(MatchEvent::Offer {
                from,
                sdp: payload.get("offer").cloned().unwrap_or_default(),
            });
            out
        }
        mm::EV_ANSWER => vec![MatchEvent::Answer {
            from: text(payload, "remoteSocketId"),
            sdp: payload.get("ans").cloned().unwrap_or_default(),
        }],
        mm::EV_NEW_ICE => vec![MatchEvent::Candidate {
            from: text(payload, "from"),
            candidate: payload.get("candidate").cloned().unwrap_or_default(),
        }],
        mm::EV_MESSAGE_RECEIVED => vec![MatchEvent::Chat {
            from: text(payload, "from"),
            message: text(payload, "message"),
        }],
        mm::EV_STOP_BY_REMOTE => {
            state.peer = None;
            state.room_id = None;
            vec![MatchEvent::PeerLeft]
        }
        mm::EV_ERROR => vec![MatchEvent::Error {
            code: text(payload, "code"),
            message: text(payload, "message"),
            retry_after_ms: payload.get("retryAfterMs").and_then(Value::as_u64),
        }],
        _ => Vec::new(),
    }
}

/// A connected matchmaking client.
pub struct MatchClient {
    client: Client,
    state: Arc<Mutex<CallState>>,
}

impl std::fmt::Debug for MatchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MatchClient")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}

/// Events waiting for the application. rust_socketio awaits each callback before it reads the
/// next packet, so a full queue stops the reading: the server's buffer for this socket fills
/// and it drops the connection, and nothing is lost in between (no event is ever dropped
/// here, and memory stays bounded by this cap).
pub const EVENT_QUEUE: usize = 256;

/// The callback's future: queues `events` in order, waiting while the queue is full.
fn forward(
    tx: mpsc::Sender<MatchEvent>,
    events: Vec<MatchEvent>,
) -> futures_util::future::BoxFuture<'static, ()> {
    async move {
        for ev in events {
            if tx.send(ev).await.is_err() {
                return; // The application dropped the receiver: nobody is listening.
            }
        }
    }
    .boxed()
}

fn first(payload: Payload) -> Value {
    match payload {
        Payload::Text(mut v) if !v.is_empty() => v.swap_remove(0),
        _ => Value::Null,
    }
}

impl MatchClient {
    /// Connects to a matchmaking server, reconnecting by itself with a 1 s → 5 s delay (to the
    /// matchmaker [`Matchmaker::pick`] picks then), and waits until the server has accepted
    /// the connection. A reconnect reports [`MatchEvent::Lost`], then
    /// [`MatchEvent::Reconnected`].
    ///
    /// # Errors
    /// [`SignalError::Invalid`] when no matchmaker can be reached.
    pub async fn connect(
        matchmaker: Matchmaker,
    ) -> Result<(Self, mpsc::Receiver<MatchEvent>), SignalError> {
        let url = matchmaker.pick().await.ok_or_else(|| {
            SignalError::Invalid("no matchmaking server answers on this network".into())
        })?;
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let state = Arc::new(Mutex::new(CallState::default()));
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
        let ready_tx = Mutex::new(Some(ready_tx));
        let (st_any, tx_any) = (state.clone(), tx.clone());
        let (st_err, tx_err) = (state.clone(), tx.clone());
        // The server now, and the attempts since the connection was lost (0: connected).
        let current = Arc::new(Mutex::new(url.clone()));
        let attempts = Arc::new(AtomicU32::new(0));
        let (cur_re, att_re, st_re, tx_re) =
            (current.clone(), attempts.clone(), state.clone(), tx.clone());
        let (cur_con, att_con, tx_con) = (current, attempts, tx.clone());
        let client = ClientBuilder::new(url)
            .reconnect(true)
            .reconnect_on_disconnect(true)
            .reconnect_delay(1_000, 5_000)
            .on_reconnect(move || {
                let attempt = att_re.fetch_add(1, Ordering::SeqCst) + 1;
                // Whatever call the old server set up is over.
                {
                    let mut st = st_re.lock().unwrap_or_else(PoisonError::into_inner);
                    st.peer = None;
                    st.room_id = None;
                }
                let (matchmaker, current, tx) = (matchmaker.clone(), cur_re.clone(), tx_re.clone());
                async move {
                    let _ = tx.send(MatchEvent::Lost { attempt }).await;
                    let mut settings = ReconnectSettings::new();
                    if let Some(url) = matchmaker.pick().await {
                        settings.address(url.clone());
                        *current.lock().unwrap_or_else(PoisonError::into_inner) = url;
                    }
                    settings
                }
                .boxed()
            })
            .on_any(move |event: Event, payload: Payload, _| {
                let name = String::from(event);
                let evs = {
                    let mut st = st_any.lock().unwrap_or_else(PoisonError::into_inner);
                    translate(&mut st, &name, &first(payload))
                };
                forward(tx_any.clone(), evs)
            })
            .on(Event::Error, move |payload: Payload, _| {
                let payload = first(payload);
                let evs = if payload.is_object() {
                    let mut st = st_err.lock().unwrap_or_else(PoisonError::into_inner);
                    translate(&mut st, mm::EV_ERROR, &payload)
                } else {
                    Vec::new()
                };
                forward(tx_err.clone(), evs)
            })
            .on(Event::Connect, move |_, _| {
                if let Some(tx) = ready_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(());
                }
                let again = att_con.swap(0, Ordering::SeqCst) > 0;
                let url = cur_con
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                forward(
                    tx_con.clone(),
                    if again {
                        vec![MatchEvent::Reconnected { url }]
                    } else {
                        Vec::new()
                    },
                )
            })
            .connect()
            .await
            .map_err(|e| {
                SignalError::Invalid(format!("cannot reach the matchmaking server: {e}"))
            })?;
        tokio::time::timeout(std::time::Duration::from_secs(10), ready)
            .await
            .map_err(|_| {
                SignalError::Invalid("the matchmaking server did not accept the connection".into())
            })?
            .map_err(|_| SignalError::Stopped)?;
        Ok((Self { client, state }, events))
    }

    /// The current call.
    #[must_use]
    pub fn state(&self) -> CallState {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    async fn emit(&self, event: &str, payload: Value) -> Result<(), SignalError> {
        self.client
            .emit(event, payload)
            .await
            .map_err(|_| SignalError::Stopped)
    }

    fn call(&self) -> Result<(String, String, String), SignalError> {
        let st = self.state();
        match (st.room_id, st.peer) {
            (Some(room), Some(peer)) => Ok((room, peer, st.my_name)),
            _ => Err(SignalError::Invalid("not in a call".into())),
        }
    }

    /// Asks for a match.
    ///
    /// # Errors
    /// [`SignalError::Invalid`] for a name or image the server would refuse.
    pub async fn request(&self, name: &str, image: &str) -> Result<(), SignalError> {
        let req = RequestRoom {
            name: name.to_owned(),
            room_id: None,
            user_image: image.to_owned(),
        };
        let name = req
            .validate()
            .map_err(|e| SignalError::Invalid(e.to_string()))?
            .to_owned();
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .my_name
            .clone_from(&name);
        self.emit(
            mm::EV_REQUEST_ROOM,
            json!({"name": name, "roomId": null, "userImage": image}),
        )
        .await
    }

    /// Sends an offer to the current peer.
    ///
    /// # Errors
    /// When not in a call.
    pub async fn send_offer(&self, sdp: Value) -> Result<(), SignalError> {
        let (room, peer, name) = self.call()?;
        self.emit(
            mm::EV_OFFER,
            json!({"offer": sdp, "roomId": room, "name": name, "remoteSocketId": peer}),
        )
        .await
    }

    /// Sends an answer to the current peer.
    ///
    /// # Errors
    /// When not in a call.
    pub async fn send_answer(&self, sdp: Value) -> Result<(), SignalError> {
        let (room, peer, name) = self.call()?;
        self.emit(
            mm::EV_ANSWER,
            json!({"ans": sdp, "roomId": room, "name": name, "remoteSocketId": peer}),
        )
        .await
    }

    /// Sends an ICE candidate to the current peer.
    ///
    /// # Errors
    /// When not in a call.
    pub async fn send_candidate(&self, candidate: Value) -> Result<(), SignalError> {
        let (_, peer, _) = self.call()?;
        self.emit(mm::EV_SEND_ICE, json!({"to": peer, "candidate": candidate}))
            .await
    }

    /// Sends a chat message (1-1000 characters) to the call.
    ///
    /// # Errors
    /// For an empty or too long message, or when not in a call.
    pub async fn send_chat(&self, message: &str) -> Result<(), SignalError> {
        mm::validate_chat(message).map_err(|e| SignalError::Invalid(e.to_string()))?;
        let (room, peer, _) = self.call()?;
        self.emit(
            mm::EV_NEW_MESSAGE,
            json!({"message": message, "roomId": room, "remoteSocket": peer}),
        )
        .await
    }

    /// Ends the current call (the peer is told and queued again).
    ///
    /// # Errors
    /// When the connection is gone.
    pub async fn stop(&self) -> Result<(), SignalError> {
        let st = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            let before = st.clone();
            st.peer = None;
            st.room_id = None;
            before
        };
        self.emit(
            mm::EV_STOP_CALL,
            json!({"roomId": st.room_id, "remoteSocketId": st.peer, "name": st.my_name}),
        )
        .await
    }

    /// Disconnects.
    pub async fn disconnect(&self) {
        let _ = self.client.disconnect().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_matchmaker_url_names_the_address_to_probe() {
        assert_eq!(
            authority("http://10.0.0.2:3000").as_deref(),
            Some("10.0.0.2:3000")
        );
        assert_eq!(
            authority("http://[fd00::2]:3000/x").as_deref(),
            Some("[fd00::2]:3000")
        );
        assert_eq!(
            authority("http://[fd00::2]").as_deref(),
            Some("[fd00::2]:80")
        );
        assert_eq!(
            authority("https://mm.example.com").as_deref(),
            Some("mm.example.com:443")
        );
        assert_eq!(authority("ws://x:1"), None);
        assert_eq!(authority("http://"), None);
    }

    #[tokio::test]
    async fn a_chosen_matchmaker_is_the_first_that_answers() {
        let live = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (live, dead_addr) = (live.local_addr().unwrap(), dead.local_addr().unwrap());
        drop(dead);
        let urls = vec![
            format!("http://{dead_addr}"),
            "not a url".to_owned(),
            format!("http://{live}"),
        ];
        let m = Matchmaker::Chosen(Arc::new(move || urls.clone()));
        assert_eq!(m.pick().await, Some(format!("http://{live}")));
        let none = Matchmaker::Chosen(Arc::new(Vec::new));
        assert_eq!(none.pick().await, None);
    }

    #[test]
    fn one_sided_match_done_still_starts_the_call_from_the_offer() {
        let mut st = CallState::default();
        let out = translate(
            &mut st,
            "negotiation-call-offer",
            &json!({
                "remoteUserDetails": {"socket": "s1", "userName": "Ada"}, "roomId": "r9", "offer": {"type": "offer", "sdp": "v=0"}
            }),
        );
        assert_eq!(out.len(), 2);
        assert!(
            matches!(&out[0], MatchEvent::Matched { peer, make_offer: false, room_id, .. } if peer == "s1" && room_id == "r9")
        );
        assert!(matches!(&out[1], MatchEvent::Offer { from, .. } if from == "s1"));
        assert_eq!(st.peer.as_deref(), Some("s1"));
        // A renegotiation offer from the same peer is just an offer.
        let again = translate(
            &mut st,
            "negotiation-call-offer",
            &json!({"remoteUserDetails": {"socket": "s1"}, "roomId": "r9", "offer": {}}),
        );
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn match_done_without_make_offer_means_offer_like_the_original() {
        let mut st = CallState::default();
        let out = translate(
            &mut st,
            "match-done",
            &json!({"roomId": "r1", "remoteUserDetails": {"socket": "s2", "userName": "Bo", "userImage": ""}}),
        );
        assert!(matches!(
            &out[0],
            MatchEvent::Matched {
                make_offer: true,
                ..
            }
        ));
        let out = translate(
            &mut st,
            "match-done",
            &json!({"roomId": "r1", "remoteUserDetails": {"socket": "s2"}, "makeOffer": false}),
        );
        assert!(matches!(
            &out[0],
            MatchEvent::Matched {
                make_offer: false,
                ..
            }
        ));
        assert_eq!(
            translate(&mut st, "stop-by-remote-user", &Value::Null),
            vec![MatchEvent::PeerLeft]
        );
        assert_eq!(st.peer, None);
        let e = translate(
            &mut st,
            "error",
            &json!({"code": "rate_limited", "message": "slow", "retryAfterMs": 1200}),
        );
        assert_eq!(
            e,
            vec![MatchEvent::Error {
                code: "rate_limited".into(),
                message: "slow".into(),
                retry_after_ms: Some(1200)
            }]
        );
        assert!(translate(&mut st, "unknown", &Value::Null).is_empty());
    }
}
