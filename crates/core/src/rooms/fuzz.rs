//! Fuzz target `room_registry`: arbitrary scripts of connects, frames (parsed by
//! `ClientMessage::parse`, as the server does), disconnects, evictions and time passing drive
//! a [`RoomRegistry`] with small limits. After every step the module's invariants hold: a
//! connection is in at most one room, under its one identity, and the room lists it; no room
//! is empty or over [`Limits::max_members`], nor are there more than [`Limits::max_rooms`]
//! rooms or [`Limits::max_reservations`] reservations; an id held live or reserved is never
//! reserved twice. What one step puts out is bounded (at most a member list to every member
//! and one reply) and true: relays reach only the named member of the sender's own room,
//! member lists are the room's, `joined` tells the id's place and secret. And an id held by
//! another connection, live or reserved, is taken only with its secret.
//! Corpus: `src/__fuzz__/room_registry/corpus/`.

use std::collections::HashMap;

use serde_json::json;

use super::*;

use crate::fuzz_support::{self as support, Choices};

const NAME: &str = "room_registry";
const OP_LEN: usize = 6;
/// A script: one byte choosing the limits, then operations of [`OP_LEN`] bytes.
const SHAPE: support::Shape = support::Shape {
    header: 1,
    op_len: OP_LEN,
};

fn limits(profile: u8) -> Limits {
    let small = Limits {
        max_rooms: 2,
        max_members: 3,
        rate_per_sec: 30.0,
        burst: 8,
        reservation: Duration::from_secs(60),
        max_reservations: 2,
    };
    match profile % 3 {
        0 => small,
        1 => Limits {
            reservation: Duration::ZERO,
            ..small
        },
        _ => Limits::default(),
    }
}

/// One step; connections are picked among the live ones by index.
#[derive(Debug, Clone, Copy)]
enum Op {
    Connect,
    Disconnect {
        conn: u8,
    },
    Evict {
        conn: u8,
    },
    /// `ms` later (`long`: 61 s, past every reservation).
    Wait {
        long: bool,
        ms: u16,
    },
    /// Join room `r<room % 3>` as `u<id % 6>` (6: no id), with no secret (0), one `joined`
    /// gave (1, the `pick`th seen), a well-formed wrong one (2) or a malformed one (3).
    Join {
        conn: u8,
        room: u8,
        id: u8,
        secret: u8,
        pick: u8,
    },
    /// offer, answer, candidate, hangup to `u<to % 7>`.
    Relay {
        conn: u8,
        kind: u8,
        to: u8,
    },
    /// leave, ping, pong, or a frame that does not parse.
    Other {
        conn: u8,
        what: u8,
    },
}

fn decode(bytes: &[u8]) -> (u8, Vec<Op>) {
    let (header, ops) = bytes.split_at(bytes.len().min(1));
    let profile = header.first().copied().unwrap_or(0);
    let ops = ops
        .chunks(OP_LEN)
        .map(|op| {
            let mut c = Choices(op);
            let (tag, a, b, d, e, f) = (c.byte(), c.byte(), c.byte(), c.byte(), c.byte(), c.byte());
            match tag % 10 {
                0 => Op::Connect,
                1 => Op::Disconnect { conn: a },
                2 => Op::Evict { conn: a },
                3 => Op::Wait {
                    long: a % 8 == 0,
                    ms: u16::from_le_bytes([b, d]),
                },
                4 | 5 => Op::Join {
                    conn: a,
                    room: b,
                    id: d,
                    secret: e,
                    pick: f,
                },
                6 => Op::Relay {
                    conn: a,
                    kind: b,
                    to: d,
                },
                _ => Op::Other { conn: a, what: b },
            }
        })
        .collect();
    (profile, ops)
}

fn encode(profile: u8, ops: &[Op]) -> Vec<u8> {
    let mut out = vec![profile];
    for op in ops {
        let bytes = match *op {
            Op::Connect => [0, 0, 0, 0, 0, 0],
            Op::Disconnect { conn } => [1, conn, 0, 0, 0, 0],
            Op::Evict { conn } => [2, conn, 0, 0, 0, 0],
            Op::Wait { long, ms } => {
                let [lo, hi] = ms.to_le_bytes();
                [3, if long { 0 } else { 1 }, lo, hi, 0, 0]
            }
            Op::Join {
                conn,
                room,
                id,
                secret,
                pick,
            } => [4, conn, room, id, secret, pick],
            Op::Relay { conn, kind, to } => [6, conn, kind, to, 0, 0],
            Op::Other { conn, what } => [7, conn, what, 0, 0, 0],
        };
        out.extend(bytes);
    }
    out
}

