//! Random 1:1 matchmaking (seed 000), sans-IO.
//!
//! Users are socket ids. The driver calls [`Matchmaker::connect`] when a socket arrives, one
//! `handle_*` per event, [`Matchmaker::disconnect`] when it goes, and drains
//! [`Matchmaker::poll_output`] into socket.io emits after each call.
//!
//! **Invariants:** a user is idle, queued (exactly once) or in exactly one call; a call has
//! exactly two users, each the other's peer; signaling is forwarded only between the two users
//! of one call; a user is never matched with itself.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use liveloop_proto::matchmaking::{
    self as mm, Answer, ErrorCode, ErrorEvent, IceIn, IceOut, MatchDone, MessageReceived,
    NewMessage, OfferIn, OfferOut, RemoteUserDetails, RequestRoom, StopCall,
};
use serde::Serialize;
use serde_json::Value;

use crate::rate::TokenBucket;

/// Limits of the matchmaking service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Users waiting at most; more get `queue_full`.
    pub queue_capacity: usize,
    /// `request-room`: one per this interval.
    pub request_interval: Duration,
    /// `newMessage`: this many per minute.
    pub messages_per_minute: u32,
    /// Offers, answers and ICE candidates together: this many per second...
    pub relays_per_sec: u32,
    /// ...with bursts of this many (a call's start trickles dozens of candidates at once).
    pub relay_burst: u32,
    /// Two users who just left each other are paired again only when nobody else has come
    /// along for this long (someone pressing Next expects a new face).
    pub rematch_grace: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            request_interval: Duration::from_secs(5),
            messages_per_minute: 10,
            relays_per_sec: 50,
            relay_burst: 200,
            rematch_grace: Duration::from_secs(3),
        }
    }
}

/// One socket.io emit.
#[derive(Debug, Clone, PartialEq)]
pub struct Emit {
    pub to: String,
    pub event: &'static str,
    pub payload: Value,
}

/// The service's counts, for `GET /api/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Display names of the waiting users, in queue order.
    pub queue: Vec<String>,
    pub active_rooms: usize,
    pub total_rooms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Idle,
    Queued,
    InCall { room: String, peer: String },
}

#[derive(Debug)]
struct User {
    name: String,
    image: String,
    state: State,
    /// The user this one last talked to: not re-paired at once while others wait.
    last_peer: Option<String>,
    requests: TokenBucket,
    messages: TokenBucket,
    /// Offers, answers and candidates.
    relays: TokenBucket,
    /// When this user was last told a relay was refused for its rate: at most one such
    /// `rate_limited` a second, however many relays are refused (one per refusal would let a
    /// flood fill its own outbound buffer with errors).
    relay_refusal_told: Option<Duration>,
}

/// The queue, the calls and every connected user.
#[derive(Debug, Default)]
pub struct Matchmaker {
    config: Config,
    users: HashMap<String, User>,
    /// Waiting users and when they started waiting.
    queue: VecDeque<(String, Duration)>,
    calls: HashMap<String, (String, String)>,
    total_rooms: u64,
    out: VecDeque<Emit>,
}

/// A rejected event, before it becomes an `error` emit.
struct Reject {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Reject {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }
}

type Outcome = Result<(), Reject>;

impl Matchmaker {
    #[must_use]
    pub fn new(config: Config) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn status(&self) -> Status {
        let queue = self
            .queue
            .iter()
            .filter_map(|(s, _)| self.users.get(s))
            .map(|u| u.name.clone())
            .collect();
        Status {
            queue,
            active_rooms: self.calls.len(),
            total_rooms: self.total_rooms,
        }
    }

    /// The next emit.
    pub fn poll_output(&mut self) -> Option<Emit> {
        self.out.pop_front()
    }

    pub fn connect(&mut self, now: Duration, socket: &str) {
        let requests = TokenBucket::per_window(1, self.config.request_interval, now);
        let messages = TokenBucket::per_window(
            self.config.messages_per_minute,
            Duration::from_secs(60),
            now,
        );
        let relays = TokenBucket::new(
            self.config.relay_burst,
            self.config.relays_per_sec as f32,
            now,
        );
        let user = User {
            name: String::new(),
            image: String::new(),
            state: State::Idle,
            last_peer: None,
            requests,
            messages,
            relays,
            relay_refusal_told: None,
        };
        self.users.insert(socket.to_owned(), user);
    }

