//! LiveLoop apps on one network find each other by DNS-SD over mDNS
//! (`_liveloop._tcp.local.`): an app whose built-in servers are open to the network announces
//! them, with the rooms its users chose to list and how many people wait in its random chat;
//! the others browse and show them as *Nearby*.
//!
//! What a TXT record says comes from anyone on the network: `proto::nearby::Announcement::
//! from_txt` takes only what it can check, and the list of apps found is capped at
//! [`MAX_NEARBY`] (past it new ones are ignored until one goes). A private room is never announced: only rooms
//! put on the list are.
//!
//! [`NearbyList`] is sans-IO (events in, the list out); [`Discovery`] is the thin driver over
//! the `mdns-sd` daemon (a thread of its own).

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::Serialize;

pub use liveloop_proto::nearby::{Announcement, SERVICE_TYPE};

/// Apps kept in the list at most.
pub const MAX_NEARBY: usize = 256;

/// An app found on the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Nearby {
    #[serde(flatten)]
    pub announcement: Announcement,
    /// Its addresses, IPv4 first.
    pub addresses: Vec<IpAddr>,
}

impl Nearby {
    /// The address links use: the first that `proto::link` counts as the local network (plain
    /// `ws://` is taken only from there), else the first.
    fn address(&self) -> Option<IpAddr> {
        self.addresses
            .iter()
            .find(|ip| liveloop_proto::link::is_local_host(&ip.to_string()))
            .or(self.addresses.first())
            .copied()
    }

    /// Its room service's base URL.
    #[must_use]
    pub fn rooms_url(&self) -> Option<String> {
        let ip = self.address()?;
        Some(crate::network::base_url(
            "http",
            ip,
            self.announcement.rooms_port,
        ))
    }

    /// `(room, link)` for each room it lists.
    #[must_use]
    pub fn room_links(&self) -> Vec<(String, String)> {
        let Some(base) = self.rooms_url() else {
            return Vec::new();
        };
        self.announcement
            .rooms
            .iter()
            .map(|room| {
                (
                    room.clone(),
                    liveloop_proto::link::room_link_on(&base, room),
                )
            })
            .collect()
    }

    /// Its matchmaking service's base URL, if it has one.
    #[must_use]
    pub fn matchmaking_url(&self) -> Option<String> {
        let ip = self.address()?;
        (self.announcement.matchmaking_port != 0)
            .then(|| crate::network::base_url("http", ip, self.announcement.matchmaking_port))
    }
}

/// The apps found so far, keyed by their DNS-SD full name (sans-IO).
#[derive(Debug, Default)]
pub struct NearbyList {
    apps: BTreeMap<String, Nearby>,
}

impl NearbyList {
    /// An app was resolved (found, or its record changed). Ignored past [`MAX_NEARBY`].
    pub fn resolved(&mut self, fullname: &str, app: Nearby) {
        if self.apps.len() >= MAX_NEARBY && !self.apps.contains_key(fullname) {
            return;
        }
        self.apps.insert(fullname.to_owned(), app);
    }

    /// Takes what [`Discovery::next`] reported.
    pub fn apply(&mut self, event: Event) {
        match event {
            Event::Found(app) => {
                let name = Discovery::fullname(&app.announcement.instance);
                self.resolved(&name, app);
            }
            Event::Gone(name) => {
                self.removed(&name);
            }
        }
    }

    /// An app went away (its record expired or it said goodbye).
    pub fn removed(&mut self, fullname: &str) -> Option<Nearby> {
        self.apps.remove(fullname)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Nearby> {
        self.apps.values()
    }

    /// The matchmaker every app on the network uses: the one announced longest (the earliest
    /// start; ties by instance name), so that two people who press random chat meet. `own` is
    /// this app's announcement, which takes part like the others.
    #[must_use]
    pub fn shared_matchmaker<'a>(&'a self, own: Option<&'a Announcement>) -> Option<Choice<'a>> {
        self.matchmakers(own).into_iter().next()
    }

    /// Every matchmaker in the order [`NearbyList::shared_matchmaker`] prefers them: when
    /// the first has gone without a goodbye (its record not expired yet), the next is the one
    /// everyone moves to.
    #[must_use]
    pub fn matchmakers<'a>(&'a self, own: Option<&'a Announcement>) -> Vec<Choice<'a>> {
        let theirs = self
            .apps
            .values()
            .filter(|n| n.announcement.matchmaking_port != 0)
            .map(Choice::Theirs);
        let mut all: Vec<Choice<'a>> = theirs.chain(own.into_iter().map(Choice::Own)).collect();
        all.sort_by(|a, b| {
            let key = |c: &Choice<'a>| {
                let a = c.announcement();
                (a.since_ms, a.instance.clone())
            };
            key(a).cmp(&key(b))
        });
        all
    }