/// The test's entropy: every secret differs (a counter), and none is `ff…ff`.
fn entropy() -> impl FnMut(&mut [u8]) + Send + 'static {
    let mut n = 0u64;
    move |bytes: &mut [u8]| {
        n += 1;
        bytes.fill(0);
        let len = bytes.len().min(8);
        bytes[..len].copy_from_slice(&n.to_le_bytes()[..len]);
    }
}

const WRONG_SECRET: &str = "ffffffffffffffffffffffffffffffff";

/// The frame a script step sends, as text.
fn frame(op: Op, secrets: &[String]) -> Option<String> {
    let id = |n: u8| format!("u{}", n % 6);
    let msg = match op {
        Op::Join {
            room,
            id: who,
            secret,
            pick,
            ..
        } => {
            let mut m = json!({"type": "join", "room": format!("r{}", room % 3)});
            if who % 7 != 6 {
                m["from"] = json!(id(who));
            }
            match secret % 4 {
                1 if !secrets.is_empty() => {
                    m["secret"] = json!(secrets[usize::from(pick) % secrets.len()]);
                }
                2 => m["secret"] = json!(WRONG_SECRET),
                3 => m["secret"] = json!("not-a-secret"),
                _ => {}
            }
            m
        }
        Op::Relay { kind, to, .. } => {
            let to = format!("u{}", to % 7);
            match kind % 4 {
                0 => json!({"type":"offer","to":to,"sdp":{"type":"offer","sdp":"v=0\r\n"}}),
                1 => json!({"type":"answer","to":to,"sdp":{"type":"answer","sdp":"v=0\r\n"}}),
                2 => json!({"type":"candidate","to":to,"candidate":{"candidate":"c","sdpMid":"0"}}),
                _ => json!({"type":"hangup","to":to}),
            }
        }
        Op::Other { what, .. } => match what % 5 {
            0 => json!({"type": "leave"}),
            1 => json!({"type": "ping"}),
            2 => json!({"type": "pong"}),
            3 => return Some("{\"type\":\"join\",\"room\":".into()),
            _ => json!({"type": "dance"}),
        },
        _ => return None,
    };
    Some(msg.to_string())
}

/// Who holds (room, id) before a join, and with which secret: taken by another connection
/// only with that secret.
struct Claim {
    holder: ConnId,
    secret: String,
}

fn claim_before(reg: &RoomRegistry, now: Duration, room: &str, id: &str) -> Option<Claim> {
    if let Some(holder) = reg.rooms.get(room).and_then(|m| m.get(id)) {
        let secret = reg.conns.get(holder)?.secret.as_ref()?.0.clone();
        return Some(Claim {
            holder: *holder,
            secret,
        });
    }
    let r = reg
        .reserved
        .get(&(room.to_owned(), id.to_owned()))
        .filter(|r| r.until > now)?;
    Some(Claim {
        holder: r.conn,
        secret: r.secret.0.clone(),
    })
}

fn check_state(reg: &RoomRegistry, identities: &HashMap<ConnId, String>) {
    let limits = &reg.limits;
    assert!(
        reg.rooms.len() <= limits.max_rooms,
        "{} rooms",
        reg.rooms.len()
    );
    for (room, members) in &reg.rooms {
        assert!(!members.is_empty(), "room {room} is empty");
        assert!(members.len() <= limits.max_members, "{room}: {members:?}");
        for (id, conn) in members {
            let c = reg.conns.get(conn).expect("a member is connected");
            assert_eq!(c.room.as_deref(), Some(room.as_str()));
            assert_eq!(c.identity.as_deref(), Some(id.as_str()));
            assert!(c.secret.is_some());
            assert!(!reg.reserved.contains_key(&(room.clone(), id.clone())));
        }
    }
    for (conn, c) in &reg.conns {
        if let Some(room) = &c.room {
            let id = c.identity.as_ref().expect("a member has an identity");
            assert_eq!(reg.rooms.get(room).and_then(|m| m.get(id)), Some(conn));
        }
        // An identity, once taken, stays.
        if let Some(first) = identities.get(conn) {
            assert_eq!(c.identity.as_ref(), Some(first));
        }
    }
    assert!(reg.reserved.len() <= limits.max_reservations);
    assert_eq!(reg.reserved.len(), reg.reserved_order.len());
    for (seq, key) in &reg.reserved_order {
        assert_eq!(reg.reserved.get(key).map(|r| r.seq), Some(*seq));
    }
}

