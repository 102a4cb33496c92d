//! The room registry of the WebSocket room service (seed 001), sans-IO.
//!
//! The driver gives every socket a [`ConnId`], calls [`RoomRegistry::connect`],
//! [`RoomRegistry::handle`] for every frame and [`RoomRegistry::disconnect`] at the end, and after
//! each call drains [`RoomRegistry::poll_output`] into the sockets' outbound queues and
//! [`RoomRegistry::poll_replaced`] into closes. Time and randomness are inputs: every call that
//! needs the time takes `now`, and the driver hands [`RoomRegistry::new`] the source of the
//! resume secrets' random bytes.
//!
//! **Invariant:** a connection is in at most one room, a room holds each id at most once, and a
//! room with no members does not exist. Relayed messages only ever reach a member of the
//! sender's own room whose id the sender named.
//!
//! **Identity (LiveLoop's resume secrets).** Every join gets a random secret with `joined`. An id
//! held in a room by a live connection, or reserved for [`Limits::reservation`] (60 s) after its
//! connection ended without `leave` (closed, evicted, timed out), goes to another connection
//! only if that join carries the id's secret: the live holder is then replaced
//! ([`RoomRegistry::poll_replaced`]) and the new connection keeps the same secret. An explicit
//! `leave` releases the id at once. At most [`Limits::max_reservations`] ids are reserved; at the
//! cap the oldest reservation ends early.
//!
//! **Fairness.** [`QueueShares`] is the rule for a receiver's outbound queue: one sender's relays
//! may fill at most half of it; the driver evicts a sender that would exceed that, so a flood
//! aimed at one member removes the flooder, not its target.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use liveloop_proto::rooms::{ClientMessage, ErrorCode, ParseError, SECRET_HEX_LEN, ServerMessage};

use crate::rate::TokenBucket;

/// A socket, as the driver numbers them.
pub type ConnId = u64;

/// Random bytes in a resume secret (128 bits; [`SECRET_HEX_LEN`] hex characters on the wire).
pub const SECRET_BYTES: usize = SECRET_HEX_LEN / 2;

/// The service's limits (seed 001's defaults, plus the resume reservations).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rooms: usize,
    pub max_members: usize,
    /// Steady message rate per socket.
    pub rate_per_sec: f32,
    /// Messages a socket may send at once.
    pub burst: u32,
    /// How long an id stays reserved for its secret after its connection ended without
    /// `leave` (zero: never reserved).
    pub reservation: Duration,
    /// Most ids reserved at once (zero: none); a new reservation at the cap ends the oldest.
    pub max_reservations: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let (max_rooms, max_members) = (1000, 50);
        Self {
            max_rooms,
            max_members,
            rate_per_sec: 30.0,
            burst: 50,
            reservation: Duration::from_secs(60),
            // As many as the server can hold members: every member of a full server could drop
            // at once and still find its id.
            max_reservations: max_rooms * max_members,
        }
    }
}

/// One message for one socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub to: ConnId,
    pub msg: ServerMessage,
    /// The connection whose relayed message this is (`None` for the server's own messages);
    /// the driver counts it against that sender's share of `to`'s queue ([`QueueShares`]).
    pub sender: Option<ConnId>,
}

/// A resume secret: 32 lowercase hex characters. Never printed.
#[derive(Clone, PartialEq, Eq)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

impl Secret {
    fn from_bytes(bytes: &[u8; SECRET_BYTES]) -> Self {
        use std::fmt::Write as _;
        let mut hex = String::with_capacity(SECRET_HEX_LEN);
        for b in bytes {
            // Writing to a String cannot fail.
            let _ = write!(hex, "{b:02x}");
        }
        Self(hex)
    }

    /// Compares with what a client presented, in time that does not depend on where they differ.
    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }
}

/// Equality whose time depends only on the lengths (every secret has the same length), not on
/// the position of the first difference.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Fills a buffer with random bytes.
type FillRandom = Box<dyn FnMut(&mut [u8]) + Send>;

/// Where the secrets' randomness comes from (the driver's CSPRNG). Never printed.
struct Entropy(FillRandom);

impl std::fmt::Debug for Entropy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Entropy")
    }
}

#[derive(Debug)]
struct Conn {
    /// The id this socket joined with first; later joins must use the same one.
    identity: Option<String>,
    room: Option<String>,
    /// The resume secret of the id this socket holds in `room`.
    secret: Option<Secret>,
    /// Set when the server removed the socket from its room (eviction, replacement).
    lost: bool,
    /// When this socket was last told `rate_limited`: it hears it at most once a second.
    limited_since: Option<Duration>,
    bucket: TokenBucket,
}

/// An id kept for the connection that held it, until `until` or until its secret comes back.
#[derive(Debug)]
struct Reservation {
    secret: Secret,
    until: Duration,
    /// Position in `RoomRegistry::reserved_order`.
    seq: u64,
    /// The connection that held it (it may take it back without the secret).
    conn: ConnId,
}

/// (room, id).
type Key = (String, String);

/// Counts for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub connections: usize,
    pub rooms: usize,
    pub members: usize,
    /// Ids reserved for a connection that ended without `leave`.
    pub reserved: usize,
}

/// How a join may take its id.
enum Claim {
    Free,
    /// Reserved, and the secret (or the same connection) is back.
    Resume,
    /// Held by this live connection, and the secret matches.
    Replace(ConnId),
}

