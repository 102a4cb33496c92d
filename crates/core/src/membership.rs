//! Who is in a call, and when someone is gone: the grace policy of a mesh call, sans-IO with
//! time as an input (`now` is the time since any fixed epoch the caller keeps).
//!
//! Media is peer to peer, so the room server's list and the connection to a participant can
//! disagree, and both recover on their own:
//! - a connected participant the server no longer lists keeps its call for [`ABSENT_GRACE`]
//!   (the server may be restarting, or its link to the server dropped);
//! - absent *and* with its connection interrupted (ICE disconnected) for [`LOST_GRACE`], it
//!   is gone (a client killed or gone; an outage that took both away for a few seconds is
//!   not, since both come back);
//! - absent and its connection failed or closed: gone at once;
//! - a failed connection is restarted (ICE restart, by the impolite side) up to
//!   [`MAX_RESTARTS`] times, then given up on.
//!
//! A participant that leaves on purpose says so (`bye` on the data channel, or the server's
//! hang-up) and is removed by the caller at once.

use std::collections::BTreeMap;
use std::time::Duration;

/// How long a connected participant the room server no longer lists keeps its call.
pub const ABSENT_GRACE: Duration = Duration::from_secs(30);
/// How long an unlisted participant keeps its call once its connection is interrupted too.
pub const LOST_GRACE: Duration = Duration::from_secs(4);
/// ICE restarts tried before a participant is given up on.
pub const MAX_RESTARTS: u32 = 3;

/// One participant's presence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Presence {
    connected: bool,
    restarts: u32,
    /// Since when the room server no longer lists it.
    absent_since: Option<Duration>,
    /// Since when its connection has been interrupted.
    disconnected_since: Option<Duration>,
}

/// What the server's "left" means for a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unlisted {
    /// It was connected: the call goes on, under the grace.
    Grace,
    /// Never connected (or unknown): it is gone.
    Gone,
}

/// What to do after a participant's connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Restart ICE (the impolite side offers; the polite side waits for that offer).
    Restart,
    /// Unlisted and failed, or out of restarts: it is gone.
    Gone,
}

/// The participants of one call.
#[derive(Debug, Clone, Default)]
pub struct Membership {
    members: BTreeMap<String, Presence>,
}

impl Membership {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// A participant joins (its connection is being set up). Returns false when it was
    /// already there: then it is listed again and nothing else changes.
    pub fn join(&mut self, id: &str) -> bool {
        if let Some(p) = self.members.get_mut(id) {
            p.absent_since = None;
            return false;
        }
        self.members.insert(id.to_owned(), Presence::default());
        true
    }

    /// A participant is removed (it left on purpose, or the caller let it go).
    pub fn remove(&mut self, id: &str) {
        self.members.remove(id);
    }

    /// The room server no longer lists the participant.
    pub fn unlisted(&mut self, id: &str, now: Duration) -> Unlisted {
        match self.members.get_mut(id) {
            Some(p) if p.connected => {
                p.absent_since.get_or_insert(now);
                Unlisted::Grace
            }
            _ => Unlisted::Gone,
        }
    }

    /// Its connection is up: restarts and interruptions are forgotten.
    pub fn connected(&mut self, id: &str) {
        if let Some(p) = self.members.get_mut(id) {
            p.connected = true;
            p.restarts = 0;
            p.disconnected_since = None;
        }
    }

    /// Its connection is interrupted (it often comes back by itself).
    pub fn disconnected(&mut self, id: &str, now: Duration) {
        if let Some(p) = self.members.get_mut(id) {
            p.disconnected_since.get_or_insert(now);
        }
    }

    /// Its connection closed: gone if it is also unlisted.
    #[must_use]
    pub fn closed_is_gone(&self, id: &str) -> bool {
        self.members
            .get(id)
            .is_some_and(|p| p.absent_since.is_some())
    }