fn check_output(reg: &RoomRegistry, out: &[Delivery], from: Option<ConnId>) {
    assert!(
        out.len() <= reg.limits.max_members + 1,
        "{} deliveries for one step",
        out.len()
    );
    for d in out {
        let to = reg
            .conns
            .get(&d.to)
            .expect("delivered to a live connection");
        match &d.msg {
            ServerMessage::Relay {
                room,
                from: from_id,
                to: to_id,
                ..
            } => {
                let sender = d.sender.expect("a relay names its sender");
                assert_eq!(Some(sender), from);
                assert_ne!(sender, d.to);
                let s = &reg.conns[&sender];
                assert_eq!(s.room.as_ref(), Some(room));
                assert_eq!(s.identity.as_ref(), Some(from_id));
                assert_eq!(to.room.as_ref(), Some(room));
                assert_eq!(to.identity.as_ref(), Some(to_id));
            }
            ServerMessage::RoomMembers { room, members } => {
                let now: Vec<&String> = reg
                    .rooms
                    .get(room)
                    .map(|m| m.keys().collect())
                    .unwrap_or_default();
                assert_eq!(members.iter().collect::<Vec<_>>(), now, "{room}");
                assert_eq!(to.room.as_ref(), Some(room));
            }
            ServerMessage::Joined { room, id, secret } => {
                assert_eq!(Some(d.to), from);
                assert_eq!(to.room.as_ref(), Some(room));
                assert_eq!(to.identity.as_ref(), Some(id));
                let secret = secret.as_deref().expect("joined carries the secret");
                assert!(liveloop_proto::rooms::is_valid_secret(secret));
                assert_eq!(to.secret.as_ref().map(|s| s.0.as_str()), Some(secret));
            }
            _ => assert_eq!(Some(d.to), from, "{:?}", d.msg),
        }
        if !matches!(d.msg, ServerMessage::Relay { .. }) {
            assert_eq!(d.sender, None);
        }
    }
}

fn run(bytes: &[u8]) {
    let (profile, ops) = decode(bytes);
    let mut reg = RoomRegistry::new(limits(profile), entropy());
    let mut now = Duration::from_secs(1);
    let mut live: Vec<ConnId> = Vec::new();
    let mut next_conn: ConnId = 1;
    let mut secrets: Vec<String> = Vec::new();
    let mut identities: HashMap<ConnId, String> = HashMap::new();
    for op in ops {
        let pick = |n: u8| (!live.is_empty()).then(|| live[usize::from(n) % live.len()]);
        let mut from = None;
        let mut claim = None;
        match op {
            Op::Connect => {
                reg.connect(now, next_conn);
                live.push(next_conn);
                next_conn += 1;
            }
            Op::Disconnect { conn } => {
                if let Some(conn) = pick(conn) {
                    reg.disconnect(now, conn);
                    live.retain(|c| *c != conn);
                    identities.remove(&conn);
                }
            }
            Op::Evict { conn } => {
                if let Some(conn) = pick(conn) {
                    reg.evict(now, conn);
                }
            }
            Op::Wait { long, ms } => {
                now += if long {
                    Duration::from_secs(61)
                } else {
                    Duration::from_millis(u64::from(ms))
                };
            }
            Op::Join { conn, .. } | Op::Relay { conn, .. } | Op::Other { conn, .. } => {
                if let (Some(conn), Some(text)) = (pick(conn), frame(op, &secrets)) {
                    now += Duration::from_millis(10);
                    let parsed = ClientMessage::parse(&text);
                    if let Ok(ClientMessage::Join { room, id, secret }) = &parsed {
                        let id = id.clone().or_else(|| identities.get(&conn).cloned());
                        if let Some(id) = id {
                            claim = claim_before(&reg, now, room, &id)
                                .filter(|c| c.holder != conn)
                                .map(|c| (room.clone(), id, c, secret.clone()));
                        }
                    }
                    reg.handle(now, conn, parsed);
                    from = Some(conn);
                }
            }
        }
        let out: Vec<Delivery> = std::iter::from_fn(|| reg.poll_output()).collect();
        check_output(&reg, &out, from);
        if let Some((room, id, held, presented)) = claim {
            let taken = reg.rooms.get(&room).and_then(|m| m.get(&id)) == from.as_ref();
            assert!(
                !taken || presented.as_deref() == Some(held.secret.as_str()),
                "{id} in {room} was taken from {} without its secret",
                held.holder
            );
        }
        for d in &out {
            if let ServerMessage::Joined {
                id,
                secret: Some(secret),
                ..
            } = &d.msg
            {
                identities.insert(d.to, id.clone());
                if secrets.len() < 16 {
                    secrets.push(secret.clone());
                }
            }
        }
        // The driver closes what was taken over.
        while let Some(replaced) = reg.poll_replaced() {
            let c = &reg.conns[&replaced];
            assert!(c.room.is_none() && c.lost && c.secret.is_none());
            reg.disconnect(now, replaced);
            live.retain(|c| *c != replaced);
            identities.remove(&replaced);
            let out: Vec<Delivery> = std::iter::from_fn(|| reg.poll_output()).collect();
            check_output(&reg, &out, None);
        }
        check_state(&reg, &identities);
        assert_eq!(reg.conns.len(), live.len());
    }
}

