//! App benchmark (numbers printed, nothing asserted): the desktop app in a 1:1 call with a
//! `liveloop-cli` peer, both sending synthetic video, driven through tauri-driver under a
//! display. It prints the frames per second each tile drew and the CPU and memory of the app
//! (its own process and the webview's processes) over the measured window.
//!
//!   cargo build --release -p liveloop -p liveloop-cli -p liveloop-e2e --bins
//!   xvfb-run -a -s "-screen 0 1920x1080x24" dbus-run-session -- \
//!     target/release/liveloop-bench-app [--video synthetic:1280x720@30] [--seconds 15]
#![allow(clippy::print_stdout, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use liveloop_e2e::{ChildGuard, wait_for, workspace_bin};
use liveloop_engine::meter::Meter;
use liveloop_server::embedded;
use serde_json::{Value, json};

/// The app process (named `liveloop`) and every process below it (the webview's).
fn app_processes() -> Vec<(u32, String)> {
    let mut meter = Meter::new();
    let all = meter.processes();
    let mut found = Vec::new();
    for (root, _, _) in all.iter().filter(|(_, _, name)| name == "liveloop") {
        for pid in meter.tree(*root, false) {
            if let Some((_, _, name)) = all.iter().find(|(p, _, _)| *p == pid)
                && !found.iter().any(|(p, _)| *p == pid)
            {
                found.push((pid, name.clone()));
            }
        }
    }
    found
}

/// CPU time used so far (seconds) per process.
fn cpu_seconds(procs: &[(u32, String)]) -> HashMap<u32, f64> {
    let mut meter = Meter::new();
    procs
        .iter()
        .filter_map(|(pid, _)| Some((*pid, meter.sample(*pid)?.cpu_time.as_secs_f64())))
        .collect()
}

fn rss_mb(pid: u32) -> f64 {
    Meter::new()
        .sample(pid)
        .map_or(0.0, |s| s.rss_bytes as f64 / (1024.0 * 1024.0))
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut video = "synthetic:1280x720@30".to_owned();
    let mut seconds = 15u64;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--video" => video = value,
            "--seconds" => seconds = value.parse()?,
            other => bail!("unknown flag {other}"),
        }
    }
    let server = embedded::start_loopback().await?;
    let ws = format!("ws://{}/ws", server.rooms);
    let settings = json!({
        "displayName": "Bench",
        "matchmakingUrl": server.matchmaking_url(),
        "roomsUrl": server.rooms_url(),
    });
    let mut peer = Command::new(workspace_bin("liveloop-cli")?);
    peer.args(["join", "--server", &ws, "--room", "bench", "--id", "peer"])
        .args(["--video", &video, "--seconds", &(seconds + 60).to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _peer = ChildGuard::spawn("liveloop-cli", &mut peer)?;
    let env = [
        ("LIVELOOP_VIDEO", video.as_str()),
        ("LIVELOOP_AUDIO", "synthetic"),
    ];
    let (_driver, s, _dir) = liveloop_e2e::app::open_app("bench-app", &env, Some(&settings))?;
    s.execute(
        "document.getElementById('join-link').value = arguments[0]",
        &[json!(format!("liveloop://join/bench?server={ws}"))],
    )?;
    s.click(&s.find("#join-room")?)?;
    let tiles = || -> Result<Value> { s.execute("return window.__liveloop.tiles()", &[]) };
    wait_for(
        "the peer's video on screen",
        Duration::from_secs(30),
        || tiles().ok()?["peer"]["frames"].as_u64().filter(|f| *f > 30),
    )?;
    // Warm up, then measure.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let procs = app_processes();
    let (before, t0, cpu0) = (tiles()?, Instant::now(), cpu_seconds(&procs));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (after, elapsed, cpu1) = (tiles()?, t0.elapsed().as_secs_f64(), cpu_seconds(&procs));
    println!("1:1 call, both sides sending {video}, measured over {elapsed:.1} s");
    println!("| figure | value |");
    println!("| --- | --- |");
    for id in ["peer", "self"] {
        let drawn = after[id]["frames"].as_f64().unwrap_or(0.0)
            - before[id]["frames"].as_f64().unwrap_or(0.0);
        let received = after[id]["received"].as_f64().unwrap_or(0.0)
            - before[id]["received"].as_f64().unwrap_or(0.0);
        let label = if id == "self" {
            "self view"
        } else {
            "remote tile"
        };
        println!(
            "| {label}: frames drawn per second (received from the native side) | {:.1} ({:.1}) |",
            drawn / elapsed,
            received / elapsed
        );
    }
    let mut total_cpu = 0.0;
    let mut total_rss = 0.0;
    for (pid, name) in &procs {
        let cpu = (cpu1.get(pid).unwrap_or(&0.0) - cpu0.get(pid).unwrap_or(&0.0)) / elapsed * 100.0;
        let rss = rss_mb(*pid);
        total_cpu += cpu;
        total_rss += rss;
        println!("| {name} ({pid}): CPU % of one core, RSS MB | {cpu:.1}, {rss:.1} |");
    }
    println!("| app in total: CPU % of one core, RSS MB | {total_cpu:.1}, {total_rss:.1} |");
    server.shutdown();
    Ok(())
}
