//! Both services inside another program (the desktop app, `liveloop-cli host`, tests): on
//! loopback, or on the local network at ports kept across launches (`network`).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::matchmaking::{self, MatchmakingConfig};
use crate::network::{self, Reach};
use crate::rooms::{AllowedOrigins, RoomsConfig, RoomsService};

/// Running embedded services; dropping this (or calling [`Embedded::shutdown`]) stops them.
#[derive(Debug)]
pub struct Embedded {
    pub matchmaking: SocketAddr,
    pub rooms: SocketAddr,
    pub rooms_service: RoomsService,
    /// Who can reach them.
    pub reach: Reach,
    shutdown: watch::Sender<bool>,
}

impl Embedded {
    /// Base URL of the matchmaking service for this computer, e.g. `http://127.0.0.1:40123`
    /// (loopback when they listen on every interface).
    #[must_use]
    pub fn matchmaking_url(&self) -> String {
        format!("http://{}", here(self.matchmaking))
    }

    /// Base URL of the room service for this computer; its WebSocket is at `/ws`.
    #[must_use]
    pub fn rooms_url(&self) -> String {
        format!("http://{}", here(self.rooms))
    }

    /// The room service's base URLs for other computers on the network, best first
    /// (`network::lan_addresses`); empty when only this computer can reach it.
    #[must_use]
    pub fn rooms_urls_on_network(&self) -> Vec<String> {
        self.on_network(self.rooms.port())
    }

    /// As [`Embedded::rooms_urls_on_network`], for the matchmaking service.
    #[must_use]
    pub fn matchmaking_urls_on_network(&self) -> Vec<String> {
        self.on_network(self.matchmaking.port())
    }

    fn on_network(&self, port: u16) -> Vec<String> {
        match self.reach {
            Reach::ThisComputer => Vec::new(),
            Reach::Network => network::lan_addresses()
                .into_iter()
                .map(|ip| network::base_url("http", ip, port))
                .collect(),
        }
    }

    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// A listening address as this computer reaches it: an unspecified address (every
/// interface) is reached on loopback.
fn here(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() => {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        }
        _ => addr,
    }
}

/// Starts both services on `ip` with ports picked by the OS (`port 0`), or the given ports.
///
/// # Errors
/// When a port cannot be bound.
pub async fn start(
    ip: std::net::IpAddr,
    ports: (u16, u16),
    matchmaking: MatchmakingConfig,
    rooms: RoomsConfig,
) -> std::io::Result<Embedded> {
    let mm_listener = TcpListener::bind((ip, ports.0)).await?;
    let rooms_listener = TcpListener::bind((ip, ports.1)).await?;
    let reach = if ip.is_loopback() {
        Reach::ThisComputer
    } else {
        Reach::Network
    };
    serve(mm_listener, rooms_listener, reach, matchmaking, rooms)
}

/// The app's built-in servers: both services for `reach` at the ports kept from an earlier
/// launch (`0`: any; taken: the next free one, see `network::bind_kept`), browsers admitted
/// only from the pages they serve themselves ([`AllowedOrigins::SameHost`]). The ports they
/// got are in [`Embedded::matchmaking`] and [`Embedded::rooms`], for the caller to keep.
///
/// # Errors
/// When no port can be bound.
pub fn start_built_in(reach: Reach, ports: (u16, u16)) -> std::io::Result<Embedded> {
    let mm_listener = network::bind_kept(reach, ports.0)?;
    let rooms_listener = network::bind_kept(reach, ports.1)?;
    serve(
        mm_listener,
        rooms_listener,
        reach,
        MatchmakingConfig {
            allowed_origins: AllowedOrigins::SameHost,
            ..MatchmakingConfig::default()
        },
        RoomsConfig {
            allowed_origins: AllowedOrigins::SameHost,
            ..RoomsConfig::default()
        },
    )
}

fn serve(
    mm_listener: TcpListener,
    rooms_listener: TcpListener,
    reach: Reach,
    matchmaking: MatchmakingConfig,
    rooms: RoomsConfig,
) -> std::io::Result<Embedded> {
    let (shutdown, watch_rx) = watch::channel(false);
    let mm_addr = mm_listener.local_addr()?;
    let rooms_addr = rooms_listener.local_addr()?;
    let rooms_service = RoomsService::new(rooms, watch_rx.clone());
    let mm_router = matchmaking::router(matchmaking);
    let rooms_router = rooms_service.router();
    let rx = watch_rx.clone();
    tokio::spawn(async move {
        let served = axum::serve(
            mm_listener,
            mm_router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(crate::shutdown_signal(rx))
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "embedded matchmaking service stopped");
        }
    });
    tokio::spawn(async move {
        let served = axum::serve(
            rooms_listener,
            rooms_router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(crate::shutdown_signal(watch_rx))
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "embedded room service stopped");
        }
    });
    tracing::info!(%mm_addr, %rooms_addr, "embedded signaling services started");
    Ok(Embedded {
        matchmaking: mm_addr,
        rooms: rooms_addr,
        rooms_service,
        reach,
        shutdown,
    })
}

/// Both services on 127.0.0.1 with OS-chosen ports and default settings, except that
/// browsers may connect only from the pages these servers serve themselves
/// ([`AllowedOrigins::SameHost`]): a web page elsewhere cannot join their rooms or queue.
///
/// # Errors
/// When loopback ports cannot be bound.
pub async fn start_loopback() -> std::io::Result<Embedded> {
    start_built_in(Reach::ThisComputer, (0, 0))
}
