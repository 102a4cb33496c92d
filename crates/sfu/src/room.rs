//! Who owns what in the SFU, sans-IO: rooms, their members, and each member's transports,
//! producers and consumers, with the per-member caps (issue 22, point 7). Every request names
//! its room and an object id; a member reaches only objects of its own and, to consume, the
//! producers of its own room: anything else is "not found", whether it exists elsewhere or
//! not (an id from another room tells nothing). Ids are made by the caller (the driver draws
//! them at random, so they cannot be guessed). A member that leaves — or vanishes, which the
//! driver turns into a leave at the pong timeout — takes all its objects with it, and every
//! consumer of its producers in other members.

use std::collections::BTreeMap;

use liveloop_proto::sfu::{Direction, MediaKind, Participant};

/// Members per room (seed 001's limit, for large rooms too).
pub const MAX_MEMBERS: usize = 50;
/// Transports per member: one send and one receive, and room for a replacement of each
/// (mediasoup-client makes new ones after an ICE failure before the old ones are closed).
pub const MAX_TRANSPORTS: usize = 4;
/// Producers per member: microphone, camera, and a screen share with its audio.
pub const MAX_PRODUCERS: usize = 4;
/// Consumers per member: every producer of everyone else in a full room.
pub const MAX_CONSUMERS: usize = (MAX_MEMBERS - 1) * MAX_PRODUCERS;
/// Rooms at most (a server's memory is not a remote's to take); with [`MAX_MEMBERS`] each,
/// this bounds the members and, with the per-member caps, every object.
pub const MAX_ROOMS: usize = 1_000;

