//! The network watcher's driver: reads the interfaces and the default route
//! (`signal::net::reading`) when the OS reports a change — a netlink route socket on Linux,
//! subscribed to link, address and route messages — and every [`POLL`] besides (the only
//! trigger elsewhere), and hands the readings to `core::netwatch`, which decides. Changes
//! that call for an ICE restart go to the session loop.
//!
//! A reading costs an interface listing and two unconnected-UDP route lookups (tens of µs);
//! netlink messages only wake the task, their contents are not parsed.

use std::time::{Duration, Instant};

use liveloop_core::netwatch::{NetChange, NetWatch, SETTLE};
use tokio::sync::mpsc;

/// How often the network is read without a notification (the only trigger off Linux).
#[cfg(target_os = "linux")]
const POLL: Duration = Duration::from_secs(2);
#[cfg(not(target_os = "linux"))]
const POLL: Duration = Duration::from_millis(500);

/// Starts the watcher; it ends when the receiver is dropped. Changes past the channel's
/// capacity (4) are dropped: one pending restart covers them.
pub(crate) fn start() -> mpsc::Receiver<NetChange> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(run(tx));
    rx
}

async fn run(tx: mpsc::Sender<NetChange>) {
    let epoch = Instant::now();
    let mut watch = NetWatch::new(liveloop_signal::net::reading());
    let mut os = os::Notifications::new();
    loop {
        let wait = if watch.settling() { SETTLE / 3 } else { POLL };
        tokio::select! {
            () = tx.closed() => return,
            () = os.next() => {}
            () = tokio::time::sleep(wait) => {}
        }
        if let Some(change) = watch.observe(epoch.elapsed(), liveloop_signal::net::reading()) {
            tracing::info!(
                gone = ?change.gone,
                added = ?change.added,
                route_changed = change.route_changed,
                restart = change.restart,
                "network changed"
            );
            if change.restart {
                let _ = tx.try_send(change);
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod os {
    use netlink_sys::{AsyncSocket, AsyncSocketExt, SocketAddr, TokioSocket, protocols};

    // rtnetlink's multicast groups (linux/rtnetlink.h, the legacy bitmask for `bind`).
    const RTMGRP_LINK: u32 = 0x1;
    const RTMGRP_IPV4_IFADDR: u32 = 0x10;
    const RTMGRP_IPV4_ROUTE: u32 = 0x40;
    const RTMGRP_IPV6_IFADDR: u32 = 0x100;
    const RTMGRP_IPV6_ROUTE: u32 = 0x400;

    /// Wakes on every rtnetlink link, address or route message; without the socket (no
    /// netlink, a sandbox), never: the poll carries on alone.
    pub(super) struct Notifications {
        socket: Option<TokioSocket>,
        buf: Vec<u8>,
    }

    impl Notifications {
        pub(super) fn new() -> Self {
            let socket = TokioSocket::new(protocols::NETLINK_ROUTE).and_then(|mut s| {
                s.socket_mut().bind(&SocketAddr::new(
                    0,
                    RTMGRP_LINK
                        | RTMGRP_IPV4_IFADDR
                        | RTMGRP_IPV4_ROUTE
                        | RTMGRP_IPV6_IFADDR
                        | RTMGRP_IPV6_ROUTE,
                ))?;
                Ok(s)
            });
            let socket = match socket {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(error = %e, "no netlink: network changes are polled");
                    None
                }
            };
            Self {
                socket,
                buf: Vec::with_capacity(16 * 1024),
            }
        }

        /// The next message (its contents are dropped: a reading follows).
        pub(super) async fn next(&mut self) {
            let Some(socket) = &self.socket else {
                return std::future::pending().await;
            };
            self.buf.clear();
            if let Err(e) = socket.recv(&mut self.buf).await {
                // ENOBUFS: messages were lost while we were away; a reading follows anyway.
                tracing::debug!(error = %e, "netlink receive");
                // Not a busy loop should the socket keep failing.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod os {
    /// No notifications here: the poll reads the network.
    pub(super) struct Notifications;

    impl Notifications {
        pub(super) fn new() -> Self {
            Self
        }

        pub(super) async fn next(&mut self) {
            std::future::pending::<()>().await;
        }
    }
}
