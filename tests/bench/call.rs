//! Call benchmark (numbers printed, nothing asserted): pairs of `liveloop-cli` processes meet
//! in rooms of the real room server over loopback, one pair at a time, and each reports its
//! setup times, the capture → decoded latency of the stamped frames it received, and its CPU
//! and RSS. The table gives the median and worst over the calls.
//!
//! Build in release, then run:
//!   cargo build --release -p liveloop-cli -p liveloop-e2e --bins
//!   ~/.cache/liveloop/target/release/liveloop-bench-call [--calls 5] [--seconds 10]
//!       [--video synthetic:1280x720@30] [--bitrate 1500] [--record-into DIR]
//!
//! With `--record-into`, client `a` of each call also records it (`--record-call`), and the
//! table gives each client's CPU and RSS apart: the difference is what recording costs.
#![allow(clippy::print_stdout, clippy::indexing_slicing)]

use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use liveloop_e2e::workspace_bin;
use liveloop_server::embedded;
use serde_json::Value;

struct Args {
    calls: usize,
    seconds: u64,
    video: String,
    bitrate: u32,
    record_into: Option<String>,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        calls: 5,
        seconds: 10,
        video: "synthetic:1280x720@30".into(),
        bitrate: 1500,
        record_into: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--calls" => a.calls = value.parse()?,
            "--seconds" => a.seconds = value.parse()?,
            "--video" => a.video = value,
            "--bitrate" => a.bitrate = value.parse()?,
            "--record-into" => a.record_into = Some(value),
            other => bail!("unknown flag {other}"),
        }
    }
    Ok(a)
}

/// The summary a client printed (its last line but for a recording's report).
fn summary(out: &std::process::Output) -> Result<Value> {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\""))
        .context("the client printed no summary")?;
    let v: Value = serde_json::from_str(last)?;
    if v["event"] != "summary" {
        bail!(
            "the client did not finish with a summary: {last}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(v)
}

fn stats(values: &mut [f64]) -> (f64, f64) {
    values.sort_by(f64::total_cmp);
    let median = values.get(values.len() / 2).copied().unwrap_or(f64::NAN);
    let worst = values.last().copied().unwrap_or(f64::NAN);
    (median, worst)
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = parse_args()?;
    let cli = workspace_bin("liveloop-cli")?;
    let server = embedded::start_loopback().await?;
    let url = format!("ws://{}/ws", server.rooms);
    println!(
        "{} calls of {} s, 2 clients each, video {} at {} kbit/s, over loopback",
        args.calls, args.seconds, args.video, args.bitrate
    );
    let mut figures: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
    for call in 0..args.calls {
        let room = format!("bench-{call}");
        let spawn = |id: &str| {
            let record = match (&args.record_into, id) {
                (Some(dir), "a") => vec![
                    "--record-call".to_owned(),
                    format!("{dir}/bench-call-{call}.mkv"),
                ],
                _ => Vec::new(),
            };
            Command::new(&cli)
                .args(["join", "--server", &url, "--room", &room, "--id", id])
                .args(&record)
                .args(["--seconds", &args.seconds.to_string()])
                .args([
                    "--video",
                    &args.video,
                    "--bitrate",
                    &args.bitrate.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
        };
        let (a, b) = (spawn("a")?, spawn("b")?);
        let outs =
            tokio::task::spawn_blocking(move || (a.wait_with_output(), b.wait_with_output()))
                .await?;
        for (client, out) in [("a", outs.0?), ("b", outs.1?)] {
            let s = summary(&out)?;
            let mut put = |name: &'static str, v: &Value| {
                if let Some(x) = v.as_f64() {
                    figures.entry(name).or_default().push(x);
                }
            };
            put("join → connected (ms)", &s["join_to_connected_ms"]);
            put(
                "join → first decoded frame (ms)",
                &s["join_to_first_frame_ms"],
            );
            put("capture → decoded p50 (ms)", &s["latency_ms"]["p50"]);
            put("capture → decoded p95 (ms)", &s["latency_ms"]["p95"]);
            put("capture → decoded p99 (ms)", &s["latency_ms"]["p99"]);
            put(
                "capture → shown, lip-synced, p50 (ms)",
                &s["shown_latency_ms"]["p50"],
            );
            put(
                "capture → shown, lip-synced, p95 (ms)",
                &s["shown_latency_ms"]["p95"],
            );
            put("CPU per client (% of one core)", &s["cpu_percent"]);
            put("RSS per client (MB)", &s["rss_mb"]);
            if args.record_into.is_some() {
                let (cpu, rss): (&'static str, &'static str) = if client == "a" {
                    (
                        "CPU, client a, recording (% of one core)",
                        "RSS, client a, recording (MB)",
                    )
                } else {
                    (
                        "CPU, client b, not recording (% of one core)",
                        "RSS, client b (MB)",
                    )
                };
                put(cpu, &s["cpu_percent"]);
                put(rss, &s["rss_mb"]);
            }
            put("peak RSS per client (MB)", &s["peak_rss_mb"]);
            let frames: f64 = s["frames"]
                .as_object()
                .map(|m| m.values().filter_map(Value::as_f64).sum())
                .unwrap_or_default();
            figures
                .entry("frames decoded per second")
                .or_default()
                .push(frames / args.seconds as f64);
        }
        eprintln!("call {} of {} done", call + 1, args.calls);
    }
    println!("| figure | median | worst |");
    println!("| --- | --- | --- |");
    for (name, values) in &mut figures {
        let (median, worst) = stats(values);
        // For frame rate the worst is the lowest.
        let worst = if name.starts_with("frames") {
            values.first().copied().unwrap_or(f64::NAN)
        } else {
            worst
        };
        println!("| {name} | {median:.1} | {worst:.1} |");
    }
    server.shutdown();
    Ok(())
}