    /// The socket is gone: its peer (if any) hears `stop-by-remote-user` and is queued again.
    pub fn disconnect(&mut self, now: Duration, socket: &str) {
        self.end_call_of(now, socket);
        self.queue.retain(|(s, _)| s != socket);
        self.users.remove(socket);
    }

    /// `request-room`. `payload` is `None` when it did not have the right shape.
    pub fn handle_request_room(
        &mut self,
        now: Duration,
        socket: &str,
        payload: Option<RequestRoom>,
    ) {
        let outcome = self.request_room(now, socket, payload);
        self.finish(socket, mm::EV_REQUEST_ROOM, outcome);
    }

    /// `negotiation-call-offer`. Offers, answers and candidates share one rate limit per socket
    /// ([`Config::relays_per_sec`], [`Config::relay_burst`]).
    pub fn handle_offer(&mut self, now: Duration, socket: &str, payload: Option<OfferIn>) {
        let outcome = self
            .relay_allowed(now, socket)
            .and_then(|()| self.offer(socket, payload));
        self.finish_relay(now, socket, mm::EV_OFFER, outcome);
    }

    /// `negotiation-call-answer` (rate limited as [`Matchmaker::handle_offer`]).
    pub fn handle_answer(&mut self, now: Duration, socket: &str, payload: Option<Answer>) {
        let outcome = self
            .relay_allowed(now, socket)
            .and_then(|()| self.answer(socket, payload));
        self.finish_relay(now, socket, mm::EV_ANSWER, outcome);
    }

    /// `send-new-ice-candidates` (rate limited as [`Matchmaker::handle_offer`]).
    pub fn handle_ice(&mut self, now: Duration, socket: &str, payload: Option<IceIn>) {
        let outcome = self
            .relay_allowed(now, socket)
            .and_then(|()| self.ice(socket, payload));
        self.finish_relay(now, socket, mm::EV_SEND_ICE, outcome);
    }

    /// Takes a relay token, or refuses with `rate_limited`.
    fn relay_allowed(&mut self, now: Duration, socket: &str) -> Outcome {
        let per_sec = self.config.relays_per_sec;
        let burst = self.config.relay_burst;
        let Some(user) = self.users.get_mut(socket) else {
            // Unknown sockets are refused by the handler itself (`not_in_call`).
            return Ok(());
        };
        user.relays.try_take(now).map_err(|wait| Reject {
            code: ErrorCode::RateLimited,
            message: format!(
                "offers, answers and candidates are limited to {per_sec} per second \
                 (bursts of {burst})"
            ),
            retry_after: Some(wait),
        })
    }

