//! `liveloop-server`: the matchmaking service, the room service, or both.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, ValueEnum};
use liveloop_core::matchmaker::Config as MatcherConfig;
use liveloop_proto::rtc_config::RtcConfig;
use liveloop_server::ListenAddr;
use liveloop_server::matchmaking::{self, MatchmakingConfig};
use liveloop_server::rooms::{AllowedOrigins, RoomsConfig, RoomsService};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Service {
    /// Random 1:1 matchmaking over socket.io (seed 000).
    Matchmaking,
    /// Rooms by link over a WebSocket at /ws (seed 001).
    Rooms,
}

/// LiveLoop's signaling server: random-chat matchmaking (socket.io) and rooms by link
/// (WebSocket). Runs both by default. Logs go to stderr; set RUST_LOG (e.g. debug) for more.
#[derive(Debug, Parser)]
#[command(name = "liveloop-server", version)]
struct Args {
    /// Run only these services (repeat or comma-separate). Default: both.
    #[arg(long, value_enum, value_delimiter = ',')]
    only: Vec<Service>,

    /// Where the matchmaking service listens: host:port, :port (all interfaces), [::]:port or
    /// unix:/path.
    #[arg(long, env = "MATCHMAKING_ADDR", default_value = "127.0.0.1:3000")]
    matchmaking_addr: ListenAddr,

    /// Where the room service listens (same forms as above).
    #[arg(long, env = "ADDR", default_value = ":8080")]
    rooms_addr: ListenAddr,

    /// Browser origins allowed to connect to either service: comma-separated host names
    /// (localhost,example.com) or full origins (https://app.example.com); * allows all.
    /// Room WebSockets from other origins get 403, matchmaking sockets a connect_error; native
    /// clients send no Origin and are allowed.
    #[arg(long, env = "WS_ALLOWED_ORIGINS", default_value = "*")]
    allowed_origins: String,

    /// ICE servers handed to room clients, as an RTCConfiguration JSON object
    /// ({"iceServers":[{"urls":...,"username":...,"credential":...}]}). Checked at start:
    /// an invalid value stops the server with a message. Default: a public STUN server.
    #[arg(long, env = "RTC_CONFIG_JSON")]
    rtc_config_json: Option<String>,

    /// The secret shared with the TURN server (coturn: use-auth-secret, static-auth-secret):
    /// each client then gets time-limited credentials for the TURN servers in
    /// RTC_CONFIG_JSON (which list them without username or credential), never a static
    /// password. Served by /api/rtc-config on both services and in the browser client's page.
    #[arg(long, env = "TURN_SECRET", hide_env_values = true)]
    turn_secret: Option<String>,

    /// How long handed-out TURN credentials stay valid, in seconds.
    #[arg(long, env = "TURN_TTL_SECS", default_value_t = liveloop_server::turn::DEFAULT_TTL.as_secs())]
    turn_ttl_secs: u64,

    /// Users the matchmaking queue holds at most; more get a queue_full error.
    #[arg(long, default_value_t = 10_000)]
    queue_capacity: usize,

    /// Open connections per client address (an IPv4 address or an IPv6 /64) and service; more
    /// are refused (room WebSockets with 429). 0: no cap. Behind a reverse proxy on TCP every
    /// client has the proxy's address: cap at the proxy instead, or listen on unix:/path
    /// (not counted).
    #[arg(long, env = "MAX_CONNECTIONS_PER_IP", default_value_t = liveloop_server::limits::DEFAULT_MAX_CONNECTIONS_PER_IP)]
    max_connections_per_ip: usize,

    /// New matchmaking (engine.io) sessions per client address and second, in bursts of five
    /// seconds' worth; more get 429. 0: no limit.
    #[arg(long, env = "HANDSHAKES_PER_IP_PER_SEC", default_value_t = liveloop_server::matchmaking::DEFAULT_HANDSHAKES_PER_IP_PER_SEC)]
    handshakes_per_ip_per_sec: u32,

    /// List the waiting users' names in the matchmaking service's /api/status (default:
    /// counts only).
    #[arg(long)]
    status_names: bool,

    /// Serve the room service over HTTPS with this certificate chain (PEM), for deployments
    /// without a reverse proxy: browsers give a page the camera only on a secure origin.
    /// Needs --tls-key.
    #[arg(
        long,
        env = "TLS_CERT",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, env = "TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,

    /// Serve the room service over HTTPS with a certificate made at start for this computer's
    /// addresses and localhost (browsers warn about it once per start; for trials and local
    /// networks).
    #[arg(long)]
    tls_self_signed: bool,

    /// Seconds between WebSocket pings to room clients.
    #[arg(long, default_value_t = 15)]
    ping_interval_secs: u64,