    /// The URLs of [`NearbyList::matchmakers`], this app's own as `own_url` (its loopback
    /// address, say).
    #[must_use]
    pub fn matchmaker_urls(&self, own: Option<(&Announcement, &str)>) -> Vec<String> {
        self.matchmakers(own.map(|(a, _)| a))
            .into_iter()
            .filter_map(|c| match c {
                Choice::Own(_) => own.map(|(_, url)| url.to_owned()),
                Choice::Theirs(app) => app.matchmaking_url(),
            })
            .collect()
    }
}

/// Which matchmaker [`NearbyList::shared_matchmaker`] chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Choice<'a> {
    Own(&'a Announcement),
    Theirs(&'a Nearby),
}

impl Choice<'_> {
    fn announcement(&self) -> &Announcement {
        match self {
            Self::Own(a) => a,
            Self::Theirs(n) => &n.announcement,
        }
    }
}

/// Why discovery could not start.
#[derive(Debug, thiserror::Error)]
#[error("mDNS: {0}")]
pub struct DiscoveryError(String);

/// What [`Discovery::next`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Found(Nearby),
    Gone(String),
}

/// The mDNS daemon: announces this app (if asked) and browses for the others.
pub struct Discovery {
    daemon: mdns_sd::ServiceDaemon,
    events: mdns_sd::Receiver<mdns_sd::ServiceEvent>,
    announced: Option<String>,
    own_instance: Option<String>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("announced", &self.announced)
            .finish_non_exhaustive()
    }
}

impl Discovery {
    /// Starts the daemon and browses.
    ///
    /// # Errors
    /// When the daemon cannot start (no network interface that takes multicast).
    pub fn start() -> Result<Self, DiscoveryError> {
        let err = |e: mdns_sd::Error| DiscoveryError(e.to_string());
        let daemon = mdns_sd::ServiceDaemon::new().map_err(err)?;
        let events = daemon.browse(SERVICE_TYPE).map_err(err)?;
        Ok(Self {
            daemon,
            events,
            announced: None,
            own_instance: None,
        })
    }

    /// Announces (or updates) this app, on every address of this computer.
    ///
    /// # Errors
    /// When the record cannot be made or registered.
    pub fn announce(&mut self, a: &Announcement) -> Result<(), DiscoveryError> {
        let err = |e: mdns_sd::Error| DiscoveryError(e.to_string());
        let host = format!("{}.local.", a.instance);
        let txt: Vec<mdns_sd::TxtProperty> = a.to_txt().into_iter().map(Into::into).collect();
        let info =
            mdns_sd::ServiceInfo::new(SERVICE_TYPE, &a.instance, &host, "", a.rooms_port, txt)
                .map_err(err)?
                .enable_addr_auto();
        self.announced = Some(info.get_fullname().to_owned());
        self.own_instance = Some(a.instance.clone());
        self.daemon.register(info).map_err(err)
    }

    /// The next change, waiting at most `timeout` (`None`: nothing new). This app's own
    /// announcement is not reported.
    pub fn next(&self, timeout: std::time::Duration) -> Option<Event> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let event = self.events.recv_timeout(left).ok()?;
            match event {
                mdns_sd::ServiceEvent::ServiceResolved(r) => {
                    if self.announced.as_deref() == Some(r.get_fullname()) {
                        continue;
                    }
                    let instance = r
                        .get_fullname()
                        .strip_suffix(SERVICE_TYPE)
                        .unwrap_or(r.get_fullname())
                        .trim_end_matches('.');
                    let Some(announcement) =
                        Announcement::from_txt(instance, |k| r.get_property_val_str(k))
                    else {
                        continue;
                    };
                    let mut addresses: Vec<IpAddr> = r
                        .get_addresses()
                        .iter()
                        .map(mdns_sd::ScopedIp::to_ip_addr)
                        .filter(|ip| !ip.is_loopback())
                        .collect();
                    addresses.sort_by_key(IpAddr::is_ipv6);
                    addresses.dedup();
                    return Some(Event::Found(Nearby {
                        announcement,
                        addresses,
                    }));
                }
                mdns_sd::ServiceEvent::ServiceRemoved(_, fullname)
                    if self.announced.as_deref() != Some(fullname.as_str()) =>
                {
                    return Some(Event::Gone(fullname));
                }
                _ => {}
            }
        }
    }

    /// The DNS-SD full name of an announcement found (the key of [`NearbyList`]).
    #[must_use]
    pub fn fullname(instance: &str) -> String {
        format!("{instance}.{SERVICE_TYPE}")
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // Goodbye packets, so that the others drop this app at once rather than at expiry.
        if let Some(name) = &self.announced {
            let _ = self.daemon.unregister(name);
        }
        let _ = self.daemon.shutdown();
    }
}

