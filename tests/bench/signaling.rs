//! Load benchmark of the signaling services (numbers printed, nothing asserted):
//! 1. idle room clients held by one `liveloop-server` and its memory per client;
//! 2. relay latency p50/p99 at a stated message rate, with those idle clients still connected;
//! 3. matchmaking pairs per second.
//!
//! Build everything in release, then run:
//!   cargo build --release -p liveloop-server -p liveloop-e2e --bins
//!   ~/.cache/liveloop/target/release/liveloop-bench-signaling [--clients 50000]
#![allow(clippy::print_stdout, clippy::indexing_slicing)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures_util::{SinkExt, StreamExt};
use liveloop_e2e::{ChildGuard, free_port, workspace_bin};
use serde_json::json;
use tokio::net::TcpSocket;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message;

struct Args {
    clients: usize,
    room_size: usize,
    relay_pairs: usize,
    relay_rate: u32,
    relay_secs: u64,
    match_clients: usize,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        clients: 50_000,
        room_size: 50,
        relay_pairs: 100,
        relay_rate: 20,
        relay_secs: 5,
        match_clients: 2_000,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value: usize = it.next().context("flag without value")?.parse()?;
        match flag.as_str() {
            "--clients" => a.clients = value,
            "--room-size" => a.room_size = value.max(2),
            "--relay-pairs" => a.relay_pairs = value,
            "--relay-rate" => a.relay_rate = u32::try_from(value)?,
            "--relay-secs" => a.relay_secs = value as u64,
            "--match-clients" => a.match_clients = value & !1,
            _ => bail!("unknown flag {flag}"),
        }
    }
    Ok(a)
}

fn rss_kib(pid: u32) -> Result<u64> {
    let sample = liveloop_engine::meter::Meter::new()
        .sample(pid)
        .context("the server process is gone")?;
    Ok(sample.rss_bytes / 1024)
}

/// The server under load. Every simulated client comes from this one address, so the caps
/// per address (connections, handshakes a second) are off: they are tested in the suite.
fn start_server(args: &[&str]) -> Result<ChildGuard> {
    let bin = workspace_bin("liveloop-server")?;
    ChildGuard::spawn(
        "liveloop-server",
        Command::new(bin)
            .args(args)
            .args([
                "--max-connections-per-ip",
                "0",
                "--handshakes-per-ip-per-sec",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null()),
    )
}

async fn wait_listening(addr: SocketAddr) -> Result<()> {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("server did not start")
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects from source address `src` (so 50,000 sockets are not limited by one source IP's
/// ephemeral ports) and joins `room` as `id`.
async fn join(server: SocketAddr, src: IpAddr, room: &str, id: &str) -> Result<Ws> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(src, 0))?;
    let tcp = socket.connect(server).await?;
    let (mut ws, _) = tokio_tungstenite::client_async(format!("ws://{server}/ws"), tcp).await?;
    ws.send(Message::Text(
        json!({"type":"join","room":room,"from":id})
            .to_string()
            .into(),
    ))
    .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"joined""#) => {
                return Ok(ws);
            }
            Some(Ok(Message::Text(t))) if t.as_str().contains(r#""type":"error""#) => {
                bail!("join refused: {t}")
            }
            Some(Ok(_)) => {}
            _ => bail!("closed before joined"),
        }
    }
}

