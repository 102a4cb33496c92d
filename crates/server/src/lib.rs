#![doc = include_str!("../README.md")]

pub mod addr;
pub mod embedded;
pub mod limits;
pub mod matchmaking;
pub mod nearby;
pub mod network;
pub mod rooms;
pub mod tls;
pub mod turn;
pub mod web;

pub use addr::ListenAddr;

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the state machines
/// keep their invariants between calls, so the data is consistent even then.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Turns Nagle's algorithm off on an accepted connection: signaling is small messages, and
/// one written while the previous is unacknowledged otherwise waits for the client's delayed
/// ACK (40 ms on Linux: a room's member list after `joined` did, on every join).
pub fn no_delay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY");
    }
}

/// [`no_delay`] under TLS.
pub fn no_delay_tls(tls: &mut tokio_rustls::server::TlsStream<tokio::net::TcpStream>) {
    no_delay(tls.get_mut().0);
}

/// Resolves when the `shutdown` watch turns true (or its sender is gone).
pub async fn shutdown_signal(mut shutdown: tokio::sync::watch::Receiver<bool>) {
    while !*shutdown.borrow_and_update() {
        if shutdown.changed().await.is_err() {
            return;
        }
    }
}