#[cfg(test)]
mod tests {
    // Test code: failing loudly is intended.
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn announcement(instance: &str, since_ms: u64) -> Announcement {
        Announcement {
            instance: instance.into(),
            name: "Ada".into(),
            rooms_port: 40_000,
            https_port: 40_001,
            matchmaking_port: 40_002,
            since_ms,
            rooms: vec!["team".into(), "standup".into()],
            waiting: 2,
        }
    }

    #[test]
    fn every_app_picks_the_same_matchmaker_the_one_announced_longest() {
        let mut list = NearbyList::default();
        for (name, since) in [("b", 300), ("c", 100), ("d", 100)] {
            list.resolved(
                &Discovery::fullname(name),
                Nearby {
                    announcement: announcement(name, since),
                    addresses: vec!["10.0.0.9".parse().unwrap()],
                },
            );
        }
        let own = announcement("a", 200);
        let chosen = |list: &NearbyList| match list.shared_matchmaker(Some(&own)) {
            Some(Choice::Theirs(n)) => n.announcement.instance.clone(),
            Some(Choice::Own(a)) => format!("own {}", a.instance),
            None => "none".into(),
        };
        // c and d started together: the instance name decides.
        assert_eq!(chosen(&list), "c");
        list.removed(&Discovery::fullname("c"));
        assert_eq!(chosen(&list), "d");
        list.removed(&Discovery::fullname("d"));
        assert_eq!(chosen(&list), "own a");
    }

    #[test]
    fn the_matchmakers_come_in_the_order_of_choice_with_our_own_among_them() {
        let mut list = NearbyList::default();
        for (name, since, port) in [("b", 300, 40_002), ("c", 100, 40_002), ("e", 50, 0)] {
            let mut a = announcement(name, since);
            a.matchmaking_port = port;
            list.resolved(
                &Discovery::fullname(name),
                Nearby {
                    announcement: a,
                    addresses: vec!["10.0.0.9".parse().unwrap()],
                },
            );
        }
        let own = announcement("a", 200);
        // e has no matchmaker; ours comes between c and b.
        assert_eq!(
            list.matchmaker_urls(Some((&own, "http://127.0.0.1:7"))),
            [
                "http://10.0.0.9:40002",
                "http://127.0.0.1:7",
                "http://10.0.0.9:40002"
            ]
        );
        assert_eq!(list.matchmaker_urls(None).len(), 2);
    }

    #[test]
    fn links_use_an_address_of_the_local_network_first() {
        let app = Nearby {
            announcement: announcement("x", 1),
            addresses: vec!["192.0.2.2".parse().unwrap(), "fd00::2".parse().unwrap()],
        };
        assert_eq!(app.rooms_url().as_deref(), Some("http://[fd00::2]:40000"));
        let only = Nearby {
            addresses: vec!["192.0.2.2".parse().unwrap()],
            ..app
        };
        assert_eq!(only.rooms_url().as_deref(), Some("http://192.0.2.2:40000"));
    }

    #[test]
    fn the_list_is_capped() {
        let mut list = NearbyList::default();
        for i in 0..MAX_NEARBY + 10 {
            let name = format!("n{i}");
            list.resolved(
                &Discovery::fullname(&name),
                Nearby {
                    announcement: announcement(&name, 1),
                    addresses: Vec::new(),
                },
            );
        }
        assert_eq!(list.iter().count(), MAX_NEARBY);
    }
}