#[test]
fn room_registry() {
    support::fuzz_script(NAME, 600, SHAPE, &seeds(), run);
}

/// Real sessions: a call of three (join, offers, candidates, a hangup, a leave), a room that
/// fills, a dropped connection resuming with its secret, a takeover of a live id with its
/// secret, and a stranger trying the id while it is reserved and after.
fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let join = |conn, room, id| Op::Join {
        conn,
        room,
        id,
        secret: 0,
        pick: 0,
    };
    let with_secret = |conn, room, id, pick| Op::Join {
        conn,
        room,
        id,
        secret: 1,
        pick,
    };
    let relay = |conn, kind, to| Op::Relay { conn, kind, to };
    let call = vec![
        Op::Connect,
        Op::Connect,
        Op::Connect,
        join(0, 0, 0),
        join(1, 0, 1),
        join(2, 0, 2),
        relay(0, 0, 1),
        relay(1, 1, 0),
        relay(0, 2, 1),
        relay(1, 2, 0),
        relay(0, 0, 2),
        relay(2, 1, 0),
        relay(2, 0, 1),
        relay(1, 1, 2),
        relay(1, 3, 2),
        Op::Other { conn: 1, what: 1 },
        Op::Other { conn: 2, what: 0 },
        relay(0, 0, 2),
        Op::Disconnect { conn: 0 },
    ];
    let mut full = vec![Op::Connect; 6];
    full.extend((0..5).map(|c| join(c, 1, c)));
    full.push(join(5, 2, 5));
    full.push(join(5, 0, 5));
    let resume = vec![
        Op::Connect,
        Op::Connect,
        join(0, 0, 0),
        join(1, 0, 1),
        Op::Disconnect { conn: 0 },
        Op::Connect,
        // The stranger (live[1] after the drop is the new one) without the secret, then
        // the new connection of u0 with it.
        join(1, 0, 0),
        Op::Wait {
            long: false,
            ms: 2000,
        },
        with_secret(1, 0, 0, 0),
        relay(1, 0, 1),
        Op::Disconnect { conn: 1 },
        Op::Wait { long: true, ms: 0 },
        Op::Connect,
        join(1, 0, 0),
    ];
    let takeover = vec![
        Op::Connect,
        Op::Connect,
        join(0, 0, 0),
        join(1, 1, 3),
        Op::Connect,
        with_secret(2, 0, 0, 0),
        relay(2, 0, 3),
        Op::Evict { conn: 0 },
        join(0, 1, 3),
    ];
    vec![
        ("call-of-three", encode(0, &call)),
        ("full-room", encode(0, &full)),
        ("resume-after-a-drop", encode(0, &resume)),
        ("takeover-with-the-secret", encode(0, &takeover)),
        ("call-default-limits", encode(2, &call)),
    ]
}

#[test]
fn room_registry_seeds_are_in_the_corpus() {
    support::seeds_are_in_the_corpus(NAME, &seeds());
}