    /// As [`Matchmaker::finish`], but a `rate_limited` refusal is told at most once a second.
    fn finish_relay(&mut self, now: Duration, socket: &str, event: &'static str, outcome: Outcome) {
        if let Err(Reject {
            code: ErrorCode::RateLimited,
            ..
        }) = &outcome
        {
            let Some(user) = self.users.get_mut(socket) else {
                return;
            };
            let told_recently = user
                .relay_refusal_told
                .is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(1));
            if told_recently {
                return;
            }
            user.relay_refusal_told = Some(now);
        }
        self.finish(socket, event, outcome);
    }

    pub fn handle_message(&mut self, now: Duration, socket: &str, payload: Option<NewMessage>) {
        let outcome = self.message(now, socket, payload);
        self.finish(socket, mm::EV_NEW_MESSAGE, outcome);
    }

    /// `stop-call`: ends the call (the peer is told and queued again) or leaves the queue.
    /// `payload` is `None` when it was unreadable (too large, not an object, wrong field
    /// types): that is `invalid_payload` and changes nothing. A stop that names nothing is
    /// `Some(StopCall::default())`.
    pub fn handle_stop(&mut self, now: Duration, socket: &str, payload: Option<StopCall>) {
        let outcome = self.stop(now, socket, payload);
        self.finish(socket, mm::EV_STOP_CALL, outcome);
    }

    /// An event name this service does not know.
    pub fn handle_unknown(&mut self, socket: &str, event: &str) {
        let event: String = event.chars().take(64).collect();
        let outcome = Err(Reject::new(
            ErrorCode::UnknownEvent,
            format!("unknown event {event:?}"),
        ));
        self.finish_named(socket, event, outcome);
    }

    fn finish(&mut self, socket: &str, event: &'static str, outcome: Outcome) {
        self.finish_named(socket, event.to_owned(), outcome);
    }

    fn finish_named(&mut self, socket: &str, event: String, outcome: Outcome) {
        if let Err(reject) = outcome {
            let payload = ErrorEvent {
                code: reject.code.as_str().to_owned(),
                message: reject.message,
                event: Some(event),
                retry_after_ms: reject
                    .retry_after
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            };
            self.emit(socket, mm::EV_ERROR, &payload);
        }
    }

    fn emit<T: Serialize>(&mut self, to: &str, event: &'static str, payload: &T) {
        // Our payload types are plain structs of strings, numbers and JSON values.
        let payload = serde_json::to_value(payload).unwrap_or(Value::Null);
        self.out.push_back(Emit {
            to: to.to_owned(),
            event,
            payload,
        });
    }

    fn request_room(
        &mut self,
        now: Duration,
        socket: &str,
        payload: Option<RequestRoom>,
    ) -> Outcome {
        let capacity = self.config.queue_capacity;
        let queued = self.queue.len();
        let user = self
            .users
            .get_mut(socket)
            .ok_or_else(|| Reject::new(ErrorCode::InvalidPayload, "unknown socket"))?;
        if let Err(wait) = user.requests.try_take(now) {
            return Err(Reject {
                code: ErrorCode::RateLimited,
                message: "request-room is limited to one per 5 seconds".into(),
                retry_after: Some(wait),
            });
        }
        let payload = payload.ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidPayload,
                "request-room needs {name, roomId, userImage}",
            )
        })?;
        let name = payload
            .validate()
            .map_err(|e| Reject::new(ErrorCode::InvalidPayload, e.to_string()))?;
        match user.state {
            State::Idle => {}
            State::Queued => {
                return Err(Reject::new(
                    ErrorCode::AlreadyQueued,
                    "already waiting for a match",
                ));
            }
            State::InCall { .. } => {
                return Err(Reject::new(
                    ErrorCode::AlreadyQueued,
                    "already in a call; send stop-call first",
                ));
            }
        }
        user.name = name.to_owned();
        user.image = payload.user_image;
        // A newcomer who can be paired at once never occupies the queue, so only one who has
        // to wait can find it full.
        if self.partner_for(socket).is_none() && queued >= capacity {
            if let Some(u) = self.users.get_mut(socket) {
                u.state = State::Idle;
            }
            return Err(Reject::new(
                ErrorCode::QueueFull,
                "the queue is full; try again later",
            ));
        }
        self.enqueue(now, socket);
        Ok(())
    }

    /// Pairs ex-partners that have waited [`Config::rematch_grace`] with nobody else arriving.
    /// The driver calls this about once a second.
    pub fn handle_timeout(&mut self, now: Duration) {
        let grace = self.config.rematch_grace;
        while self.queue.len() >= 2 {
            // Anyone still queued beside another user is only there because the two are
            // ex-partners; once one has waited out the grace, they are paired after all.
            let Some(i) = self
                .queue
                .iter()
                .position(|(_, since)| now.saturating_sub(*since) >= grace)
            else {
                break;
            };
            let Some(j) = (0..self.queue.len()).find(|&j| j != i) else {
                break;
            };
            let (first, second) = (i.min(j), i.max(j));
            let Some((b, _)) = self.queue.remove(second) else {
                break;
            };
            let Some((a, _)) = self.queue.remove(first) else {
                break;
            };
            self.pair(&a, &b);
        }
    }

    /// Queue position of the user `socket` would be paired with now: first come, first served,
    /// skipping anyone it just left (see `handle_timeout`).
    fn partner_for(&self, socket: &str) -> Option<usize> {
        self.queue
            .iter()
            .position(|(s, _)| s != socket && !self.just_met(s, socket))
    }

    /// True if `a` and `b` just talked to each other (either one's last partner is the other).
    fn just_met(&self, a: &str, b: &str) -> bool {
        let last = |x: &str| self.users.get(x).and_then(|u| u.last_peer.as_deref());
        last(a) == Some(b) || last(b) == Some(a)
    }

    /// Puts an idle user at the back of the queue and pairs it if it can.
    fn enqueue(&mut self, now: Duration, socket: &str) {
        let Some(user) = self.users.get_mut(socket) else {
            return;
        };
        user.state = State::Queued;
        match self.partner_for(socket).and_then(|i| self.queue.remove(i)) {
            Some((waiting, _)) => self.pair(&waiting, socket),
            None => self.queue.push_back((socket.to_owned(), now)),
        }
    }

    /// `first` waited longer and sends the offer.
    fn pair(&mut self, first: &str, second: &str) {
        self.total_rooms += 1;
        let room = format!("room-{}", self.total_rooms);
        for (me, peer) in [(first, second), (second, first)] {
            if let Some(u) = self.users.get_mut(me) {
                u.state = State::InCall {
                    room: room.clone(),
                    peer: peer.to_owned(),
                };
            }
        }
        self.calls
            .insert(room.clone(), (first.to_owned(), second.to_owned()));
        for (me, peer, make_offer) in [(first, second, true), (second, first, false)] {
            let Some(p) = self.users.get(peer) else {
                continue;
            };
            let details = RemoteUserDetails {
                socket: peer.to_owned(),
                user_name: p.name.clone(),
                user_image: Some(p.image.clone()),
            };
            let done = MatchDone {
                room_id: room.clone(),
                remote_user_details: details,
                make_offer,
            };
            self.emit(me, mm::EV_MATCH_DONE, &done);
        }
    }

    /// The caller's call: (room, peer), or `not_in_call`.
    fn call_of(&self, socket: &str) -> Result<(String, String), Reject> {
        match self.users.get(socket).map(|u| &u.state) {
            Some(State::InCall { room, peer }) => Ok((room.clone(), peer.clone())),
            _ => Err(Reject::new(ErrorCode::NotInCall, "not in a call")),
        }
    }

    fn check_target(
        room: &str,
        peer: &str,
        room_id: Option<&str>,
        target: Option<&str>,
    ) -> Outcome {
        if room_id.is_some_and(|r| r != room) || target.is_some_and(|t| t != peer) {
            return Err(Reject::new(
                ErrorCode::InvalidTarget,
                "that room or socket is not your current call",
            ));
        }
        Ok(())
    }

    fn name_of(&self, socket: &str) -> String {
        self.users
            .get(socket)
            .map(|u| u.name.clone())
            .unwrap_or_default()
    }

    fn offer(&mut self, socket: &str, payload: Option<OfferIn>) -> Outcome {
        let p = payload.ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidPayload,
                "needs {offer, roomId, name, remoteSocketId}",
            )
        })?;
        let (room, peer) = self.call_of(socket)?;
        Self::check_target(&room, &peer, Some(&p.room_id), Some(&p.remote_socket_id))?;
        let details = RemoteUserDetails {
            socket: socket.to_owned(),
            user_name: self.name_of(socket),
            user_image: None,
        };
        self.emit(
            &peer,
            mm::EV_OFFER,
            &OfferOut {
                remote_user_details: details,
                room_id: room,
                offer: p.offer,
            },
        );
        Ok(())
    }

    fn answer(&mut self, socket: &str, payload: Option<Answer>) -> Outcome {
        let p = payload.ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidPayload,
                "needs {ans, roomId, name, remoteSocketId}",
            )
        })?;
        let (room, peer) = self.call_of(socket)?;
        Self::check_target(&room, &peer, Some(&p.room_id), Some(&p.remote_socket_id))?;
        let out = Answer {
            ans: p.ans,
            room_id: room,
            name: self.name_of(socket),
            remote_socket_id: socket.to_owned(),
        };
        self.emit(&peer, mm::EV_ANSWER, &out);
        Ok(())
    }

    fn ice(&mut self, socket: &str, payload: Option<IceIn>) -> Outcome {
        let p = payload
            .ok_or_else(|| Reject::new(ErrorCode::InvalidPayload, "needs {to, candidate}"))?;
        let (room, peer) = self.call_of(socket)?;
        Self::check_target(&room, &peer, None, Some(&p.to))?;
        self.emit(
            &peer,
            mm::EV_NEW_ICE,
            &IceOut {
                candidate: p.candidate,
                from: socket.to_owned(),
            },
        );
        Ok(())
    }

    fn message(&mut self, now: Duration, socket: &str, payload: Option<NewMessage>) -> Outcome {
        let user = self
            .users
            .get_mut(socket)
            .ok_or_else(|| Reject::new(ErrorCode::NotInCall, "not in a call"))?;
        if let Err(wait) = user.messages.try_take(now) {
            return Err(Reject {
                code: ErrorCode::RateLimited,
                message: "newMessage is limited to 10 per minute".into(),
                retry_after: Some(wait),
            });
        }
        let p = payload.ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidPayload,
                "needs {message, roomId, remoteSocket}",
            )
        })?;
        mm::validate_chat(&p.message)
            .map_err(|e| Reject::new(ErrorCode::InvalidPayload, e.to_string()))?;
        let (room, peer) = self.call_of(socket)?;
        Self::check_target(
            &room,
            &peer,
            p.room_id.as_deref(),
            p.remote_socket.as_deref(),
        )?;
        let msg = MessageReceived {
            from: socket.to_owned(),
            message: p.message,
        };
        self.emit(socket, mm::EV_MESSAGE_RECEIVED, &msg);
        self.emit(&peer, mm::EV_MESSAGE_RECEIVED, &msg);
        Ok(())
    }

    fn stop(&mut self, now: Duration, socket: &str, payload: Option<StopCall>) -> Outcome {
        let p = payload.ok_or_else(|| {
            Reject::new(
                ErrorCode::InvalidPayload,
                "stop-call takes nothing, null or {roomId?, remoteSocketId?, name?}",
            )
        })?;
        let state = self.users.get(socket).map(|u| u.state.clone());
        match state {
            Some(State::InCall { room, peer }) => {
                Self::check_target(
                    &room,
                    &peer,
                    p.room_id.as_deref(),
                    p.remote_socket_id.as_deref(),
                )?;
                self.end_call_of(now, socket);
                Ok(())
            }
            Some(State::Queued) => {
                self.queue.retain(|(s, _)| s != socket);
                if let Some(u) = self.users.get_mut(socket) {
                    u.state = State::Idle;
                }
                Ok(())
            }
            _ => Err(Reject::new(ErrorCode::NotInCall, "not in a call")),
        }
    }

    /// Ends `socket`'s call if it has one: the peer hears `stop-by-remote-user` and waits again;
    /// `socket` becomes idle.
    fn end_call_of(&mut self, now: Duration, socket: &str) {
        let Ok((room, peer)) = self.call_of(socket) else {
            return;
        };
        self.calls.remove(&room);
        if let Some(u) = self.users.get_mut(socket) {
            u.state = State::Idle;
            u.last_peer = Some(peer.clone());
        }
        if let Some(p) = self.users.get_mut(&peer) {
            p.state = State::Idle;
            p.last_peer = Some(socket.to_owned());
        }
        self.out.push_back(Emit {
            to: peer.clone(),
            event: mm::EV_STOP_BY_REMOTE,
            payload: Value::Null,
        });
        if self.users.contains_key(&peer) {
            self.enqueue(now, &peer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixture {
        mm: Matchmaker,
        now: Duration,
    }

    impl Fixture {
        fn new() -> Self {
            Self {
                mm: Matchmaker::new(Config::default()),
                now: Duration::from_secs(100),
            }
        }
        fn drain(&mut self) -> Vec<(String, &'static str, Value)> {
            std::iter::from_fn(|| self.mm.poll_output())
                .map(|e| (e.to, e.event, e.payload))
                .collect()
        }
        fn request(&mut self, socket: &str, name: &str) -> Vec<(String, &'static str, Value)> {
            if !self.mm.users.contains_key(socket) {
                self.mm.connect(self.now, socket);
            }
            let payload = RequestRoom {
                name: name.into(),
                room_id: None,
                user_image: String::new(),
            };
            self.mm.handle_request_room(self.now, socket, Some(payload));
            self.drain()
        }
        fn peer_of(&self, socket: &str) -> Option<String> {
            match &self.mm.users.get(socket)?.state {
                State::InCall { peer, .. } => Some(peer.clone()),
                _ => None,
            }
        }
    }

    fn codes(out: &[(String, &'static str, Value)]) -> Vec<String> {
        out.iter()
            .filter(|(_, e, _)| *e == "error")
            .map(|(_, _, p)| p["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    #[test]
    fn pairs_first_come_first_served_and_earlier_one_offers() {
        let mut f = Fixture::new();
        assert!(f.request("a", "Ada").is_empty());
        let out = f.request("b", "Bob");
        assert_eq!(
            out,
            vec![
                (
                    "a".into(),
                    "match-done",
                    json!({"roomId":"room-1","remoteUserDetails":{"socket":"b","userName":"Bob","userImage":""},"makeOffer":true})
                ),
                (
                    "b".into(),
                    "match-done",
                    json!({"roomId":"room-1","remoteUserDetails":{"socket":"a","userName":"Ada","userImage":""},"makeOffer":false})
                ),
            ]
        );
        assert!(f.request("c", "Cy").is_empty());
        assert_eq!(
            f.mm.status(),
            Status {
                queue: vec!["Cy".into()],
                active_rooms: 1,
                total_rooms: 1
            }
        );
    }

    #[test]
    fn signaling_is_forwarded_only_within_the_call() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        f.request("c", "Cy");
        f.mm.handle_offer(
            f.now,
            "a",
            Some(OfferIn {
                offer: json!({"type":"offer","sdp":"v=0"}),
                room_id: "room-1".into(),
                name: "Ada".into(),
                remote_socket_id: "b".into(),
            }),
        );
        assert_eq!(
            f.drain(),
            vec![(
                "b".into(),
                "negotiation-call-offer",
                json!({"remoteUserDetails":{"socket":"a","userName":"Ada"},"roomId":"room-1","offer":{"type":"offer","sdp":"v=0"}})
            )]
        );
        // A third socket cannot inject an offer into a's call, naming it or not.
        f.mm.handle_offer(
            f.now,
            "c",
            Some(OfferIn {
                offer: json!({}),
                room_id: "room-1".into(),
                name: "x".into(),
                remote_socket_id: "b".into(),
            }),
        );
        assert_eq!(codes(&f.drain()), vec!["not_in_call"]);
        f.mm.handle_ice(
            f.now,
            "c",
            Some(IceIn {
                to: "a".into(),
                candidate: json!({}),
            }),
        );
        assert_eq!(codes(&f.drain()), vec!["not_in_call"]);
        // Inside a call, a wrong room or target is refused and nothing is forwarded.
        f.mm.handle_answer(
            f.now,
            "b",
            Some(Answer {
                ans: json!({}),
                room_id: "room-9".into(),
                name: String::new(),
                remote_socket_id: "a".into(),
            }),
        );
        assert_eq!(codes(&f.drain()), vec!["invalid_target"]);
        f.mm.handle_ice(
            f.now,
            "b",
            Some(IceIn {
                to: "c".into(),
                candidate: json!({}),
            }),
        );
        let out = f.drain();
        assert_eq!(codes(&out), vec!["invalid_target"]);
        assert!(out.iter().all(|(to, _, _)| to == "b"));
        f.mm.handle_ice(
            f.now,
            "b",
            Some(IceIn {
                to: "a".into(),
                candidate: json!({"candidate":"x"}),
            }),
        );
        assert_eq!(
            f.drain(),
            vec![(
                "a".into(),
                "new-ice-candidates",
                json!({"candidate":{"candidate":"x"},"from":"b"})
            )]
        );
        f.mm.handle_offer(f.now, "a", None);
        assert_eq!(codes(&f.drain()), vec!["invalid_payload"]);
    }

    #[test]
    fn chat_reaches_both_and_is_rate_limited() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        for i in 0..10 {
            f.mm.handle_message(
                f.now,
                "a",
                Some(NewMessage {
                    message: format!("hi {i}"),
                    room_id: None,
                    remote_socket: None,
                }),
            );
            let out = f.drain();
            assert_eq!(out.len(), 2, "{out:?}");
            assert!(
                out.iter()
                    .any(|(to, e, p)| to == "b" && *e == "Message:recived" && p["from"] == "a")
            );
        }
        f.mm.handle_message(
            f.now,
            "a",
            Some(NewMessage {
                message: "one too many".into(),
                room_id: None,
                remote_socket: None,
            }),
        );
        let out = f.drain();
        assert_eq!(codes(&out), vec!["rate_limited"]);
        assert!(
            out[0].2["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms > 5000 && ms <= 6000),
            "{out:?}"
        );
        f.mm.handle_message(
            f.now + Duration::from_secs(7),
            "a",
            Some(NewMessage {
                message: String::new(),
                room_id: None,
                remote_socket: None,
            }),
        );
        assert_eq!(codes(&f.drain()), vec!["invalid_payload"]);
    }

    #[test]
    fn stop_call_requeues_the_peer() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        f.mm.handle_stop(f.now, "a", Some(StopCall::default()));
        assert_eq!(
            f.drain(),
            vec![("b".into(), "stop-by-remote-user", Value::Null)]
        );
        assert_eq!(f.mm.status().queue, vec!["Bob"]);
        f.request("c", "Cy");
        assert_eq!(f.peer_of("c").as_deref(), Some("b"));
        // A stop naming another call is refused and changes nothing.
        f.mm.handle_stop(
            f.now,
            "c",
            Some(StopCall {
                room_id: Some("room-1".into()),
                ..StopCall::default()
            }),
        );
        assert_eq!(codes(&f.drain()), vec!["invalid_target"]);
        assert_eq!(f.peer_of("c").as_deref(), Some("b"));
    }

    #[test]
    fn an_unreadable_stop_call_is_refused_and_the_call_goes_on() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        // Too large, not an object, or wrong field types: the driver passes None.
        f.mm.handle_stop(f.now, "a", None);
        let out = f.drain();
        assert_eq!(codes(&out), vec!["invalid_payload"]);
        assert_eq!(out[0].2["event"], "stop-call");
        assert!(out.iter().all(|(to, _, _)| to == "a"), "b hears nothing");
        assert_eq!(f.peer_of("a").as_deref(), Some("b"));
        assert_eq!(f.mm.status().active_rooms, 1);
        // While waiting, too: the user stays queued.
        f.request("c", "Cy");
        f.mm.handle_stop(f.now, "c", None);
        assert_eq!(codes(&f.drain()), vec!["invalid_payload"]);
        assert_eq!(f.mm.status().queue, vec!["Cy"]);
    }

    #[test]
    fn stop_call_while_waiting_leaves_the_queue() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        assert_eq!(f.mm.status().queue, vec!["Ada"]);
        f.mm.handle_stop(f.now, "a", Some(StopCall::default()));
        assert!(f.drain().is_empty(), "leaving the queue is silent");
        assert!(f.mm.status().queue.is_empty());
        // Nobody is paired with a user who left the queue...
        assert!(f.request("b", "Bob").is_empty());
        assert_eq!(f.peer_of("b"), None);
        assert_eq!(f.mm.status().queue, vec!["Bob"]);
        // ...and a stop while idle is not_in_call.
        f.mm.handle_stop(f.now, "a", Some(StopCall::default()));
        assert_eq!(codes(&f.drain()), vec!["not_in_call"]);
    }

    #[test]
    fn default_config_is_the_seeds() {
        let c = Config::default();
        assert_eq!(c.queue_capacity, 10_000);
        assert_eq!(c.request_interval, Duration::from_secs(5));
        assert_eq!(c.messages_per_minute, 10);
        assert_eq!(c.rematch_grace, Duration::from_secs(3));
    }

    #[test]
    fn ex_partners_wait_for_someone_new_then_rematch_after_the_grace() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        f.mm.handle_stop(f.now, "a", Some(StopCall::default()));
        f.drain();
        // a presses Next right away: b is waiting, but they just left each other.
        f.now += Duration::from_secs(5);
        assert!(f.request("a", "Ada").is_empty());
        assert_eq!(f.mm.status().queue, vec!["Bob", "Ada"]);
        // Someone new arrives: paired with the first in line (b), never with itself.
        f.request("x", "Xi");
        assert_eq!(f.peer_of("x").as_deref(), Some("b"));
        assert_eq!(f.mm.status().queue, vec!["Ada"]);
        // b and x part; b is requeued beside a, whom it just left: both wait.
        f.mm.handle_stop(f.now, "x", Some(StopCall::default()));
        f.drain();
        assert_eq!(f.mm.status().queue, vec!["Ada", "Bob"]);
        // Nobody new comes: after the grace, not before, they are paired after all.
        f.mm.handle_timeout(f.now + Duration::from_secs(1));
        assert_eq!(f.mm.status().queue.len(), 2);
        f.mm.handle_timeout(f.now + Duration::from_secs(3));
        assert_eq!(f.peer_of("a").as_deref(), Some("b"));
        let out = f.drain();
        assert_eq!(
            out.iter()
                .filter(|(_, e, p)| *e == "match-done" && p["makeOffer"] == true)
                .count(),
            1
        );
    }

    #[test]
    fn disconnect_mid_call_tells_the_peer() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        f.mm.disconnect(f.now, "b");
        assert_eq!(
            f.drain(),
            vec![("a".into(), "stop-by-remote-user", Value::Null)]
        );
        assert_eq!(
            f.mm.status(),
            Status {
                queue: vec!["Ada".into()],
                active_rooms: 0,
                total_rooms: 1
            }
        );
        f.mm.disconnect(f.now, "a");
        assert_eq!(f.mm.status().queue, Vec::<String>::new());
    }

    #[test]
    fn request_room_rules() {
        let mut f = Fixture::new();
        assert!(f.request("a", "Ada").is_empty());
        let out = f.request("a", "Ada");
        assert_eq!(codes(&out), vec!["rate_limited"]);
        assert!(
            out[0].2["retryAfterMs"]
                .as_u64()
                .is_some_and(|ms| ms > 4000 && ms <= 5000)
        );
        f.now += Duration::from_secs(5);
        assert_eq!(codes(&f.request("a", "Ada")), vec!["already_queued"]);
        assert_eq!(codes(&f.request("z", " ")), vec!["invalid_payload"]);
        let mut small = Fixture {
            mm: Matchmaker::new(Config {
                queue_capacity: 1,
                ..Config::default()
            }),
            now: Duration::ZERO,
        };
        small.request("p", "P");
        small.mm.connect(Duration::ZERO, "q");
        if let Some(q) = small.mm.users.get_mut("q") {
            q.last_peer = Some("p".into());
        }
        assert_eq!(codes(&small.request("q", "Q")), vec!["queue_full"]);
        f.mm.handle_unknown("a", "weird");
        assert_eq!(codes(&f.drain()), vec!["unknown_event"]);
    }

    #[test]
    fn relays_share_a_rate_limit_told_once_a_second() {
        let mut f = Fixture::new();
        f.request("a", "Ada");
        f.request("b", "Bob");
        f.drain();
        let ice = |i: u32| IceIn {
            to: "b".into(),
            candidate: json!({"candidate": format!("c{i}")}),
        };
        // The default burst (200) passes at one instant; the 201st is refused, and of 100 more
        // refusals in the same second only the first is told.
        for i in 0..200 {
            f.mm.handle_ice(f.now, "a", Some(ice(i)));
        }
        let out = f.drain();
        assert_eq!(out.len(), 200);
        assert!(
            out.iter()
                .all(|(to, e, _)| to == "b" && *e == mm::EV_NEW_ICE)
        );
        for i in 0..100 {
            f.mm.handle_ice(f.now, "a", Some(ice(i)));
        }
        let out = f.drain();
        assert_eq!(codes(&out), vec!["rate_limited"]);
        assert_eq!(out.len(), 1, "nothing forwarded past the burst");
        assert!(out[0].2["retryAfterMs"].as_u64().is_some_and(|ms| ms <= 20));
        // Offers and answers draw on the same tokens.
        f.mm.handle_answer(
            f.now,
            "b",
            Some(Answer {
                ans: json!({}),
                room_id: "room-1".into(),
                name: "Bob".into(),
                remote_socket_id: "a".into(),
            }),
        );
        assert_eq!(f.drain().len(), 1, "b has its own tokens");
        // A second later 50 more have come; the refusal is told again.
        f.now += Duration::from_secs(1);
        for i in 0..60 {
            f.mm.handle_ice(f.now, "a", Some(ice(i)));
        }
        let out = f.drain();
        let forwarded = out.iter().filter(|(to, _, _)| to == "b").count();
        assert_eq!(forwarded, 50);
        assert_eq!(codes(&out), vec!["rate_limited"]);
    }
}
