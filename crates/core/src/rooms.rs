//! The room registry of the WebSocket room service (seed 001), sans-IO.
//!
//! The driver gives every socket a [`ConnId`], calls [`RoomRegistry::connect`],
//! [`RoomRegistry::handle`] for every frame and [`RoomRegistry::disconnect`] at the end, and after
//! each call drains [`RoomRegistry::poll_output`] into the sockets' outbound queues.
//!
//! **Invariant:** a connection is in at most one room, a room holds each id at most once, and a
//! room with no members does not exist. Relayed messages only ever reach a member of the
//! sender's own room whose id the sender named.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use liveloop_proto::rooms::{ClientMessage, ErrorCode, ParseError, ServerMessage};

use crate::rate::TokenBucket;

/// A socket, as the driver numbers them.
pub type ConnId = u64;

/// The service's limits (seed 001's defaults).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_rooms: usize,
    pub max_members: usize,
    /// Steady message rate per socket.
    pub rate_per_sec: f32,
    /// Messages a socket may send at once.
    pub burst: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_rooms: 1000,
            max_members: 50,
            rate_per_sec: 30.0,
            burst: 50,
        }
    }
}

/// One message for one socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub to: ConnId,
    pub msg: ServerMessage,
}

#[derive(Debug)]
struct Conn {
    /// The id this socket joined with first; later joins must use the same one.
    identity: Option<String>,
    room: Option<String>,
    /// Set when the server removed the socket from its room (eviction).
    lost: bool,
    /// When this socket was last told `rate_limited`: it hears it at most once a second.
    limited_since: Option<Duration>,
    bucket: TokenBucket,
}

/// Counts for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    pub connections: usize,
    pub rooms: usize,
    pub members: usize,
}

/// All rooms and connections of one room service.
#[derive(Debug, Default)]
pub struct RoomRegistry {
    limits: Limits,
    /// Room id → member id → connection. A `BTreeMap` keeps `room_members` sorted.
    rooms: HashMap<String, BTreeMap<String, ConnId>>,
    conns: HashMap<ConnId, Conn>,
    out: VecDeque<Delivery>,
    next_auto_id: u64,
}

impl RoomRegistry {
    #[must_use]
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    #[must_use]
    pub fn stats(&self) -> Stats {
        Stats {
            connections: self.conns.len(),
            rooms: self.rooms.len(),
            members: self.rooms.values().map(BTreeMap::len).sum(),
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
                lost: false,
                limited_since: None,
                bucket,
            },
        );
    }

    /// The socket is gone: leave its room.
    pub fn disconnect(&mut self, conn: ConnId) {
        self.leave_room(conn);
        self.conns.remove(&conn);
    }

    /// The server dropped this socket from its room (it was too slow). Its later messages get
    /// `membership_lost` until it joins again.
    pub fn evict(&mut self, conn: ConnId) {
        if self.leave_room(conn)
            && let Some(c) = self.conns.get_mut(&conn)
        {
            c.lost = true;
        }
    }

    /// The next message to deliver.
    pub fn poll_output(&mut self) -> Option<Delivery> {
        self.out.pop_front()
    }

    /// One frame from a socket, parsed (or not) by the driver.
    pub fn handle(&mut self, now: Duration, conn: ConnId, msg: Result<ClientMessage, ParseError>) {
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
            ClientMessage::Join { room, id } => self.join(conn, &room, id),
            ClientMessage::Leave => {
                if !self.leave_room(conn) {
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
                    Some(target) => {
                        self.send(
                            target,
                            ServerMessage::Relay {
                                kind,
                                room,
                                from,
                                to,
                                payload,
                            },
                        );
                    }
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

    fn join(&mut self, conn: ConnId, room: &str, id: Option<String>) {
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
        let room_count = self.rooms.len();
        let members = match self.rooms.get(room) {
            Some(members) => members,
            None if room_count >= self.limits.max_rooms => {
                let message = format!(
                    "the server holds its maximum of {} rooms",
                    self.limits.max_rooms
                );
                self.error(conn, ErrorCode::RoomLimitReached, message);
                return;
            }
            None => &BTreeMap::new(),
        };
        if members.contains_key(&id) {
            self.error(
                conn,
                ErrorCode::DuplicateId,
                format!("{id} is already in this room"),
            );
            return;
        }
        if members.len() >= self.limits.max_members {
            let message = format!(
                "the room has its maximum of {} members",
                self.limits.max_members
            );
            self.error(conn, ErrorCode::RoomFull, message);
            return;
        }
        self.rooms
            .entry(room.to_owned())
            .or_default()
            .insert(id.clone(), conn);
        if let Some(c) = self.conns.get_mut(&conn) {
            c.identity = Some(id.clone());
            c.room = Some(room.to_owned());
            c.lost = false;
        }
        self.send(
            conn,
            ServerMessage::Joined {
                room: room.to_owned(),
                id,
            },
        );
        self.broadcast_members(room);
    }

    /// Removes `conn` from its room; true if it was in one.
    fn leave_room(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        let (Some(room), Some(id)) = (c.room.take(), c.identity.as_ref()) else {
            return false;
        };
        if let Some(members) = self.rooms.get_mut(&room) {
            members.remove(id);
            if members.is_empty() {
                self.rooms.remove(&room);
            } else {
                self.broadcast_members(&room);
            }
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
            self.out.push_back(Delivery { to, msg });
        }
    }

    fn send(&mut self, to: ConnId, msg: ServerMessage) {
        self.out.push_back(Delivery { to, msg });
    }

    fn error(&mut self, to: ConnId, code: ErrorCode, message: String) {
        self.send(to, ServerMessage::Error { code, message });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const T0: Duration = Duration::ZERO;

    struct Fixture {
        reg: RoomRegistry,
        now: Duration,
    }

    impl Fixture {
        fn new(limits: Limits) -> Self {
            Self {
                reg: RoomRegistry::new(limits),
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
    }

    fn error_code(out: &[(ConnId, serde_json::Value)]) -> Option<String> {
        out.iter()
            .find_map(|(_, m)| m.get("code").and_then(|c| c.as_str()).map(str::to_owned))
    }

    #[test]
    fn join_answers_joined_then_sorted_members_to_everyone() {
        let mut f = Fixture::new(Limits::default());
        assert_eq!(
            f.join(1, "r", "zoe"),
            vec![
                (1, json!({"type":"joined","room":"r","from":"zoe"})),
                (
                    1,
                    json!({"type":"room_members","room":"r","members":["zoe"]})
                ),
            ]
        );
        let out = f.join(2, "r", "adam");
        assert_eq!(
            out[0],
            (2, json!({"type":"joined","room":"r","from":"adam"}))
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
        f.reg.disconnect(1);
        assert_eq!(
            f.reg.stats(),
            Stats {
                connections: 1,
                rooms: 0,
                members: 0
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
        assert_eq!(out[0], (3, json!({"type":"joined","room":"s","from":"c"})));
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
    fn eviction_reports_membership_lost() {
        let mut f = Fixture::new(Limits::default());
        f.join(1, "r", "a");
        f.join(2, "r", "b");
        f.drain();
        f.reg.evict(2);
        assert_eq!(
            f.drain(),
            vec![(1, json!({"type":"room_members","room":"r","members":["a"]}))]
        );
        assert_eq!(
            error_code(&f.send(2, json!({"type":"hangup","to":"a"}))).as_deref(),
            Some("membership_lost")
        );
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