    /// Its connection failed.
    pub fn failed(&mut self, id: &str) -> Failed {
        let Some(p) = self.members.get_mut(id) else {
            return Failed::Gone;
        };
        if p.absent_since.is_some() {
            return Failed::Gone;
        }
        p.connected = false;
        p.restarts += 1;
        if p.restarts > MAX_RESTARTS {
            Failed::Gone
        } else {
            Failed::Restart
        }
    }

    /// Whether anyone's connection is up.
    #[must_use]
    pub fn any_connected(&self) -> bool {
        self.members.values().any(|p| p.connected)
    }

    /// Whether this participant's connection is up.
    #[must_use]
    pub fn is_connected(&self, id: &str) -> bool {
        self.members.get(id).is_some_and(|p| p.connected)
    }

    /// The participants whose grace ran out by `now`; they are removed.
    pub fn expired(&mut self, now: Duration) -> Vec<String> {
        let gone: Vec<String> = self
            .members
            .iter()
            .filter(|(_, p)| {
                p.absent_since
                    .is_some_and(|t| now.saturating_sub(t) > ABSENT_GRACE)
                    || (p.absent_since.is_some()
                        && p.disconnected_since
                            .is_some_and(|t| now.saturating_sub(t) > LOST_GRACE))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &gone {
            self.members.remove(id);
        }
        gone
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn a_connected_participant_the_server_forgets_keeps_its_call_for_the_grace() {
        let mut m = Membership::new();
        assert!(m.join("ann"));
        m.connected("ann");
        assert_eq!(m.unlisted("ann", 10 * S), Unlisted::Grace);
        assert!(m.expired(39 * S).is_empty());
        // Listed again (the server came back): the grace is over, the call never stopped.
        assert!(!m.join("ann"));
        assert!(m.expired(100 * S).is_empty());
        // Unlisted again, and this time the server never comes back.
        assert_eq!(m.unlisted("ann", 200 * S), Unlisted::Grace);
        assert_eq!(m.expired(231 * S), vec!["ann".to_owned()]);
        assert!(!m.any_connected());
    }

    #[test]
    fn unlisted_and_interrupted_is_gone_sooner_and_a_never_connected_one_at_once() {
        let mut m = Membership::new();
        m.join("bob");
        m.connected("bob");
        m.disconnected("bob", 5 * S);
        // Interrupted while listed: no grace runs (ICE may come back).
        assert!(m.expired(60 * S).is_empty());
        assert_eq!(m.unlisted("bob", 61 * S), Unlisted::Grace);
        // Interrupted since 5 s: more than LOST_GRACE ago.
        assert_eq!(m.expired(62 * S), vec!["bob".to_owned()]);
        m.join("cy");
        assert_eq!(m.unlisted("cy", Duration::ZERO), Unlisted::Gone);
        assert_eq!(m.unlisted("nobody", Duration::ZERO), Unlisted::Gone);
    }

    #[test]
    fn a_connection_that_recovers_clears_the_interruption() {
        let mut m = Membership::new();
        m.join("dee");
        m.connected("dee");
        m.disconnected("dee", Duration::ZERO);
        m.connected("dee");
        m.unlisted("dee", 10 * S);
        assert!(m.expired(20 * S).is_empty(), "only the absent grace runs");
    }

    #[test]
    fn failures_are_restarted_three_times_then_given_up() {
        let mut m = Membership::new();
        m.join("eve");
        for _ in 0..MAX_RESTARTS {
            assert_eq!(m.failed("eve"), Failed::Restart);
        }
        assert_eq!(m.failed("eve"), Failed::Gone);
        // A success in between starts the count again.
        m.join("fay");
        m.failed("fay");
        m.failed("fay");
        m.connected("fay");
        for _ in 0..MAX_RESTARTS {
            assert_eq!(m.failed("fay"), Failed::Restart);
        }
        // Unlisted and failed, or closed: gone at once.
        m.join("gus");
        m.connected("gus");
        m.unlisted("gus", Duration::ZERO);
        assert!(m.closed_is_gone("gus"));
        assert_eq!(m.failed("gus"), Failed::Gone);
        assert!(!m.closed_is_gone("fay"));
    }
}
