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
    /// The room service over HTTPS too (for browser guests: a camera needs a secure origin).
    pub rooms_https: Option<SocketAddr>,
    /// How many wait in the matchmaking service's queue.
    pub waiting: matchmaking::Waiting,
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
        self.on_network("http", self.rooms.port())
    }

    /// The room service's HTTPS base URLs for other computers, best first (empty without
    /// HTTPS, or on this computer only).
    #[must_use]
    pub fn rooms_https_urls_on_network(&self) -> Vec<String> {
        self.rooms_https
            .map_or_else(Vec::new, |addr| self.on_network("https", addr.port()))
    }

    /// As [`Embedded::rooms_urls_on_network`], for the matchmaking service.
    #[must_use]
    pub fn matchmaking_urls_on_network(&self) -> Vec<String> {
        self.on_network("http", self.matchmaking.port())
    }

    fn on_network(&self, scheme: &str, port: u16) -> Vec<String> {
        match self.reach {
            Reach::ThisComputer => Vec::new(),
            Reach::Network => network::lan_addresses()
                .into_iter()
                .map(|ip| network::base_url(scheme, ip, port))
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
    serve(mm_listener, rooms_listener, None, reach, matchmaking, rooms)
}

/// What the built-in servers serve, and where.
#[derive(Debug, Clone)]
pub struct BuiltIn {
    pub reach: Reach,
    /// The kept ports of the matchmaking and room services (0: any).
    pub ports: (u16, u16),
    /// The room service over HTTPS as well, at this kept port (0: any), with this
    /// configuration (`tls`).
    pub https: Option<(u16, std::sync::Arc<rustls::ServerConfig>)>,
}

/// The app's built-in servers: both services for `reach` at the ports kept from an earlier
/// launch (`0`: any; taken: the next free one, see `network::bind_kept`), browsers admitted
/// only from the pages they serve themselves ([`AllowedOrigins::SameHost`]). The ports they
/// got are in [`Embedded::matchmaking`], [`Embedded::rooms`] and [`Embedded::rooms_https`],
/// for the caller to keep.
///
/// # Errors
/// When no port can be bound.
pub fn start_built_in(options: BuiltIn) -> std::io::Result<Embedded> {
    let BuiltIn {
        reach,
        ports,
        https,
    } = options;
    let mm_listener = network::bind_kept(reach, ports.0)?;
    let rooms_listener = network::bind_kept(reach, ports.1)?;
    let https = match https {
        Some((port, config)) => Some(crate::tls::TlsListener::new(
            network::bind_kept(reach, port)?,
            config,
        )?),
        None => None,
    };
    let https_port = match &https {
        Some(l) => Some(axum::serve::Listener::local_addr(l)?.port()),
        None => None,
    };
    serve(
        mm_listener,
        rooms_listener,
        https,
        reach,
        MatchmakingConfig {
            allowed_origins: AllowedOrigins::SameHost,
            ..MatchmakingConfig::default()
        },
        RoomsConfig {
            allowed_origins: AllowedOrigins::SameHost,
            https_port,
            ..RoomsConfig::default()
        },
    )
}

fn serve(
    mm_listener: TcpListener,
    rooms_listener: TcpListener,
    rooms_https: Option<crate::tls::TlsListener>,
    reach: Reach,
    matchmaking: MatchmakingConfig,
    rooms: RoomsConfig,
) -> std::io::Result<Embedded> {
    let (shutdown, watch_rx) = watch::channel(false);
    let mm_addr = mm_listener.local_addr()?;
    let rooms_addr = rooms_listener.local_addr()?;
    let rooms_service = RoomsService::new(rooms, watch_rx.clone());
    let (mm_router, waiting) = matchmaking::router_with_waiting(matchmaking);
    let rooms_router = rooms_service.router();
    let rooms_https_addr = match rooms_https {
        Some(listener) => {
            use axum::serve::{Listener as _, ListenerExt as _};
            let addr = listener.local_addr()?;
            let (router, rx) = (rooms_router.clone(), watch_rx.clone());
            tokio::spawn(async move {
                // `tap_io` gives the connections their peer address (the per-address caps).
                let served = axum::serve(
                    listener.tap_io(crate::no_delay_tls),
                    router.into_make_service_with_connect_info::<SocketAddr>(),
                )
                .with_graceful_shutdown(crate::shutdown_signal(rx))
                .await;
                if let Err(e) = served {
                    tracing::error!(error = %e, "embedded HTTPS room service stopped");
                }
            });
            Some(addr)
        }
        None => None,
    };
    let rx = watch_rx.clone();
    tokio::spawn(async move {
        use axum::serve::ListenerExt as _;
        let served = axum::serve(
            mm_listener.tap_io(crate::no_delay),
            mm_router.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(crate::shutdown_signal(rx))
        .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "embedded matchmaking service stopped");
        }
    });
    tokio::spawn(async move {
        use axum::serve::ListenerExt as _;
        let served = axum::serve(
            rooms_listener.tap_io(crate::no_delay),
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
        rooms_https: rooms_https_addr,
        waiting,
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
    start_built_in(BuiltIn {
        reach: Reach::ThisComputer,
        ports: (0, 0),
        https: None,
    })
}