/// All rooms and connections of one room service.
#[derive(Debug)]
pub struct RoomRegistry {
    limits: Limits,
    /// Room id → member id → connection. A `BTreeMap` keeps `room_members` sorted.
    rooms: HashMap<String, BTreeMap<String, ConnId>>,
    conns: HashMap<ConnId, Conn>,
    out: VecDeque<Delivery>,
    /// Connections whose id another connection took over with its secret: the driver closes them.
    replaced: VecDeque<ConnId>,
    reserved: HashMap<Key, Reservation>,
    /// The reservations oldest first (all last equally long, so this is also expiry order).
    reserved_order: BTreeMap<u64, Key>,
    next_seq: u64,
    next_auto_id: u64,
    entropy: Entropy,
}

impl RoomRegistry {
    /// A registry whose resume secrets take their bytes from `fill_random`, which must be a
    /// cryptographically secure generator (the server passes the operating system's).
    #[must_use]
    pub fn new(limits: Limits, fill_random: impl FnMut(&mut [u8]) + Send + 'static) -> Self {
        Self {
            limits,
            rooms: HashMap::new(),
            conns: HashMap::new(),
            out: VecDeque::new(),
            replaced: VecDeque::new(),
            reserved: HashMap::new(),
            reserved_order: BTreeMap::new(),
            next_seq: 0,
            next_auto_id: 0,
            entropy: Entropy(Box::new(fill_random)),
        }
    }

    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            rooms: self.rooms.len(),
            members: self.rooms.values().map(BTreeMap::len).sum(),
            reserved: self.reserved.len(),
        }
    }

    /// A new socket.
    pub fn connect(&mut self, now: Duration, conn: ConnId) {
        let bucket = TokenBucket::new(self.limits.burst, self.limits.rate_per_sec, now);
        self.conns.insert(
            conn,
            Conn {
                identity: None,
                room: None,
                secret: None,
                lost: false,
                limited_since: None,
                bucket,
            },
        );
    }

    /// The socket is gone. Without an explicit `leave` before, its id stays reserved for
    /// [`Limits::reservation`].
    pub fn disconnect(&mut self, now: Duration, conn: ConnId) {
        self.leave_room(now, conn, true);
        self.conns.remove(&conn);
    }

    /// The server dropped this socket from its room (it was too slow). Its later messages get
    /// `membership_lost` until it joins again; its id stays reserved as for a disconnect.
    pub fn evict(&mut self, now: Duration, conn: ConnId) {
        if self.leave_room(now, conn, true)
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.lost = true;
        }
    }

    /// The next message to deliver.
    pub fn poll_output(&mut self) -> Option<Delivery> {
        self.out.pop_front()
    }

    /// The next connection whose id another connection took over with its secret. It is no
    /// longer a member (its later messages get `membership_lost`); the driver closes it.
    pub fn poll_replaced(&mut self) -> Option<ConnId> {
        self.replaced.pop_front()
    }

    /// One frame from a socket, parsed (or not) by the driver.
    pub fn handle(&mut self, now: Duration, conn: ConnId, msg: Result<ClientMessage, ParseError>) {
        self.expire(now);
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Err(wait) = c.bucket.try_take(now) {
            // At most one error per second: answering every message of a flood would only
            // fill the flooder's own outbound queue. A message let through in between (the
            // bucket refills 30 times a second) does not start a new second.
            let quiet = c
                .limited_since
                .is_some_and(|t| now.saturating_sub(t) < Duration::from_secs(1));
            if !quiet {
                c.limited_since = Some(now);
                let message = format!(
                    "more than {} messages per second; retry in {} ms",
                    self.limits.rate_per_sec,
                    wait.as_millis()
                );
                self.error(conn, ErrorCode::RateLimited, message);
            }
            return;
        }
        let msg = match msg {
            Ok(msg) => msg,
            Err(e) => {
                self.error(conn, e.code(), e.to_string());
                return;
            }
        };
        match msg {
            ClientMessage::Join { room, id, secret } => {
                self.join(now, conn, &room, id, secret.as_deref());
            }
            ClientMessage::Leave => {
                if !self.leave_room(now, conn, false) {
                    self.not_joined(conn);
                }
            }
            ClientMessage::Ping => self.send(conn, ServerMessage::Pong),
            ClientMessage::Pong => {}
            ClientMessage::Relay { kind, to, payload } => {
                let Some((room, from)) = self.membership(conn) else {
                    self.not_joined(conn);
                    return;
                };
                if to == from {
                    self.error(
                        conn,
                        ErrorCode::InvalidTarget,
                        "cannot send to yourself".into(),
                    );
                    return;
                }
                let target = self
                    .rooms
                    .get(&room)
                    .and_then(|members| members.get(&to))
                    .copied();
                match target {
                    Some(target) => self.out.push_back(Delivery {
                        to: target,
                        msg: ServerMessage::Relay {
                            kind,
                            room,
                            from,
                            to,
                            payload,
                        },
                        sender: Some(conn),
                    }),
                    None => self.error(
                        conn,
                        ErrorCode::TargetNotFound,
                        format!("{to} is not in this room"),
                    ),
                }
            }
            _ => self.error(conn, ErrorCode::UnknownType, "unsupported message".into()),
        }
    }

    fn join(
        &mut self,
        now: Duration,
        conn: ConnId,
        room: &str,
        id: Option<String>,
        secret: Option<&str>,
    ) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if c.room.is_some() {
            self.error(
                conn,
                ErrorCode::AlreadyJoined,
                "already in a room; leave first".into(),
            );
            return;
        }
        let id = match (&c.identity, id) {
            (Some(locked), Some(id)) if *locked != id => {
                let message = format!("this connection is {locked}; it cannot rejoin as {id}");
                self.error(conn, ErrorCode::IdentityLocked, message);
                return;
            }
            (_, Some(id)) => id,
            (Some(locked), None) => locked.clone(),
            (None, None) => {
                self.next_auto_id += 1;
                format!("guest-{}-{}", conn, self.next_auto_id)
            }
        };
        let Some(claim) = self.claim(now, conn, room, &id, secret) else {
            return;
        };
        let room_count = self.rooms.len();
        match self.rooms.get(room) {
            None if room_count >= self.limits.max_rooms => {
                let message = format!(
                    "the server holds its maximum of {} rooms",
                    self.limits.max_rooms
                );
                self.error(conn, ErrorCode::RoomLimitReached, message);
                return;
            }
            // Taking over a member's place does not add one.
            Some(members)
                if !matches!(claim, Claim::Replace(_))
                    && members.len() >= self.limits.max_members =>
            {
                let message = format!(
                    "the room has its maximum of {} members",
                    self.limits.max_members
                );
                self.error(conn, ErrorCode::RoomFull, message);
                return;
            }
            _ => {}
        }
        let key = (room.to_owned(), id.clone());
        let secret = match claim {
            Claim::Replace(holder) => {
                let taken = self.conns.get_mut(&holder).and_then(|h| {
                    h.room = None;
                    h.lost = true;
                    h.secret.take()
                });
                self.replaced.push_back(holder);
                taken
            }
            Claim::Resume => self.take_reservation(&key).map(|r| r.secret),
            Claim::Free => {
                // A reservation that ran out but was not swept yet goes now.
                self.take_reservation(&key);
                None
            }
        };
        let secret = secret.unwrap_or_else(|| self.new_secret());
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .insert(id.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identity = Some(id.clone());
            c.room = Some(room.to_owned());
            c.secret = Some(secret.clone());
            c.lost = false;
        }
        self.send(
            conn,
            ServerMessage::Joined {
                room: room.to_owned(),
                id,
                secret: Some(secret.0),
            },
        );
        self.broadcast_members(room);
    }

    /// Whether `conn` may take `id` in `room`; refuses with `duplicate_id` (and `None`) if not.
    fn claim(
        &mut self,
        now: Duration,
        conn: ConnId,
        room: &str,
        id: &str,
        secret: Option<&str>,
    ) -> Option<Claim> {
        let holder = self.rooms.get(room).and_then(|m| m.get(id)).copied();
        if let Some(holder) = holder {
            let held = self.conns.get(&holder).and_then(|h| h.secret.as_ref());
            let message = match (held, secret) {
                (Some(held), Some(presented)) if held.matches(presented) => {
                    return Some(Claim::Replace(holder));
                }
                (_, None) => format!(
                    "{id} is already in this room on another connection; only its secret can take it over"
                ),
                (_, Some(_)) => format!(
                    "{id} is already in this room on another connection, and the secret does not match"
                ),
            };
            self.error(conn, ErrorCode::DuplicateId, message);
            return None;
        }
        let key = (room.to_owned(), id.to_owned());
        let Some(r) = self.reserved.get(&key).filter(|r| r.until > now) else {
            return Some(Claim::Free);
        };
        if r.conn == conn || secret.is_some_and(|s| r.secret.matches(s)) {
            return Some(Claim::Resume);
        }
        let left = r.until.saturating_sub(now).as_millis().div_ceil(1000);
        let message = if secret.is_some() {
            format!(
                "{id} is reserved for {left} s more for its last connection, and the secret does not match"
            )
        } else {
            format!(
                "{id} is reserved for {left} s more for its last connection; only its secret can take it before then"
            )
        };
        self.error(conn, ErrorCode::DuplicateId, message);
        None
    }

    fn new_secret(&mut self) -> Secret {
        let mut bytes = [0u8; SECRET_BYTES];
        (self.entropy.0)(&mut bytes);
        Secret::from_bytes(&bytes)
    }

    /// Keeps `room`/`id` for `secret` until `now` + the reservation time; at the cap the oldest
    /// reservation makes room.
    fn reserve(&mut self, now: Duration, key: Key, secret: Secret, conn: ConnId) {
        if self.limits.max_reservations == 0 || self.limits.reservation.is_zero() {
            return;
        }
        self.expire(now);
        while self.reserved.len() >= self.limits.max_reservations {
            let Some((_, oldest)) = self.reserved_order.pop_first() else {
                break;
            };
            self.reserved.remove(&oldest);
        }
        self.next_seq += 1;
        let seq = self.next_seq;
        let reservation = Reservation {
            secret,
            until: now.saturating_add(self.limits.reservation),
            seq,
            conn,
        };
        if let Some(old) = self.reserved.insert(key.clone(), reservation) {
            self.reserved_order.remove(&old.seq);
        }
        self.reserved_order.insert(seq, key);
    }

    fn take_reservation(&mut self, key: &Key) -> Option<Reservation> {
        let r = self.reserved.remove(key)?;
        self.reserved_order.remove(&r.seq);
        Some(r)
    }

    /// Ends the reservations whose time is up (oldest first).
    fn expire(&mut self, now: Duration) {
        while let Some(entry) = self.reserved_order.first_entry() {
            if self
                .reserved
                .get(entry.get())
                .is_some_and(|r| r.until > now)
            {
                break;
            }
            let key = entry.remove();
            self.reserved.remove(&key);
        }
    }

    /// Removes `conn` from its room; true if it was in one. `reserve`: the connection ended
    /// without `leave`, so its id is kept for its secret.
    fn leave_room(&mut self, now: Duration, conn: ConnId, reserve: bool) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let (Some(room), Some(id)) = (c.room.take(), c.identity.clone()) else {
            return false;
        };
        let secret = c.secret.take();
        if let Some(members) = self.rooms.get_mut(&room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(&room);
            } else {
                self.broadcast_members(&room);
            }
        }
        if reserve && let Some(secret) = secret {
            self.reserve(now, (room, id), secret, conn);
        }
        true
    }

    fn membership(&self, conn: ConnId) -> Option<(String, String)> {
        let c = self.conns.get(&conn)?;
        Some((c.room.clone()?, c.identity.clone()?))
    }

    fn not_joined(&mut self, conn: ConnId) {
        let lost = self.conns.get(&conn).is_some_and(|c| c.lost);
        if lost {
            self.error(
                conn,
                ErrorCode::MembershipLost,
                "the server removed you from the room; join again".into(),
            );
        } else {
            self.error(conn, ErrorCode::NotJoined, "join a room first".into());
        }
    }

    fn broadcast_members(&mut self, room: &str) {
        let Some(members) = self.rooms.get(room) else {
            return;
        };
        let list: Vec<String> = members.keys().cloned().collect();
        let targets: Vec<ConnId> = members.values().copied().collect();
        for to in targets {
            let msg = ServerMessage::RoomMembers {
                room: room.to_owned(),
                members: list.clone(),
            };
            self.send(to, msg);
        }
    }

    fn send(&mut self, to: ConnId, msg: ServerMessage) {
        self.out.push_back(Delivery {
            to,
            msg,
            sender: None,
        });
    }

    fn error(&mut self, to: ConnId, code: ErrorCode, message: String) {
        self.send(to, ServerMessage::Error { code, message });
    }
}