    /// Seconds of silence after which a room client is dropped.
    #[arg(long, default_value_t = 20)]
    pong_wait_secs: u64,
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let turn = args.turn_secret.as_ref().map(|s| {
        liveloop_server::turn::TurnSecret::new(
            s.clone(),
            Duration::from_secs(args.turn_ttl_secs.max(60)),
        )
    });
    let rtc_config = match (&args.rtc_config_json, &turn) {
        (Some(json), None) => RtcConfig::parse(json).context("RTC_CONFIG_JSON is invalid")?,
        (Some(json), Some(_)) => {
            RtcConfig::parse_for_secret(json).context("RTC_CONFIG_JSON is invalid")?
        }
        (None, None) => RtcConfig::default(),
        (None, Some(_)) => bail!("--turn-secret needs RTC_CONFIG_JSON naming the TURN servers"),
    };
    if turn.is_some() && !rtc_config.has_turn() {
        bail!("--turn-secret is set, but RTC_CONFIG_JSON names no turn: or turns: server");
    }
    let allowed_origins = AllowedOrigins::parse(&args.allowed_origins);
    let services = if args.only.is_empty() {
        vec![Service::Matchmaking, Service::Rooms]
    } else {
        args.only.clone()
    };

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    if services.contains(&Service::Matchmaking) {
        let config = MatchmakingConfig {
            matcher: MatcherConfig {
                queue_capacity: args.queue_capacity,
                ..MatcherConfig::default()
            },
            allowed_origins: allowed_origins.clone(),
            max_connections_per_ip: args.max_connections_per_ip,
            status_names: args.status_names,
            handshakes_per_ip_per_sec: args.handshakes_per_ip_per_sec,
            rtc_config: rtc_config.clone(),
            turn: turn.clone(),
        };
        let router = matchmaking::router(config);
        let listener = bind(&args.matchmaking_addr)
            .await
            .context("matchmaking service")?;
        tracing::info!(addr = %args.matchmaking_addr, "matchmaking service listening");
        tasks.spawn(serve(listener, router, shutdown_rx.clone()));
    }
    if services.contains(&Service::Rooms) {
        let config = RoomsConfig {
            allowed_origins,
            rtc_config,
            turn,
            max_connections_per_ip: args.max_connections_per_ip,
            ping_interval: Duration::from_secs(args.ping_interval_secs.max(1)),
            pong_wait: Duration::from_secs(args.pong_wait_secs.max(1)),
            ..RoomsConfig::default()
        };
        let router = RoomsService::new(config, shutdown_rx.clone()).router();
        let mut listener = bind(&args.rooms_addr).await.context("room service")?;
        let tls = tls_config(&args)?;
        if let Some(config) = tls {
            let Listener::Tcp(tcp) = listener else {
                bail!("HTTPS needs a TCP address for the room service, not a unix socket");
            };
            listener = Listener::Tls(
                liveloop_server::tls::TlsListener::new(tcp, config)
                    .context("room service over HTTPS")?,
            );
            tracing::info!(addr = %args.rooms_addr, "room service listening (HTTPS)");
        } else {
            tracing::info!(addr = %args.rooms_addr, "room service listening");
        }
        tasks.spawn(serve(listener, router, shutdown_rx.clone()));
    }

    tokio::select! {
        () = terminate() => {
            tracing::info!("shutting down");
            let _ = shutdown_tx.send(true);
        }
        Some(result) = tasks.join_next() => {
            result??;
            bail!("a service stopped unexpectedly");
        }
    }
    // Give open connections a moment to close cleanly.
    let drain = async {
        while let Some(result) = tasks.join_next().await {
            result??;
        }
        Ok::<_, anyhow::Error>(())
    };
    match tokio::time::timeout(Duration::from_secs(5), drain).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!("connections still open after 5 s; exiting anyway");
            Ok(())
        }
    }
}

enum Listener {
    Tcp(tokio::net::TcpListener),
    Tls(liveloop_server::tls::TlsListener),
    Unix(tokio::net::UnixListener),
}

/// The room service's TLS configuration, from the flags (`None`: plain HTTP).
fn tls_config(args: &Args) -> Result<Option<std::sync::Arc<rustls::ServerConfig>>> {
    use liveloop_server::tls;
    let id = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => tls::load(cert, key)?,
        _ if args.tls_self_signed => {
            let names = liveloop_server::network::certificate_names();
            tracing::info!(?names, "a self-signed certificate for HTTPS");
            tls::self_signed(&names)?
        }
        _ => return Ok(None),
    };
    Ok(Some(
        tls::server_config(&id).context("--tls-cert / --tls-key")?,
    ))
}

async fn bind(addr: &ListenAddr) -> Result<Listener> {
    Ok(match addr {
        ListenAddr::Tcp(a) => Listener::Tcp(
            tokio::net::TcpListener::bind(a)
                .await
                .with_context(|| format!("cannot listen on {a}"))?,
        ),
        ListenAddr::Unix(path) => {
            if path.exists() {
                std::fs::remove_file(path)
                    .with_context(|| format!("cannot replace {}", path.display()))?;
            }
            Listener::Unix(
                tokio::net::UnixListener::bind(path)
                    .with_context(|| format!("cannot listen on {}", path.display()))?,
            )
        }
    })
}

async fn serve(
    listener: Listener,
    router: axum::Router,
    shutdown: watch::Receiver<bool>,
) -> Result<()> {
    let signal = liveloop_server::shutdown_signal(shutdown);
    match listener {
        // The peer's address is what connections are counted by (`limits`).
        Listener::Tcp(l) => {
            use axum::serve::ListenerExt as _;
            axum::serve(
                l.tap_io(liveloop_server::no_delay),
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(signal)
            .await?
        }
        Listener::Tls(l) => {
            use axum::serve::ListenerExt as _;
            // `tap_io` gives the connections their peer address, as for plain TCP.
            axum::serve(
                l.tap_io(liveloop_server::no_delay_tls),
                router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
            )
            .with_graceful_shutdown(signal)
            .await?
        }
        Listener::Unix(l) => {
            axum::serve(l, router)
                .with_graceful_shutdown(signal)
                .await?
        }
    }
    Ok(())
}

async fn terminate() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let sigterm = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let sigterm = std::future::pending::<()>();
    tokio::select! { () = ctrl_c => {}, () = sigterm => {} }
}
