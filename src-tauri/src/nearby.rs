//! *Nearby* for the app: a thread owns `liveloop_server::nearby::Discovery`, announces this
//! app's built-in servers with the rooms its user chose to list, and keeps the list of the
//! other apps found; the commands read the list and change what is listed. Only with the
//! built-in servers open to the network (a private room is never announced: only listed
//! ones are).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liveloop_engine::Matchmaker;
use liveloop_server::nearby::{Announcement, Discovery, NearbyList};

/// What Home shows under *Nearby*.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearbyView {
    pub rooms: Vec<NearbyRoom>,
    /// How many people wait in random chat at the other apps on the network.
    pub waiting: u64,
}

/// A room listed by an app nearby, as Home shows it.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NearbyRoom {
    pub room: String,
    /// Who hosts it (the host's display name).
    pub host: String,
    /// The link to join it with.
    pub link: String,
}

/// The running discovery (none without built-in servers on the network, or when mDNS cannot
/// start: then Home shows no Nearby section and says nothing is lost).
#[derive(Debug, Default)]
pub struct Nearby {
    inner: Option<Arc<Shared>>,
}

#[derive(Debug)]
struct Shared {
    list: Mutex<NearbyList>,
    announcement: Mutex<Announcement>,
    /// Set when the announcement changed; the thread re-announces.
    changed: std::sync::atomic::AtomicBool,
}

impl Nearby {
    /// Starts announcing `own` and browsing, on a thread of its own; `waiting` tells how many
    /// wait in this app's random chat (announced as it changes, every 2 s at most).
    #[must_use]
    pub fn start(own: Announcement, waiting: liveloop_server::matchmaking::Waiting) -> Self {
        let mut discovery = match Discovery::start() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "no Nearby: mDNS did not start");
                return Self::default();
            }
        };
        if let Err(e) = discovery.announce(&own) {
            tracing::warn!(error = %e, "this app is not announced nearby");
        }
        let shared = Arc::new(Shared {
            list: Mutex::new(NearbyList::default()),
            announcement: Mutex::new(own),
            changed: std::sync::atomic::AtomicBool::new(false),
        });
        let weak = Arc::downgrade(&shared);
        let spawned = std::thread::Builder::new()
            .name("nearby".into())
            .spawn(move || {
                let mut counted = std::time::Instant::now();
                // Ends with the app (the last strong reference goes with the state).
                while let Some(shared) = weak.upgrade() {
                    if counted.elapsed() >= Duration::from_secs(2) {
                        counted = std::time::Instant::now();
                        let now = u32::try_from(waiting.count()).unwrap_or(u32::MAX);
                        let mut a = crate::lock(&shared.announcement);
                        if a.waiting != now {
                            a.waiting = now;
                            shared
                                .changed
                                .store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    if shared
                        .changed
                        .swap(false, std::sync::atomic::Ordering::Relaxed)
                    {
                        let a = crate::lock(&shared.announcement).clone();
                        if let Err(e) = discovery.announce(&a) {
                            tracing::warn!(error = %e, "nearby announcement not updated");
                        }
                    }
                    drop(shared);
                    let event = discovery.next(Duration::from_millis(250));
                    let Some(shared) = weak.upgrade() else {
                        return;
                    };
                    if let Some(event) = event {
                        crate::lock(&shared.list).apply(event);
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no Nearby: its thread did not start");
            return Self::default();
        }
        Self {
            inner: Some(shared),
        }
    }

    /// The rooms listed nearby (by host name, then room) and how many wait in random chat.
    #[must_use]
    pub fn view(&self) -> NearbyView {
        let Some(shared) = &self.inner else {
            return NearbyView::default();
        };
        let list = crate::lock(&shared.list);
        let waiting = list
            .iter()
            .map(|app| u64::from(app.announcement.waiting))
            .sum();
        let mut rooms: Vec<NearbyRoom> = list
            .iter()
            .flat_map(|app| {
                app.room_links().into_iter().map(|(room, link)| NearbyRoom {
                    room,
                    host: app.announcement.name.clone(),
                    link,
                })
            })
            .collect();
        rooms.sort_by(|a, b| (&a.host, &a.room).cmp(&(&b.host, &b.room)));
        NearbyView { rooms, waiting }
    }

    /// Shows `room` to people on the network, or stops showing it.
    pub fn set_listed(&self, room: &str, listed: bool) {
        let Some(shared) = &self.inner else {
            return;
        };
        let mut a = crate::lock(&shared.announcement);
        let mut rooms: BTreeSet<String> = a.rooms.iter().cloned().collect();
        let changed = if listed {
            rooms.insert(room.to_owned())
        } else {
            rooms.remove(room)
        };
        if changed {
            a.rooms = rooms.into_iter().collect();
            shared
                .changed
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// Where random chat finds its matchmaker: with Nearby, the one the apps on this network
    /// share (every app picks the one announced longest, so that two people who press random
    /// chat on one network meet), chosen again whenever the connection to it is lost, so that
    /// everyone moves to the next when that app quits; this app's own is `own_url`. Without
    /// Nearby, `own_url` alone.
    #[must_use]
    pub fn matchmaker(&self, own_url: String) -> Matchmaker {
        let Some(shared) = self.inner.clone() else {
            return Matchmaker::At(own_url);
        };
        Matchmaker::Chosen(Arc::new(move || {
            let own = crate::lock(&shared.announcement).clone();
            crate::lock(&shared.list).matchmaker_urls(Some((&own, &own_url)))
        }))
    }

    /// Whether Nearby runs (the built-in servers are on the network and mDNS started).
    #[must_use]
    pub fn running(&self) -> bool {
        self.inner.is_some()
    }
}