/// A relay would take its sender past its share of the receiver's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sender {sender} already has {queued} relayed messages queued for this member, its share")]
pub struct OverShare {
    pub sender: ConnId,
    pub queued: usize,
}

/// The fairness rule of one receiver's outbound queue: how many of the relayed messages in it
/// (the one being sent included) come from each sender. A sender may have at most half the
/// queue (at least one); a relay beyond that is refused and the driver evicts the sender, so a
/// member flooded by another keeps its place. A receiver too slow for many senders each within
/// its share still fills its queue and is evicted, as before. The server's own messages
/// (`room_members`, errors, pongs) are not counted.
#[derive(Debug, Clone)]
pub struct QueueShares {
    share: usize,
    queued: HashMap<ConnId, usize>,
}

impl QueueShares {
    /// The shares of a queue of `capacity` messages.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self {
            share: (capacity / 2).max(1),
            queued: HashMap::new(),
        }
    }

    /// Most relayed messages one sender may have in the queue.
    #[must_use]
    pub fn share(&self) -> usize {
        self.share
    }

    /// Relayed messages from `sender` in the queue.
    #[must_use]
    pub fn queued(&self, sender: ConnId) -> usize {
        self.queued.get(&sender).copied().unwrap_or(0)
    }

    /// A relay from `sender` is about to be queued: counted, or refused if it would take the
    /// sender past its share (then nothing is counted).
    ///
    /// # Errors
    /// [`OverShare`] when the sender already has its share queued.
    pub fn admit(&mut self, sender: ConnId) -> Result<(), OverShare> {
        let queued = self.queued.entry(sender).or_insert(0);
        if *queued >= self.share {
            return Err(OverShare {
                sender,
                queued: *queued,
            });
        }
        *queued += 1;
        Ok(())
    }

    /// A relay from `sender` left the queue (sent, or dropped).
    pub fn release(&mut self, sender: ConnId) {
        if let Some(queued) = self.queued.get_mut(&sender) {
            *queued = queued.saturating_sub(1);
            if *queued == 0 {
                self.queued.remove(&sender);
            }
        }
    }

    /// Senders with messages in the queue (the map never holds more than the queue).
    #[must_use]
    pub fn senders(&self) -> usize {
        self.queued.len()
    }
}