/// Keeps reading (which also answers the server's pings) until the socket closes.
fn drain(mut ws: Ws) {
    tokio::spawn(async move { while let Some(Ok(_)) = ws.next().await {} });
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn idle_and_relay(args: &Args) -> Result<()> {
    let port = free_port()?;
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let server = start_server(&["--only", "rooms", "--rooms-addr", &addr.to_string()])?;
    wait_listening(addr).await?;
    let pid = server.child.id();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = rss_kib(pid)?;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(256));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::with_capacity(args.clients);
    for i in 0..args.clients {
        let permit = gate.clone().acquire_owned().await?;
        let failed = failed.clone();
        let room = format!("room-{}", i / args.room_size);
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i % 8) as u8));
        tasks.push(tokio::spawn(async move {
            match join(addr, src, &room, &format!("c{i}")).await {
                Ok(ws) => drain(ws),
                Err(e) => {
                    if failed.fetch_add(1, Ordering::Relaxed) < 3 {
                        eprintln!("client {i}: {e:#}");
                    }
                }
            }
            drop(permit);
        }));
    }
    for t in tasks {
        t.await?;
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let held = args.clients - failed.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss1 = rss_kib(pid)?;
    let per_client = (rss1.saturating_sub(rss0)) as f64 * 1024.0 / held.max(1) as f64;
    println!(
        "| idle room clients held | {held} of {} ({} per room) |",
        args.clients, args.room_size
    );
    println!(
        "| joins per second (256 in flight) | {:.0} |",
        held as f64 / connect_secs
    );
    println!(
        "| server RSS before / with clients | {:.1} MiB / {:.1} MiB |",
        rss0 as f64 / 1024.0,
        rss1 as f64 / 1024.0
    );
    println!(
        "| server memory per idle client | {:.1} KiB |",
        per_client / 1024.0
    );

    // Relay latency: pairs in their own rooms, each sender at `relay_rate` msg/s (under the
    // 30/s per-socket limit), while every idle client stays connected.
    let epoch = Instant::now();
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for p in 0..args.relay_pairs {
        let room = format!("lat-{p}");
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1));
        let rx = join(addr, src, &room, "rx").await?;
        let tx = join(addr, src, &room, "tx").await?;
        receivers.push(rx);
        senders.push(tx);
    }
    let total = args.relay_pairs * args.relay_rate as usize * args.relay_secs as usize;
    let mut rx_tasks = Vec::new();
    for mut rx in receivers {
        rx_tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while let Ok(Some(Ok(msg))) = tokio::time::timeout_at(deadline, rx.next()).await {
                if let Message::Text(t) = msg {
                    let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap_or_default();
                    if v["type"] == "offer" {
                        let sent = v["sdp"]["sentNs"].as_u64().unwrap_or_default();
                        let now = epoch.elapsed().as_nanos() as u64;
                        lat.push((now.saturating_sub(sent)) as f64 / 1e6);
                        if v["sdp"]["last"] == true {
                            break;
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut tx_tasks = Vec::new();
    for (p, mut tx) in senders.into_iter().enumerate() {
        let (rate, secs) = (args.relay_rate, args.relay_secs);
        tx_tasks.push(tokio::spawn(async move {
            // Stagger the pairs across the first interval.
            let period = Duration::from_secs(1) / rate;
            tokio::time::sleep(period * (p as u32 % 50) / 50).await;
            let mut tick = tokio::time::interval(period);
            let n = rate as u64 * secs;
            for k in 0..n {
                tick.tick().await;
                let sdp = json!({"type":"offer","sdp":"v=0","sentNs": epoch.elapsed().as_nanos() as u64, "last": k + 1 == n});
                if tx.send(Message::Text(json!({"type":"offer","to":"rx","sdp":sdp}).to_string().into())).await.is_err() {
                    break;
                }
            }
            drain(tx);
        }));
    }
    for t in tx_tasks {
        t.await?;
    }
    let mut all = Vec::with_capacity(total);
    for t in rx_tasks {
        all.extend(t.await?);
    }
    all.sort_by(f64::total_cmp);
    println!(
        "| relay latency at {} msg/s ({} pairs x {}/s, {} idle clients connected) | p50 {:.2} ms, p99 {:.2} ms, {} of {} delivered |",
        args.relay_pairs * args.relay_rate as usize,
        args.relay_pairs,
        args.relay_rate,
        held,
        percentile(&all, 0.5),
        percentile(&all, 0.99),
        all.len(),
        total
    );
    drop(server);
    Ok(())
}

async fn matchmaking(args: &Args) -> Result<()> {
    let port = free_port()?;
    let addr = SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port);
    let _server = start_server(&[
        "--only",
        "matchmaking",
        "--matchmaking-addr",
        &addr.to_string(),
    ])?;
    wait_listening(addr).await?;
    // The official socket.io-client in Node drives the load (tests/js/match_bench.mjs).
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("js/match_bench.mjs");
    let out = tokio::process::Command::new("node")
        .arg(script)
        .arg(format!("http://{addr}"))
        .arg(args.match_clients.to_string())
        .output()
        .await
        .context("node")?;
    let line = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("node said: {line} {}", String::from_utf8_lossy(&out.stderr)))?;
    println!(
        "| matchmaking: {} clients request at once (socket.io-client) | {} matched in {:.2} s = {:.0} pairs/s |",
        report["clients"],
        report["matched"],
        report["seconds"].as_f64().unwrap_or_default(),
        report["pairsPerSecond"].as_f64().unwrap_or_default()
    );
    Ok(())
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let mut args = args;
    // Each idle client is one socket here and one in the server: raise the open-file limit, or
    // (where the hard limit cannot be raised, as in unprivileged sandboxes) fit under it.
    let want = (args.clients as u64 + 10_000).max(65_536);
    if rlimit::setrlimit(rlimit::Resource::NOFILE, want, want).is_err() {
        let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
        let _ = rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard);
        let fit = usize::try_from(hard.saturating_sub(1_000)).unwrap_or(usize::MAX);
        if fit < args.clients {
            println!(
                "(the open-file hard limit is {hard} and cannot be raised here: {fit} clients instead of {})\n",
                args.clients
            );
            args.clients = fit;
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    println!("| figure | value |\n| --- | --- |");
    rt.block_on(idle_and_relay(&args))?;
    rt.block_on(matchmaking(&args))?;
    Ok(())
}
