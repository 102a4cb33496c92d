//! Both services on loopback inside another program (the desktop app, tests).

use std::net::SocketAddr;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::matchmaking::{self, MatchmakingConfig};
use crate::rooms::{AllowedOrigins, RoomsConfig, RoomsService};

/// Running embedded services; dropping this (or calling [`Embedded::shutdown`]) stops them.
#[derive(Debug)]
pub struct Embedded {
    pub matchmaking: SocketAddr,
    pub rooms: SocketAddr,
    pub rooms_service: RoomsService,
    shutdown: watch::Sender<bool>,
}

impl Embedded {
    /// Base URL of the matchmaking service, e.g. `http://127.0.0.1:40123`.
    #[must_use]
    pub fn matchmaking_url(&self) -> String {
        format!("http://{}", self.matchmaking)
    }

    /// Base URL of the room service; its WebSocket is at `/ws`.
    #[must_use]
    pub fn rooms_url(&self) -> String {
        format!("http://{}", self.rooms)
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
    let (shutdown, watch_rx) = watch::channel(false);
    let mm_listener = TcpListener::bind((ip, ports.0)).await?;
    let rooms_listener = TcpListener::bind((ip, ports.1)).await?;
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
    start(
        std::net::Ipv4Addr::LOCALHOST.into(),
        (0, 0),
        MatchmakingConfig {
            allowed_origins: AllowedOrigins::SameHost,
            ..MatchmakingConfig::default()
        },
        RoomsConfig {
            allowed_origins: AllowedOrigins::SameHost,
            ..RoomsConfig::default()
        },
    )
    .await
}