#[cfg(test)]
mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: Duration = Duration::ZERO;

    /// The secret of the `n`th join that got a fresh one: the test entropy fills every byte
    /// with a counter.
    fn nth_secret(n: u8) -> String {
        format!("{n:02x}").repeat(SECRET_BYTES)
    }

    fn counting_entropy() -> impl FnMut(&mut [u8]) + Send + 'static {
        let mut n = 0u8;
        move |bytes: &mut [u8]| {
            n = n.wrapping_add(1);
            bytes.fill(n);
        }
    }

    struct Fixture {
        reg: RoomRegistry,
        now: Duration,
    }

    impl Fixture {
        fn new(limits: Limits) -> Self {
            Self {
                reg: RoomRegistry::new(limits, counting_entropy()),
                now: T0,
            }
        }
        /// Sends a JSON frame from `conn` and returns everything delivered, as (to, wire JSON).
        fn send(
            &mut self,
            conn: ConnId,
            frame: serde_json::Value,
        ) -> Vec<(ConnId, serde_json::Value)> {
            if !self.reg.conns.contains_key(&conn) {
                self.reg.connect(self.now, conn);
            }
            self.now += Duration::from_millis(40);
            self.reg
                .handle(self.now, conn, ClientMessage::parse(&frame.to_string()));
            self.drain()
        }
        fn drain(&mut self) -> Vec<(ConnId, serde_json::Value)> {
            std::iter::from_fn(|| self.reg.poll_output())
                .map(|d| {
                    (
                        d.to,
                        serde_json::to_value(d.msg.to_wire()).unwrap_or_default(),
                    )
                })
                .collect()
        }
        fn join(&mut self, conn: ConnId, room: &str, id: &str) -> Vec<(ConnId, serde_json::Value)> {
            self.send(conn, json!({"type":"join","room":room,"from":id}))
        }
        fn join_with(
            &mut self,
            conn: ConnId,
            room: &str,
            id: &str,
            secret: &str,
        ) -> Vec<(ConnId, serde_json::Value)> {
            self.send(
                conn,
                json!({"type":"join","room":room,"from":id,"secret":secret}),
            )
        }
        /// The connection ends without `leave`.
        fn drop_conn(&mut self, conn: ConnId) -> Vec<(ConnId, serde_json::Value)> {
            self.reg.disconnect(self.now, conn);
            self.drain()
        }
        fn replaced(&mut self) -> Vec<ConnId> {
            std::iter::from_fn(|| self.reg.poll_replaced()).collect()
        }
    }

    fn error_code(out: &[(ConnId, serde_json::Value)]) -> Option<String> {
        out.iter()
            .find_map(|(_, m)| m.get("code").and_then(|c| c.as_str()).map(str::to_owned))
    }

    fn error_text(out: &[(ConnId, serde_json::Value)]) -> String {
        out.iter()
            .find_map(|(_, m)| m.get("error").and_then(|c| c.as_str()).map(str::to_owned))
            .unwrap_or_default()
    }

    /// The secret `joined` gave in `out`.
    fn secret_of(out: &[(ConnId, serde_json::Value)]) -> String {
        out.iter()
            .find(|(_, m)| m["type"] == "joined")
            .and_then(|(_, m)| m["secret"].as_str())
            .map(str::to_owned)
            .unwrap_or_default()
    }

    fn joined(out: &[(ConnId, serde_json::Value)]) -> bool {
        out.iter().any(|(_, m)| m["type"] == "joined")
    }

    #[test]
    fn join_answers_joined_then_sorted_members_to_everyone() {
        let mut f = Fixture::new(Limits::default());
        assert_eq!(
            f.join(1, "r", "zoe"),
            vec![
                (
                    1,
                    json!({"type":"joined","room":"r","from":"zoe","secret":nth_secret(1)})
                ),
                (
                    1,
                    json!({"type":"room_members","room":"r","members":["zoe"]})
                ),
            ]
        );
        let out = f.join(2, "r", "adam");
        assert_eq!(
            out[0],
            (
                2,
                json!({"type":"joined","room":"r","from":"adam","secret":nth_secret(2)})
            )
        );
        let members = json!({"type":"room_members","room":"r","members":["adam","zoe"]});
        assert!(
            out.contains(&(1, members.clone())) && out.contains(&(2, members)),
            "{out:?}"
        );
        // Leaving updates the others; the last one out deletes the room.
        assert_eq!(
            f.send(2, json!({"type":"leave"})),
            vec![(
                1,
                json!({"type":"room_members","room":"r","members":["zoe"]})
            )]
        );
        f.send(1, json!({"type":"leave"}));
        f.reg.disconnect(f.now, 1);
        assert_eq!(
            f.reg.stats(),
            Stats {
                connections: 1,
                rooms: 0,
                members: 0,
                reserved: 0,
            }
        );
    }

    #[test]
    fn relay_sets_from_and_reaches_only_the_named_member() {
        let mut f = Fixture::new(Limits::default());
        f.join(1, "r", "a");
        f.join(2, "r", "b");
        f.join(3, "other", "c");
        let out = f.send(
            1,
            json!({"type":"offer","to":"b","from":"forged","sdp":{"type":"offer","sdp":"v=0"}}),
        );
        assert_eq!(
            out,
            vec![(
                2,
                json!({"type":"offer","room":"r","from":"a","to":"b","sdp":{"type":"offer","sdp":"v=0"}})
            )]
        );
        // A member of another room cannot reach b, even naming b.
        let out = f.send(
            3,
            json!({"type":"candidate","to":"b","candidate":{"candidate":"x"}}),
        );
        assert_eq!(error_code(&out).as_deref(), Some("target_not_found"));
        assert!(out.iter().all(|(to, _)| *to == 3));
        assert_eq!(
            error_code(&f.send(1, json!({"type":"hangup","to":"a"}))).as_deref(),
            Some("invalid_target")
        );
        assert_eq!(
            error_code(&f.send(4, json!({"type":"hangup","to":"a"}))).as_deref(),
            Some("not_joined")
        );
    }

    #[test]
    fn relays_name_their_sender_for_the_fairness_rule() {
        let mut f = Fixture::new(Limits::default());
        f.join(1, "r", "a");
        f.join(2, "r", "b");
        f.drain();
        f.now += Duration::from_millis(40);
        f.reg.handle(
            f.now,
            1,
            ClientMessage::parse(r#"{"type":"hangup","to":"b"}"#),
        );
        let relay = f.reg.poll_output();
        assert_eq!(relay.map(|d| (d.to, d.sender)), Some((2, Some(1))));
        // The server's own messages have no sender.
        f.reg.handle(f.now, 1, Ok(ClientMessage::Ping));
        assert_eq!(f.reg.poll_output().map(|d| d.sender), Some(None));
    }

    #[test]
    fn join_errors() {
        let mut f = Fixture::new(Limits {
            max_rooms: 2,
            max_members: 2,
            ..Limits::default()
        });
        f.join(1, "r", "a");
        assert_eq!(
            error_code(&f.join(1, "s", "a")).as_deref(),
            Some("already_joined")
        );
        assert_eq!(
            error_code(&f.join(2, "r", "a")).as_deref(),
            Some("duplicate_id")
        );
        f.join(2, "r", "b");
        assert_eq!(
            error_code(&f.join(3, "r", "c")).as_deref(),
            Some("room_full")
        );
        f.join(3, "s", "c");
        assert_eq!(
            error_code(&f.join(4, "t", "d")).as_deref(),
            Some("room_limit_reached")
        );
        // Identity is locked to the first id a socket used.
        f.send(3, json!({"type":"leave"}));
        assert_eq!(
            error_code(&f.join(3, "r2", "mallory")).as_deref(),
            Some("identity_locked")
        );
        let out = f.send(3, json!({"type":"join","room":"s"}));
        assert_eq!(out[0].1["from"], "c");
        assert_eq!(out[0].1["type"], "joined");
        assert_eq!(
            error_code(&f.send(5, json!({"type":"join","room":"bad room"}))).as_deref(),
            Some("invalid_room")
        );
        assert_eq!(
            error_code(&f.send(5, json!({"type":"join"}))).as_deref(),
            Some("room_missing")
        );
        assert_eq!(
            error_code(&f.send(5, json!({"type":"leave"}))).as_deref(),
            Some("not_joined")
        );
        assert_eq!(
            error_code(&f.send(5, json!({"type":"fly"}))).as_deref(),
            Some("unknown_type")
        );
    }

    #[test]
    fn automatic_ids_are_unique() {
        let mut f = Fixture::new(Limits::default());
        let a = f.send(1, json!({"type":"join","room":"r"}));
        let b = f.send(2, json!({"type":"join","room":"r"}));
        assert_ne!(a[0].1["from"], b[0].1["from"]);
        assert_eq!(f.reg.stats().members, 2);
    }

    #[test]
    fn eviction_reports_membership_lost_and_reserves_the_id() {
        let mut f = Fixture::new(Limits::default());
        f.join(1, "r", "a");
        let secret = secret_of(&f.join(2, "r", "b"));
        f.drain();
        f.reg.evict(f.now, 2);
        assert_eq!(
            f.drain(),
            vec![(1, json!({"type":"room_members","room":"r","members":["a"]}))]
        );
        assert_eq!(
            error_code(&f.send(2, json!({"type":"hangup","to":"a"}))).as_deref(),
            Some("membership_lost")
        );
        // The evicted member's id waits for its secret.
        assert_eq!(f.reg.stats().reserved, 1);
        assert_eq!(
            error_code(&f.join(3, "r", "b")).as_deref(),
            Some("duplicate_id")
        );
        f.reg.disconnect(f.now, 2);
        let out = f.join_with(4, "r", "b", &secret);
        assert!(joined(&out), "{out:?}");
        assert_eq!(secret_of(&out), secret, "a resumed id keeps its secret");
    }

    #[test]
    fn secrets_are_32_hex_characters_from_the_entropy_and_differ_per_join() {
        let mut f = Fixture::new(Limits::default());
        let a = secret_of(&f.join(1, "r", "a"));
        let b = secret_of(&f.join(2, "r", "b"));
        assert!(liveloop_proto::rooms::is_valid_secret(&a), "{a}");
        assert_eq!((a.as_str(), b.as_str()), (&*nth_secret(1), &*nth_secret(2)));
        // Secrets are never printed.
        let debug = format!("{:?}", f.reg);
        assert!(!debug.contains(&a) && !debug.contains(&b), "{debug}");
    }

    #[test]
    fn an_id_held_by_a_live_connection_needs_its_secret() {
        let mut f = Fixture::new(Limits::default());
        let secret = secret_of(&f.join(1, "r", "victim"));
        f.join(2, "r", "witness");
        // No secret, or a wrong one: refused, saying why.
        let out = f.join(3, "r", "victim");
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
        assert!(error_text(&out).contains("secret"), "{out:?}");
        assert!(out.iter().all(|(to, _)| *to == 3), "{out:?}");
        let out = f.join_with(3, "r", "victim", &nth_secret(9));
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
        assert!(error_text(&out).contains("does not match"), "{out:?}");
        // A secret differing only in its last character is just as wrong.
        let mut close = secret.clone();
        close.pop();
        close.push('f');
        assert_ne!(close, secret);
        let out = f.join_with(4, "r", "victim", &close);
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
        assert!(f.replaced().is_empty());
        // Nothing was taken: the victim still relays and is relayed to.
        let out = f.send(1, json!({"type":"hangup","to":"witness"}));
        assert_eq!(out[0].1["from"], "victim");
    }

    #[test]
    fn the_right_secret_replaces_the_live_holder() {
        let mut f = Fixture::new(Limits {
            max_members: 2,
            ..Limits::default()
        });
        let secret = secret_of(&f.join(1, "r", "victim"));
        f.join(2, "r", "witness");
        // The room is full, but taking over a place adds no member.
        let out = f.join_with(3, "r", "victim", &secret);
        assert!(joined(&out), "{out:?}");
        assert_eq!(secret_of(&out), secret, "the same secret stays with the id");
        let members = json!({"type":"room_members","room":"r","members":["victim","witness"]});
        assert!(
            out.contains(&(2, members.clone())) && out.contains(&(3, members)),
            "{out:?}"
        );
        assert!(out.iter().all(|(to, _)| *to != 1), "{out:?}");
        assert_eq!(f.replaced(), vec![1]);
        // The old connection is no longer the member; relays to the id reach the new one.
        assert_eq!(
            error_code(&f.send(1, json!({"type":"hangup","to":"witness"}))).as_deref(),
            Some("membership_lost")
        );
        let out = f.send(2, json!({"type":"hangup","to":"victim"}));
        assert_eq!(out.iter().map(|(to, _)| *to).collect::<Vec<_>>(), vec![3]);
        // When the old connection ends, nothing is reserved and nothing changes.
        assert!(f.drop_conn(1).is_empty());
        assert_eq!(f.reg.stats().reserved, 0);
        assert_eq!(f.reg.stats().members, 2);
    }

    #[test]
    fn an_id_whose_connection_ended_is_reserved_for_60_s() {
        let mut f = Fixture::new(Limits::default());
        let secret = secret_of(&f.join(1, "r", "victim"));
        f.join(2, "r", "witness");
        f.drain();
        let ended = f.now;
        // The others see it gone at once...
        assert_eq!(
            f.drop_conn(1),
            vec![(
                2,
                json!({"type":"room_members","room":"r","members":["witness"]})
            )]
        );
        assert_eq!(f.reg.stats().reserved, 1);
        // ...but its id is not free: not without the secret, not with a wrong one.
        let out = f.join(3, "r", "victim");
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
        assert!(
            error_text(&out).contains("reserved for 60 s more"),
            "{out:?}"
        );
        f.now = ended + Duration::from_millis(59_900);
        let out = f.join_with(3, "r", "victim", &nth_secret(7));
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
        assert!(error_text(&out).contains("does not match"), "{out:?}");
        // The secret brings it back, with the same secret, just before the 60 s are up.
        f.now = ended + Duration::from_millis(59_950);
        let out = f.join_with(4, "r", "victim", &secret);
        assert!(joined(&out), "{out:?}");
        assert_eq!(secret_of(&out), secret);
        assert_eq!(f.reg.stats().reserved, 0);
        assert!(f.replaced().is_empty(), "nobody live was replaced");
    }

    #[test]
    fn after_60_s_the_id_is_anyones_with_a_fresh_secret() {
        let mut f = Fixture::new(Limits::default());
        let old = secret_of(&f.join(1, "r", "victim"));
        f.drain();
        let ended = f.now;
        f.drop_conn(1);
        // The room is gone with its last member; the reservation is not.
        assert_eq!((f.reg.stats().rooms, f.reg.stats().reserved), (0, 1));
        f.now = ended + Duration::from_secs(60) - Duration::from_millis(40);
        // (`send` adds 40 ms: this join arrives exactly at 60 s.)
        let out = f.join(2, "r", "victim");
        assert!(joined(&out), "{out:?}");
        let fresh = secret_of(&out);
        assert_ne!(fresh, old);
        assert_eq!(f.reg.stats().reserved, 0);
        // The old secret is worthless now: it cannot take the id from its new holder.
        let out = f.join_with(3, "r", "victim", &old);
        assert_eq!(error_code(&out).as_deref(), Some("duplicate_id"));
    }

    #[test]
    fn reservations_expire_even_when_nobody_asks_for_them() {
        let mut f = Fixture::new(Limits::default());
        f.join(1, "r", "a");
        f.join(2, "s", "b");
        f.drop_conn(1);
        f.now += Duration::from_secs(30);
        f.drop_conn(2);
        assert_eq!(f.reg.stats().reserved, 2);
        // Any message after 60 s sweeps what ran out (oldest first), and only that.
        f.now += Duration::from_secs(31);
        f.send(3, json!({"type":"ping"}));
        assert_eq!(f.reg.stats().reserved, 1);
        f.now += Duration::from_secs(30);
        f.send(3, json!({"type":"ping"}));
        assert_eq!(f.reg.stats().reserved, 0);
    }

    #[test]
    fn an_explicit_leave_releases_the_id_at_once() {
        let mut f = Fixture::new(Limits::default());
        let secret = secret_of(&f.join(1, "r", "a"));
        f.send(1, json!({"type":"leave"}));
        assert_eq!(f.reg.stats().reserved, 0);
        f.drop_conn(1);
        assert_eq!(f.reg.stats().reserved, 0, "left before it closed");
        let out = f.join(2, "r", "a");
        assert!(joined(&out), "{out:?}");
        assert_ne!(secret_of(&out), secret);
    }

    #[test]
    fn a_secret_for_a_free_id_is_ignored() {
        let mut f = Fixture::new(Limits::default());
        let out = f.join_with(1, "r", "a", &nth_secret(200));
        assert!(joined(&out), "{out:?}");
        assert_eq!(secret_of(&out), nth_secret(1));
    }

    #[test]
    fn reservations_are_capped_and_the_oldest_ends_first() {
        let mut f = Fixture::new(Limits {
            max_reservations: 2,
            ..Limits::default()
        });
        let secrets: Vec<String> = (1..=3)
            .map(|i| secret_of(&f.join(i, "r", &format!("m{i}"))))
            .collect();
        for i in 1..=3 {
            f.drop_conn(i);
        }
        assert_eq!(f.reg.stats().reserved, 2, "never more than the cap");
        // m1, the oldest, made room for m3: anyone may take it; m2 and m3 wait for theirs.
        assert!(joined(&f.join(10, "r", "m1")));
        assert_eq!(
            error_code(&f.join(11, "r", "m2")).as_deref(),
            Some("duplicate_id")
        );
        assert_eq!(
            error_code(&f.join(11, "r", "m3")).as_deref(),
            Some("duplicate_id")
        );
        assert!(joined(&f.join_with(12, "r", "m2", &secrets[1])));
        assert!(joined(&f.join_with(13, "r", "m3", &secrets[2])));
        assert_eq!(f.reg.stats().reserved, 0);
        // A cap of zero reserves nothing.
        let mut f = Fixture::new(Limits {
            max_reservations: 0,
            ..Limits::default()
        });
        f.join(1, "r", "a");
        f.drop_conn(1);
        assert!(joined(&f.join(2, "r", "a")));
    }

    #[test]
    fn the_default_cap_is_every_member_a_full_server_holds() {
        let l = Limits::default();
        assert_eq!(l.reservation, Duration::from_secs(60));
        assert_eq!(l.max_reservations, l.max_rooms * l.max_members);
    }

    #[test]
    fn a_resume_still_meets_the_room_limits() {
        let mut f = Fixture::new(Limits {
            max_members: 1,
            ..Limits::default()
        });
        let secret = secret_of(&f.join(1, "r", "a"));
        f.drop_conn(1);
        f.join(2, "r", "b");
        let out = f.join_with(3, "r", "a", &secret);
        assert_eq!(error_code(&out).as_deref(), Some("room_full"));
        // The refusal kept the reservation: once there is space, the secret still works.
        f.send(2, json!({"type":"leave"}));
        assert!(joined(&f.join_with(3, "r", "a", &secret)));
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"xbc"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn a_sender_may_hold_half_of_a_receivers_queue() {
        let mut q = QueueShares::new(64);
        assert_eq!(q.share(), 32);
        for _ in 0..32 {
            assert_eq!(q.admit(7), Ok(()));
        }
        assert_eq!(
            q.admit(7),
            Err(OverShare {
                sender: 7,
                queued: 32
            })
        );
        assert_eq!(q.queued(7), 32, "a refused relay is not counted");
        // Others have their own share.
        assert_eq!(q.admit(8), Ok(()));
        // As the receiver takes messages, the sender may queue again.
        q.release(7);
        assert_eq!(q.admit(7), Ok(()));
        for _ in 0..32 {
            q.release(7);
        }
        q.release(8);
        assert_eq!(
            (q.queued(7), q.senders()),
            (0, 0),
            "nothing kept for idle senders"
        );
        q.release(9); // never queued: nothing happens
        assert_eq!(q.senders(), 0);
        // The smallest queues still let every sender have one.
        assert_eq!(QueueShares::new(1).share(), 1);
        assert_eq!(QueueShares::new(0).share(), 1);
    }

    #[test]
    fn default_limits_are_the_seeds() {
        let l = Limits::default();
        assert_eq!(
            (l.max_rooms, l.max_members, l.rate_per_sec, l.burst),
            (1000, 50, 30.0, 50)
        );
        // With the defaults, the 51st member of a room is refused.
        let mut f = Fixture::new(Limits::default());
        for i in 0..50 {
            let out = f.join(i, "r", &format!("m{i}"));
            assert_eq!(out[0].1["type"], "joined", "member {i}: {out:?}");
        }
        assert_eq!(
            error_code(&f.join(50, "r", "m50")).as_deref(),
            Some("room_full")
        );
        assert_eq!(f.reg.stats().members, 50);
    }

    #[test]
    fn a_socket_kept_refused_hears_rate_limited_once_a_second() {
        let mut f = Fixture::new(Limits::default());
        f.reg.connect(T0, 1);
        // A flood at 100 messages a second for 3 s: after the burst, the bucket lets about
        // every third message through, and refuses the rest.
        let mut errors = Vec::new();
        let mut pongs = 0;
        for step in 0..300u64 {
            let now = T0 + Duration::from_millis(10 * step);
            f.reg.handle(now, 1, Ok(ClientMessage::Ping));
            for (_, m) in f.drain() {
                if m["code"] == "rate_limited" {
                    errors.push(now);
                } else if m["type"] == "pong" {
                    pongs += 1;
                }
            }
        }
        assert!(pongs > 50 + 60, "the steady rate is served: {pongs} pongs");
        let ms: Vec<u128> = errors.iter().map(Duration::as_millis).collect();
        assert_eq!(ms.len(), 3, "one error a second while refused: {ms:?}");
        assert!(
            ms.windows(2)
                .all(|w| matches!(w, [a, b] if b - a >= 1000 && b - a < 1100)),
            "{ms:?}"
        );
    }

    #[test]
    fn flood_is_rate_limited_and_recovers() {
        let mut f = Fixture::new(Limits::default());
        f.reg.connect(T0, 1);
        let mut limited = 0;
        for _ in 0..80 {
            f.reg.handle(T0, 1, Ok(ClientMessage::Ping));
            limited += f
                .drain()
                .iter()
                .filter(|(_, m)| m["code"] == "rate_limited")
                .count();
        }
        assert_eq!(limited, 1, "burst of 50 allowed, 30 refused with one error");
        f.reg
            .handle(T0 + Duration::from_secs(1), 1, Ok(ClientMessage::Ping));
        assert_eq!(f.drain(), vec![(1, json!({"type":"pong"}))]);
    }
}
