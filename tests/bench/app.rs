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
use liveloop_server::embedded;
use serde_json::{Value, json};

/// Ticks per second of /proc's CPU times.
const HZ: f64 = 100.0;

fn proc_stat(pid: u32) -> Option<(String, u32, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, rest) = stat.rsplit_once(") ")?;
    let name = head.split_once(" (")?.1.to_owned();
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ppid = f.get(1)?.parse().ok()?;
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some((name, ppid, ticks))
}

fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The app process (named `liveloop`) and every process below it (the webview's).
fn app_processes() -> Vec<(u32, String)> {
    let mut all: Vec<(u32, String, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>()
            && let Some((name, ppid, _)) = proc_stat(pid)
        {
            all.push((pid, name, ppid));
        }
    }
    let mut found: Vec<(u32, String)> = all
        .iter()
        .filter(|(_, name, _)| name == "liveloop")
        .map(|(pid, name, _)| (*pid, name.clone()))
        .collect();
    let mut i = 0;
    while let Some((parent, _)) = found.get(i).cloned() {
        for (pid, name, ppid) in &all {
            if *ppid == parent && !found.iter().any(|(p, _)| p == pid) {
                found.push((*pid, name.clone()));
            }
        }
        i += 1;
    }
    found
}

fn cpu_ticks(procs: &[(u32, String)]) -> HashMap<u32, f64> {
    procs
        .iter()
        .filter_map(|(pid, _)| Some((*pid, proc_stat(*pid)?.2)))
        .collect()
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
    let (before, t0, cpu0) = (tiles()?, Instant::now(), cpu_ticks(&procs));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let (after, elapsed, cpu1) = (tiles()?, t0.elapsed().as_secs_f64(), cpu_ticks(&procs));
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
        let cpu =
            (cpu1.get(pid).unwrap_or(&0.0) - cpu0.get(pid).unwrap_or(&0.0)) / HZ / elapsed * 100.0;
        let rss = rss_mb(*pid);
        total_cpu += cpu;
        total_rss += rss;
        println!("| {name} ({pid}): CPU % of one core, RSS MB | {cpu:.1}, {rss:.1} |");
    }
    println!("| app in total: CPU % of one core, RSS MB | {total_cpu:.1}, {total_rss:.1} |");
    server.shutdown();
    Ok(())
}
