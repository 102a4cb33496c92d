//! `liveloop-cli`: a headless LiveLoop client for tests, demos and bots. Joins a room, sends
//! synthetic or file media, and prints every engine event as one JSON line on stdout.
// This binary's output is its interface.
#![allow(clippy::print_stdout)]

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use liveloop_engine::{Command, EngineConfig, EngineEvent, join_room};
use liveloop_media::file::{WavSource, Y4mSource};
use liveloop_media::synthetic::{SyntheticCamera, SyntheticMic, Voice};
use liveloop_media::{AudioSource, VideoSource};
use serde_json::json;

#[derive(Debug, Parser)]
#[command(
    name = "liveloop-cli",
    version,
    about = "Headless LiveLoop client: events are printed as JSON lines"
)]
struct Args {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Join a room: by link (`liveloop://join/<room>?server=ws://host:8080/ws`) or by --server
    /// and --room.
    Join {
        /// A room link.
        link: Option<String>,
        /// Room server WebSocket URL, e.g. ws://127.0.0.1:8080/ws.
        #[arg(long)]
        server: Option<String>,
        #[arg(long)]
        room: Option<String>,
        /// Your id in the room (default: a random guest id).
        #[arg(long)]
        id: Option<String>,
        /// Display name.
        #[arg(long, default_value = "LiveLoop CLI")]
        name: String,
        /// Video: `synthetic[:WxH@FPS]` or a .y4m file.
        #[arg(long, default_value = "synthetic:640x360@30")]
        video: String,
        /// Audio: `synthetic`, `tone`, `silence` or a .wav file.
        #[arg(long, default_value = "synthetic")]
        audio: String,
        /// Leave after this many seconds (default: run until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
        /// Send this chat message once a peer is connected.
        #[arg(long)]
        chat: Option<String>,
        /// Start muted.
        #[arg(long)]
        muted: bool,
    },
}

/// `liveloop://join/<room>?server=<ws url>` → (server, room).
fn parse_link(link: &str) -> Result<(Option<String>, String)> {
    let rest = link
        .strip_prefix("liveloop://join/")
        .context("a room link starts with liveloop://join/")?;
    let (room, query) = rest.split_once('?').unwrap_or((rest, ""));
    if room.is_empty() {
        bail!("the link names no room");
    }
    let server = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("server="))
        .map(str::to_owned);
    Ok((server, room.to_owned()))
}

fn video_source(spec: &str) -> Result<Box<dyn VideoSource>> {
    if let Some(rest) = spec.strip_prefix("synthetic") {
        let rest = rest.trim_start_matches(':');
        let (size, fps) = rest.split_once('@').unwrap_or((rest, "30"));
        let (w, h) = size.split_once('x').unwrap_or(("640", "360"));
        let parse = |s: &str, what: &str| {
            s.parse::<u32>()
                .with_context(|| format!("bad {what} in --video {spec}"))
        };
        let (w, h) = if size.is_empty() {
            (640, 360)
        } else {
            (parse(w, "width")?, parse(h, "height")?)
        };
        return Ok(Box::new(SyntheticCamera::new(
            w,
            h,
            fps.parse().context("bad frame rate")?,
        )));
    }
    Ok(Box::new(Y4mSource::open(&PathBuf::from(spec))?))
}

fn audio_source(spec: &str) -> Result<Box<dyn AudioSource>> {
    Ok(match spec {
        "synthetic" => Box::new(SyntheticMic::new(Voice::Speech, true)),
        "tone" => Box::new(SyntheticMic::new(Voice::Tone(440.0), true)),
        "silence" => Box::new(SyntheticMic::new(Voice::Silence, false)),
        path => Box::new(WavSource::open(&PathBuf::from(path))?),
    })
}

fn event_json(ev: &EngineEvent) -> serde_json::Value {
    match ev {
        EngineEvent::State(s) => {
            json!({"event": "state", "state": format!("{s:?}").to_lowercase()})
        }
        EngineEvent::Joined { id } => json!({"event": "joined", "id": id}),
        EngineEvent::PeerConnected { id } => json!({"event": "peer_connected", "id": id}),
        EngineEvent::PeerLeft { id } => json!({"event": "peer_left", "id": id}),
        EngineEvent::PeerState {
            id,
            name,
            muted,
            camera_off,
        } => {
            json!({"event": "peer_state", "id": id, "name": name, "muted": muted, "cameraOff": camera_off})
        }
        EngineEvent::Chat { from, text } => json!({"event": "chat", "from": from, "text": text}),
        EngineEvent::FrameDecoded {
            from,
            width,
            height,
            stamp,
        } => {
            json!({"event": "frame", "from": from, "width": width, "height": height, "stamp": stamp})
        }
        EngineEvent::AudioDecoded { from, pcm } => {
            let rms = (pcm.iter().map(|s| s * s).sum::<f32>() / pcm.len().max(1) as f32).sqrt();
            json!({"event": "audio", "from": from, "samples": pcm.len(), "rms": rms})
        }
        EngineEvent::Error(message) => json!({"event": "error", "message": message}),
        other => json!({"event": "other", "debug": format!("{other:?}")}),
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Cmd::Join {
        link,
        server,
        room,
        id,
        name,
        video,
        audio,
        seconds,
        chat,
        muted,
    } = Args::parse().command;
    let (link_server, link_room) = match &link {
        Some(l) => {
            let (s, r) = parse_link(l)?;
            (s, Some(r))
        }
        None => (None, None),
    };
    let server = server
        .or(link_server)
        .context("no room server: pass --server or a link with ?server=")?;
    let room = room
        .or(link_room)
        .context("no room: pass --room or a link")?;
    let id = id.unwrap_or_else(|| format!("cli-{}", std::process::id()));
    let config = EngineConfig {
        name,
        bitrate_bps: 800_000,
        udp_addrs: Vec::new(),
    };
    let (handle, mut events) = join_room(
        config,
        server,
        room,
        id,
        video_source(&video)?,
        audio_source(&audio)?,
    )
    .context("cannot join")?;
    if muted {
        handle.send(Command::SetMuted(true)).await?;
    }
    let deadline = seconds.map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let mut chat = chat;
    loop {
        let next = async {
            match deadline {
                Some(d) => tokio::time::timeout_at(d, events.recv())
                    .await
                    .ok()
                    .flatten(),
                None => events.recv().await,
            }
        };
        tokio::select! {
            ev = next => {
                let Some(ev) = ev else { break };
                if matches!(ev, EngineEvent::PeerConnected { .. })
                    && let Some(text) = chat.take()
                {
                    // The data channel opens right after the connection.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    handle.send(Command::SendChat(text)).await?;
                }
                println!("{}", event_json(&ev));
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    handle.send(Command::Leave).await.ok();
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let (server, room) =
            parse_link("liveloop://join/team-42?server=ws://h:8080/ws").unwrap_or_default();
        assert_eq!(
            (server.as_deref(), room.as_str()),
            (Some("ws://h:8080/ws"), "team-42")
        );
        assert!(parse_link("https://x/r/a").is_err());
        assert!(parse_link("liveloop://join/").is_err());
        assert!(video_source("synthetic:320x180@15").is_ok());
        assert!(video_source("synthetic:axb").is_err());
        assert!(video_source("/no/such.y4m").is_err());
        assert!(audio_source("/no/such.wav").is_err());
    }
}