/// Why a request was refused (its text is the `error` of the ack).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoomError {
    #[error("room is full ({MAX_MEMBERS} members)")]
    RoomFull,
    #[error("too many rooms on this server")]
    TooManyRooms,
    #[error("not in this room")]
    NotInRoom,
    #[error("already in a room")]
    AlreadyJoined,
    #[error("transport not found")]
    TransportNotFound,
    #[error("producer not found")]
    ProducerNotFound,
    #[error("consumer not found")]
    ConsumerNotFound,
    #[error("too many transports (at most {MAX_TRANSPORTS})")]
    TooManyTransports,
    #[error("too many producers (at most {MAX_PRODUCERS})")]
    TooManyProducers,
    #[error("too many consumers (at most {MAX_CONSUMERS})")]
    TooManyConsumers,
    #[error("this transport does not {0}")]
    WrongDirection(&'static str),
    #[error("no receive transport")]
    NoRecvTransport,
    #[error("cannot consume your own producer")]
    OwnProducer,
    #[error("duplicate id")]
    DuplicateId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Producer {
    pub owner: String,
    pub kind: MediaKind,
    pub transport: String,
    pub paused: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consumer {
    pub producer: String,
    pub transport: String,
    pub paused: bool,
}

#[derive(Debug, Clone, Default)]
struct Member {
    name: String,
    transports: BTreeMap<String, Direction>,
    producers: Vec<String>,
    consumers: BTreeMap<String, Consumer>,
}

#[derive(Debug, Clone, Default)]
struct Room {
    /// Members in the order they joined.
    members: Vec<String>,
    producers: BTreeMap<String, Producer>,
}

/// What a leave removed: for the driver to close, and to tell the others.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Departure {
    pub room: String,
    pub transports: Vec<String>,
    pub producers: Vec<String>,
    /// Consumers of the leaver's producers in other members: (member, consumer id).
    pub others_consumers: Vec<(String, String)>,
    /// Who is still in the room (to send `participant-left` and the new list to).
    pub remaining: Vec<String>,
}

/// Every room of one SFU.
#[derive(Debug, Clone, Default)]
pub struct Rooms {
    rooms: BTreeMap<String, Room>,
    /// Member id → (room, state).
    members: BTreeMap<String, (String, Member)>,
}

impl Rooms {
    /// `peer` joins `room` (created if new) as `name`; returns the producers already there.
    ///
    /// # Errors
    /// Already in a room, the room full, or too many rooms.
    pub fn join(&mut self, peer: &str, room: &str, name: &str) -> Result<Vec<String>, RoomError> {
        if self.members.contains_key(peer) {
            return Err(RoomError::AlreadyJoined);
        }
        if !self.rooms.contains_key(room) && self.rooms.len() >= MAX_ROOMS {
            return Err(RoomError::TooManyRooms);
        }
        let r = self.rooms.entry(room.to_owned()).or_default();
        if r.members.len() >= MAX_MEMBERS {
            return Err(RoomError::RoomFull);
        }
        r.members.push(peer.to_owned());
        let existing = r.producers.keys().cloned().collect();
        let member = Member {
            name: name.to_owned(),
            ..Member::default()
        };
        self.members
            .insert(peer.to_owned(), (room.to_owned(), member));
        Ok(existing)
    }

    fn member(&mut self, peer: &str, room: &str) -> Result<&mut Member, RoomError> {
        match self.members.get_mut(peer) {
            Some((r, m)) if r == room => Ok(m),
            _ => Err(RoomError::NotInRoom),
        }
    }

    /// A transport `id` for `peer`.
    ///
    /// # Errors
    /// Not in the room, too many transports, or the id taken.
    pub fn create_transport(
        &mut self,
        peer: &str,
        room: &str,
        id: &str,
        direction: Direction,
    ) -> Result<(), RoomError> {
        let m = self.member(peer, room)?;
        if m.transports.len() >= MAX_TRANSPORTS {
            return Err(RoomError::TooManyTransports);
        }
        if m.transports.contains_key(id) {
            return Err(RoomError::DuplicateId);
        }
        m.transports.insert(id.to_owned(), direction);
        Ok(())
    }

    /// The direction of `peer`'s own transport `id`.
    ///
    /// # Errors
    /// Not in the room, or not its transport.
    pub fn transport(&mut self, peer: &str, room: &str, id: &str) -> Result<Direction, RoomError> {
        self.member(peer, room)?
            .transports
            .get(id)
            .copied()
            .ok_or(RoomError::TransportNotFound)
    }

    /// A producer `id` of `peer` on its send transport `transport`.
    ///
    /// # Errors
    /// Not in the room, not its send transport, too many producers, or the id taken.
    pub fn produce(
        &mut self,
        peer: &str,
        room: &str,
        transport: &str,
        id: &str,
        kind: MediaKind,
    ) -> Result<(), RoomError> {
        let m = self.member(peer, room)?;
        match m.transports.get(transport) {
            None => return Err(RoomError::TransportNotFound),
            Some(Direction::Recv) => return Err(RoomError::WrongDirection("send")),
            Some(Direction::Send) => {}
        }
        if m.producers.len() >= MAX_PRODUCERS {
            return Err(RoomError::TooManyProducers);
        }
        let r = self.rooms.get_mut(room).ok_or(RoomError::NotInRoom)?;
        if r.producers.contains_key(id) {
            return Err(RoomError::DuplicateId);
        }
        r.producers.insert(
            id.to_owned(),
            Producer {
                owner: peer.to_owned(),
                kind,
                transport: transport.to_owned(),
                paused: false,
            },
        );
        if let Some((_, m)) = self.members.get_mut(peer) {
            m.producers.push(id.to_owned());
        }
        Ok(())
    }

    /// A producer of `room`, as another member may see it.
    ///
    /// # Errors
    /// Not found in this room.
    pub fn producer(&self, room: &str, id: &str) -> Result<&Producer, RoomError> {
        self.rooms
            .get(room)
            .and_then(|r| r.producers.get(id))
            .ok_or(RoomError::ProducerNotFound)
    }

    /// A consumer `id` for `peer` of another member's producer, on `peer`'s receive
    /// transport (the newest, when it has made more than one); it starts paused.
    ///
    /// # Errors
    /// Not in the room, the producer not in it or its own, no receive transport, too many
    /// consumers, or the id taken.
    pub fn consume(
        &mut self,
        peer: &str,
        room: &str,
        producer: &str,
        id: &str,
    ) -> Result<Consumer, RoomError> {
        let owner = self.producer(room, producer)?.owner.clone();
        let m = self.member(peer, room)?;
        if owner == peer {
            return Err(RoomError::OwnProducer);
        }
        let Some(transport) = m
            .transports
            .iter()
            .filter(|(_, d)| **d == Direction::Recv)
            .map(|(t, _)| t.clone())
            .next_back()
        else {
            return Err(RoomError::NoRecvTransport);
        };
        if m.consumers.len() >= MAX_CONSUMERS {
            return Err(RoomError::TooManyConsumers);
        }
        if m.consumers.contains_key(id) {
            return Err(RoomError::DuplicateId);
        }
        let c = Consumer {
            producer: producer.to_owned(),
            transport,
            paused: true,
        };
        m.consumers.insert(id.to_owned(), c.clone());
        Ok(c)
    }

    /// Resumes `peer`'s consumer `id`.
    ///
    /// # Errors
    /// Not in the room or not its consumer.
    pub fn resume(&mut self, peer: &str, room: &str, id: &str) -> Result<&Consumer, RoomError> {
        let c = self
            .member(peer, room)?
            .consumers
            .get_mut(id)
            .ok_or(RoomError::ConsumerNotFound)?;
        c.paused = false;
        Ok(c)
    }

    /// Pauses or resumes `peer`'s own producer `id` (mute, camera off).
    ///
    /// # Errors
    /// Not in the room or not its producer.
    pub fn set_producer_paused(
        &mut self,
        peer: &str,
        room: &str,
        id: &str,
        paused: bool,
    ) -> Result<(), RoomError> {
        self.member(peer, room)?;
        let p = self
            .rooms
            .get_mut(room)
            .and_then(|r| r.producers.get_mut(id))
            .filter(|p| p.owner == peer)
            .ok_or(RoomError::ProducerNotFound)?;
        p.paused = paused;
        Ok(())
    }

    /// The room's members for `participant-list-update`: muted when it has no audio producer
    /// or only paused ones, video paused likewise.
    #[must_use]
    pub fn participants(&self, room: &str) -> Vec<Participant> {
        let Some(r) = self.rooms.get(room) else {
            return Vec::new();
        };
        r.members
            .iter()
            .map(|id| {
                let live = |kind| {
                    r.producers
                        .values()
                        .any(|p| p.owner == *id && p.kind == kind && !p.paused)
                };
                let name = self
                    .members
                    .get(id)
                    .map(|(_, m)| m.name.clone())
                    .filter(|n| !n.is_empty())
                    .unwrap_or_else(|| id.clone());
                Participant {
                    id: id.clone(),
                    name,
                    is_audio_muted: !live(MediaKind::Audio),
                    is_video_paused: !live(MediaKind::Video),
                }
            })
            .collect()
    }

    /// `peer` leaves (or vanished): everything it had is removed, with the consumers others
    /// had of its producers; an empty room goes too. `None` if it was in no room.
    pub fn leave(&mut self, peer: &str) -> Option<Departure> {
        let (room, member) = self.members.remove(peer)?;
        let mut d = Departure {
            room: room.clone(),
            transports: member.transports.into_keys().collect(),
            producers: member.producers,
            ..Departure::default()
        };
        if let Some(r) = self.rooms.get_mut(&room) {
            r.members.retain(|m| m != peer);
            r.producers.retain(|_, p| p.owner != peer);
            d.remaining = r.members.clone();
            if r.members.is_empty() {
                self.rooms.remove(&room);
            }
        }
        for other in &d.remaining {
            if let Some((_, m)) = self.members.get_mut(other) {
                let gone: Vec<String> = m
                    .consumers
                    .iter()
                    .filter(|(_, c)| d.producers.contains(&c.producer))
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in gone {
                    m.consumers.remove(&id);
                    d.others_consumers.push((other.clone(), id));
                }
            }
        }
        Some(d)
    }

    /// Members in all rooms.
    #[must_use]
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Rooms with anyone in them.
    #[must_use]
    pub fn room_count(&self) -> usize {
        self.rooms.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_in_a_room() -> Rooms {
        let mut r = Rooms::default();
        assert_eq!(r.join("a", "room", "Ann"), Ok(vec![]));
        r.create_transport("a", "room", "a-send", Direction::Send)
            .unwrap();
        r.produce("a", "room", "a-send", "a-mic", MediaKind::Audio)
            .unwrap();
        r.produce("a", "room", "a-send", "a-cam", MediaKind::Video)
            .unwrap();
        assert_eq!(
            r.join("b", "room", ""),
            Ok(vec!["a-cam".to_owned(), "a-mic".to_owned()])
        );
        r.create_transport("b", "room", "b-recv", Direction::Recv)
            .unwrap();
        r
    }

    #[test]
    fn members_reach_only_their_own_objects_and_their_rooms_producers() {
        let mut r = two_in_a_room();
        r.join("x", "other", "Eve").unwrap();
        r.create_transport("x", "other", "x-recv", Direction::Recv)
            .unwrap();
        // Another room's producer, or a name of the wrong room: not found.
        assert_eq!(
            r.consume("x", "other", "a-cam", "x-c1"),
            Err(RoomError::ProducerNotFound)
        );
        assert_eq!(
            r.consume("x", "room", "a-cam", "x-c1"),
            Err(RoomError::NotInRoom)
        );
        // Someone else's transport.
        assert_eq!(
            r.transport("b", "room", "a-send"),
            Err(RoomError::TransportNotFound)
        );
        assert_eq!(
            r.produce("b", "room", "a-send", "b-mic", MediaKind::Audio),
            Err(RoomError::TransportNotFound)
        );
        // Producing on a receive transport.
        assert_eq!(
            r.produce("b", "room", "b-recv", "b-mic", MediaKind::Audio),
            Err(RoomError::WrongDirection("send"))
        );
        // Consuming: paused at first, on the receive transport; someone else's consumer.
        let c = r.consume("b", "room", "a-cam", "b-c1").unwrap();
        assert!(c.paused);
        assert_eq!(c.transport, "b-recv");
        assert_eq!(
            r.resume("a", "room", "b-c1"),
            Err(RoomError::ConsumerNotFound)
        );
        assert!(!r.resume("b", "room", "b-c1").unwrap().paused);
        // Own producers are not consumed; without a receive transport nothing is.
        assert_eq!(
            r.consume("a", "room", "a-cam", "a-c1"),
            Err(RoomError::OwnProducer)
        );
        r.join("c", "room", "Cy").unwrap();
        assert_eq!(
            r.consume("c", "room", "a-cam", "c-c1"),
            Err(RoomError::NoRecvTransport)
        );
        // Pausing someone else's producer.
        assert_eq!(
            r.set_producer_paused("b", "room", "a-mic", true),
            Err(RoomError::ProducerNotFound)
        );
    }

    #[test]
    fn caps_hold_per_member_and_per_room() {
        let mut r = two_in_a_room();
        for i in 0..3 {
            r.create_transport("b", "room", &format!("t{i}"), Direction::Send)
                .unwrap();
        }
        assert_eq!(
            r.create_transport("b", "room", "t9", Direction::Send),
            Err(RoomError::TooManyTransports)
        );
        for i in 0..MAX_PRODUCERS {
            r.produce("b", "room", "t0", &format!("p{i}"), MediaKind::Video)
                .unwrap();
        }
        assert_eq!(
            r.produce("b", "room", "t0", "p9", MediaKind::Video),
            Err(RoomError::TooManyProducers)
        );
        assert_eq!(
            r.produce("a", "room", "a-send", "a-mic", MediaKind::Audio),
            Err(RoomError::DuplicateId)
        );
        let mut full = Rooms::default();
        for i in 0..MAX_MEMBERS {
            full.join(&format!("m{i}"), "big", "").unwrap();
        }
        assert_eq!(full.join("late", "big", ""), Err(RoomError::RoomFull));
        assert_eq!(
            full.join("m0", "elsewhere", ""),
            Err(RoomError::AlreadyJoined)
        );
        // A member's consumers: capped.
        full.create_transport("m0", "big", "r", Direction::Recv)
            .unwrap();
        let mut n = 0;
        for i in 1..MAX_MEMBERS {
            let who = format!("m{i}");
            full.create_transport(&who, "big", "s", Direction::Send)
                .unwrap();
            for k in 0..MAX_PRODUCERS {
                let p = format!("{who}-p{k}");
                full.produce(&who, "big", "s", &p, MediaKind::Video)
                    .unwrap();
                full.consume("m0", "big", &p, &format!("c{n}")).unwrap();
                n += 1;
            }
        }
        assert_eq!(n, MAX_CONSUMERS);
        // Every producer of a full room consumed; a second consumer of one is over the cap.
        assert_eq!(
            full.consume("m0", "big", "m1-p0", "extra"),
            Err(RoomError::TooManyConsumers)
        );
    }

    #[test]
    fn a_leaver_takes_its_objects_and_the_others_consumers_of_them() {
        let mut r = two_in_a_room();
        r.consume("b", "room", "a-cam", "b-c1").unwrap();
        r.consume("b", "room", "a-mic", "b-c2").unwrap();
        r.set_producer_paused("a", "room", "a-mic", true).unwrap();
        let list = r.participants("room");
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].name, "Ann");
        assert!(list[0].is_audio_muted && !list[0].is_video_paused);
        assert_eq!(list[1].name, "b", "no name: shown by id");
        assert!(list[1].is_audio_muted && list[1].is_video_paused);
        let d = r.leave("a").unwrap();
        assert_eq!(d.room, "room");
        assert_eq!(d.transports, vec!["a-send".to_owned()]);
        assert_eq!(d.producers, vec!["a-mic".to_owned(), "a-cam".to_owned()]);
        let mut theirs = d.others_consumers.clone();
        theirs.sort();
        assert_eq!(
            theirs,
            vec![("b".into(), "b-c1".into()), ("b".into(), "b-c2".into())]
        );
        assert_eq!(d.remaining, vec!["b".to_owned()]);
        assert_eq!(
            r.resume("b", "room", "b-c1"),
            Err(RoomError::ConsumerNotFound)
        );
        assert_eq!(
            r.producer("room", "a-cam"),
            Err(RoomError::ProducerNotFound)
        );
        assert_eq!(r.leave("a"), None);
        r.leave("b").unwrap();
        assert_eq!((r.room_count(), r.member_count()), (0, 0));
    }
}
