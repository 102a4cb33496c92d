//! `liveloop-cli`: a headless LiveLoop client for tests, demos and bots. Joins a room or random
//! chat, sends
//! synthetic, file or device media, or echoes what it receives; prints engine events as JSON
//! lines on stdout and a summary (setup times, latency percentiles, CPU, RSS) at the end.
// This binary's output is its interface.
#![allow(clippy::print_stdout)]

mod record;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::collections::HashMap;
use std::time::Instant;

use liveloop_engine::echo::{EchoFeed, echo_media};
use liveloop_engine::meter::OwnUsage;
use liveloop_engine::recording::{Recorder, RecordingOptions};
use liveloop_engine::{AudioTap, FrameTap};
use liveloop_engine::{
    Command, EngineConfig, EngineEvent, EngineHandle, ErrorKind, Matchmaker, Media, State,
    join_room_with, random_chat,
};
use liveloop_media::VideoFormat;
use liveloop_media::{AudioSource, VideoSource};
use serde_json::json;
use std::sync::Arc;

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
    /// Join a room: by link (`liveloop://join/<room>?server=ws://host:8080/ws`, or the shared
    /// `http(s)://host/r/<room>`) or by --server and --room.
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
        #[command(flatten)]
        opts: Opts,
    },
    /// List the screens and windows that can be shared.
    Screens,
    /// List the microphones and speakers as JSON lines (`kind`, `id`, `name`, `default`): the
    /// ids `--audio mic:ID` and `--speaker ID` take.
    Devices,
    /// Run the app's built-in servers on the network, without a window or a call (a spare
    /// computer that hosts rooms and random chat for its network, and tests): prints their
    /// addresses and links as a JSON line, then runs until interrupted or --seconds.
    Host {
        /// Print the link of this room (a room exists once someone joins it).
        #[arg(long)]
        room: Option<String>,
        /// Listen on this computer only (loopback), as the app's setting does.
        #[arg(long)]
        local_only: bool,
        /// The room service's port (0: any free one; taken: the next free one).
        #[arg(long, default_value_t = 0)]
        rooms_port: u16,
        /// The matchmaking service's port (as --rooms-port).
        #[arg(long, default_value_t = 0)]
        matchmaking_port: u16,
        /// The room service's HTTPS port, for browser guests (as --rooms-port), with a
        /// self-signed certificate for this computer's addresses.
        #[arg(long, default_value_t = 0)]
        https_port: u16,
        /// Keep the self-signed certificate in this folder (made anew when the addresses
        /// change), so that guests accept it once; default: a new one at each start.
        #[arg(long)]
        tls_dir: Option<std::path::PathBuf>,
        /// Show this room to people on the network (LiveLoop apps list it under Nearby);
        /// repeat for more. Other rooms are never announced.
        #[arg(long = "list-room")]
        list_rooms: Vec<String>,
        /// Show the --room to people on the network (as `--list-room <that room>`).
        #[arg(long, requires = "room")]
        list_nearby: bool,
        /// Do not announce these servers on the network (mDNS).
        #[arg(long)]
        no_announce: bool,
        /// Stop after this many seconds.
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Print the LiveLoop apps and hosts found on this network (mDNS) as JSON lines: each
    /// app when found or changed (`nearby`), and when it goes (`gone`).
    Nearby {
        /// Stop after this many seconds (default: run until interrupted).
        #[arg(long)]
        seconds: Option<u64>,
    },
    /// Random chat through a matchmaking server (`http://host:3000`), or `nearby`: the one
    /// LiveLoop apps on this network share (the one announced longest, found over mDNS).
    Random {
        /// Matchmaking server URL, or `nearby`.
        server: String,
        /// Press "Next" after this many seconds in a call.
        #[arg(long)]
        next_after: Option<u64>,
        #[command(flatten)]
        opts: Opts,
    },
}

/// What every mode shares.
#[derive(Debug, clap::Args)]
struct Opts {
    /// Display name.
    #[arg(long, default_value = "LiveLoop CLI")]
    name: String,
    /// Video: `synthetic[:WxH@FPS]`, a .y4m file, `stamped:<file.y4m>` (with frame stamps, for
    /// latency), `camera[:ID]` or `none`.
    #[arg(long, default_value = "synthetic:640x360@30")]
    video: String,
    /// Audio: `synthetic`, `synthetic:clock` (its timing marks on whole seconds of the wall
    /// clock), `tone`, `silence`, a .wav file, `mic` (the default microphone), `mic:ID` (as
    /// `liveloop-cli devices` lists it) or `none`.
    #[arg(long, default_value = "synthetic")]
    audio: String,
    /// Play the call on a speaker: the default one, or ID (as `liveloop-cli devices` lists
    /// it). Without this the CLI plays nothing.
    #[arg(long, value_name = "ID", num_args = 0..=1, default_missing_value = "")]
    speaker: Option<String>,
    /// Be an echo peer: send back the video and audio received (replaces --video/--audio).
    #[arg(long)]
    echo: bool,
    /// Leave after this many seconds (default: run until interrupted).
    #[arg(long)]
    seconds: Option<u64>,
    /// Send this chat message once a peer is connected.
    #[arg(long)]
    chat: Option<String>,
    /// Start muted.
    #[arg(long)]
    muted: bool,
    /// No echo cancellation on the microphone (with `--audio mic`; synthetic and file audio
    /// is sent as it is, unless --process-audio).
    #[arg(long)]
    no_aec: bool,
    /// No noise suppression on the microphone (with `--audio mic`).
    #[arg(long)]
    no_ns: bool,
    /// No automatic gain on the microphone (with `--audio mic`).
    #[arg(long)]
    no_agc: bool,
    /// Process synthetic and file audio as a microphone's (echo cancellation, noise
    /// suppression, gain, less what --no-aec/--no-ns/--no-agc switch off): for measuring what
    /// the processing does to a call.
    #[arg(long)]
    process_audio: bool,
    /// Print call statistics every second.
    #[arg(long)]
    stats: bool,
    /// Give up when the server has not let us in after this many seconds.
    #[arg(long, default_value_t = 10)]
    connect_timeout: u64,
    /// Record what each participant sends into this folder (`<id>.y4m` and `<id>.wav`), raw,
    /// for editing and measurement.
    #[arg(long)]
    record: Option<PathBuf>,
    /// For the quality harness: write each participant's played-out audio (`<id>.wav`, with
    /// play-out times in `<id>.times`) and one received frame a second (luma, `<id>.*.y`) into
    /// this folder.
    #[arg(long, conflicts_with = "record")]
    measure: Option<PathBuf>,
    /// Record the call as you see and hear it into this Matroska file: everyone in a gallery
    /// (1280x720, H.264) and everyone's audio mixed, yours included (Opus). Recording runs
    /// from joining until the client leaves; the file stays playable if the process is killed.
    #[arg(long, value_name = "FILE.mkv")]
    record_call: Option<PathBuf>,
    /// Share a screen once connected: `primary`, `monitor:<id>` or `window:<id>` (as
    /// `liveloop-cli screens` lists them); full resolution up to 1920x1080 at 10 fps.
    #[arg(long, value_name = "SCREEN")]
    share_screen: Option<String>,
    /// Stop sharing after this many seconds (default: share until leaving).
    #[arg(long, requires = "share_screen")]
    share_seconds: Option<u64>,
    /// With --record-call: also write each participant's audio as `<file>.<id>.wav`.
    #[arg(long, requires = "record_call")]
    record_separate: bool,
    /// Video bitrate in kbit/s.
    #[arg(long, default_value_t = 1500)]
    bitrate: u32,
    /// ICE servers, as the server's `RTC_CONFIG_JSON`: `{"iceServers":[{"urls":…,
    /// "username":…,"credential":…}]}` (STUN and TURN); with `"iceTransportPolicy":"relay"`,
    /// relay candidates only (the other side never learns this computer's addresses).
    #[arg(long, env = "LIVELOOP_RTC_CONFIG")]
    rtc_config: Option<String>,
    /// Private mode: relay candidates only, through the TURN servers of `--rtc-config` (the
    /// other side never learns this computer's addresses). Refused without a TURN server.
    #[arg(long)]
    private: bool,
}

/// The ICE servers of an `RTC_CONFIG_JSON` document, checked as the server checks it, and
/// whether it asks for relay candidates only (`iceTransportPolicy: "relay"`).
fn ice_servers(json: Option<&str>) -> Result<(Vec<liveloop_rtc::IceServer>, bool)> {
    let Some(json) = json else {
        return Ok((Vec::new(), false));
    };
    let config = liveloop_proto::rtc_config::RtcConfig::parse(json).context("--rtc-config")?;
    Ok(liveloop_engine::ice_servers_of(&config))
}

/// A room link in any form the app takes (`liveloop://join/…`, `http(s)://host/r/<room>`,
/// a bare room name) → (server, room).
fn parse_link(link: &str) -> Result<(Option<String>, String)> {
    // Plain ws:// also from this computer's own networks (a LAN on global IPv6, say).
    let link = liveloop_proto::link::parse_link_on(link, &liveloop_signal::net::on_link)?;
    Ok((link.server, link.room))
}

fn video_source(spec: &str) -> Result<Option<Box<dyn VideoSource>>> {
    liveloop_media::spec::video_source(spec).with_context(|| format!("--video {spec}"))
}

/// The microphone's processing: each part on unless switched off, for a real microphone only
/// (synthetic and file sources are clean signals that the quality harness scores as sent).
fn audio_processing(opts: &Opts) -> liveloop_media::processing::ProcessingSettings {
    let mic = opts.audio == "mic" || opts.audio.starts_with("mic:") || opts.process_audio;
    liveloop_media::processing::ProcessingSettings {
        echo_cancellation: mic && !opts.no_aec,
        noise_suppression: mic && !opts.no_ns,
        auto_gain: mic && !opts.no_agc,
    }
}

fn audio_source(spec: &str) -> Result<Option<Box<dyn AudioSource>>> {
    liveloop_media::spec::audio_source(spec).with_context(|| format!("--audio {spec}"))
}

/// The JSON line for an event; audio is summarised once a second instead (see `AudioMeter`).
fn event_json(ev: &EngineEvent) -> Option<serde_json::Value> {
    ev.to_json()
}

/// One second of a participant's audio, summarised.
#[derive(Debug, Default)]
struct AudioMeter {
    samples: usize,
    energy: f64,
}

/// What a run measured, printed as the last line.
#[derive(Debug, Default)]
struct Summary {
    start: Option<Instant>,
    joined_ms: Option<f64>,
    connected_ms: Option<f64>,
    first_frame_ms: Option<f64>,
    latencies: Vec<u32>,
    shown_latencies: Vec<u32>,
    frames: HashMap<String, u64>,
    audio_seconds: HashMap<String, u64>,
    /// This process's CPU and memory (sampled about twice a second for the peak).
    usage: OwnUsage,
    sampled: Option<Instant>,
}

impl Summary {
    /// Samples memory for the peak, at most twice a second.
    fn sample_usage(&mut self) {
        if self
            .sampled
            .is_none_or(|t| t.elapsed() >= Duration::from_millis(500))
        {
            self.sampled = Some(Instant::now());
            self.usage.sample();
        }
    }
}

impl Summary {
    fn ms_since_start(&self) -> Option<f64> {
        self.start.map(|s| s.elapsed().as_secs_f64() * 1000.0)
    }

    fn json(&mut self) -> serde_json::Value {
        fn percentiles(v: &mut [u32]) -> serde_json::Value {
            v.sort_unstable();
            let pct = |p: f64| -> Option<u32> {
                let n = v.len();
                (n > 0).then(|| {
                    let i = ((n as f64 - 1.0) * p).round() as usize;
                    v.get(i.min(n - 1)).copied().unwrap_or_default()
                })
            };
            json!({"p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99), "n": v.len()})
        }
        let usage = self.usage.report();
        let (cpu, rss, peak) = (
            usage.map(|u| u.cpu_percent),
            usage.map(|u| u.rss_mb),
            usage.map(|u| u.peak_rss_mb),
        );
        json!({
            "event": "summary",
            "join_to_joined_ms": self.joined_ms,
            "join_to_connected_ms": self.connected_ms,
            "join_to_first_frame_ms": self.first_frame_ms,
            "latency_ms": percentiles(&mut self.latencies),
            "shown_latency_ms": percentiles(&mut self.shown_latencies),
            "frames": self.frames,
            "audio_seconds": self.audio_seconds,
            "cpu_percent": cpu,
            "rss_mb": rss,
            "peak_rss_mb": peak,
        })
    }
}

fn print(value: &serde_json::Value) {
    println!("{value}");
}

fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A random instance id (the clock and the process id, hashed: unique enough on one network).
fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_unix_ms());
    h.write_u32(std::process::id());
    h.finish()
}

/// The matchmakers the LiveLoop apps on this network share (`proto::nearby`'s rule: the one
/// announced longest first), from what mDNS finds: browsed for 2 s before the first choice,
/// and on for the rest of the run, so that a reconnect picks from what is there then.
async fn shared_matchmaker() -> Result<Matchmaker> {
    use liveloop_server::nearby::{Discovery, NearbyList};
    let list = Arc::new(std::sync::Mutex::new(NearbyList::default()));
    let discovery = Discovery::start().context("cannot browse the network")?;
    let found = list.clone();
    std::thread::Builder::new()
        .name("nearby".into())
        .spawn(move || {
            loop {
                if let Some(event) = discovery.next(Duration::from_secs(1)) {
                    found
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .apply(event);
                }
            }
        })
        .context("cannot start the discovery thread")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let urls = move || {
        list.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .matchmaker_urls(None)
    };
    let first = urls()
        .into_iter()
        .next()
        .context("no LiveLoop matchmaker on this network")?;
    print(&json!({"event": "matchmaker", "url": first}));
    Ok(Matchmaker::Chosen(Arc::new(urls)))
}

/// `liveloop-cli nearby`: what mDNS finds, as JSON lines.
async fn nearby(seconds: Option<u64>) -> Result<()> {
    use liveloop_server::nearby::{Discovery, Event};
    let discovery = Discovery::start().context("cannot browse the network")?;
    let deadline = seconds.map(|s| Instant::now() + Duration::from_secs(s));
    // The daemon's channel blocks: it is read on a blocking thread, a step at a time.
    let discovery = std::sync::Arc::new(discovery);
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(());
        }
        let d = discovery.clone();
        let event = tokio::task::spawn_blocking(move || d.next(Duration::from_millis(250)))
            .await
            .context("the discovery thread")?;
        match event {
            Some(Event::Found(app)) => {
                let links: Vec<String> = app.room_links().into_iter().map(|(_, l)| l).collect();
                print(&json!({
                    "event": "nearby",
                    "app": app,
                    "rooms_url": app.rooms_url(),
                    "matchmaking_url": app.matchmaking_url(),
                    "room_links": links,
                }));
            }
            Some(Event::Gone(name)) => print(&json!({"event": "gone", "name": name})),
            None => {}
        }
    }
}

/// `liveloop-cli host`: the built-in servers, as the app runs them, and their links.
async fn host(
    room: Option<String>,
    local_only: bool,
    (mm_port, rooms_port, https_port): (u16, u16, u16),
    tls_dir: Option<std::path::PathBuf>,
    announce: Option<Vec<String>>,
    seconds: Option<u64>,
) -> Result<()> {
    use liveloop_server::network::Reach;
    use liveloop_server::tls;
    for room in announce.iter().flatten() {
        if !liveloop_proto::is_valid_id(room) {
            anyhow::bail!("not a room name: {room}");
        }
    }
    if let Some(room) = &room
        && !liveloop_proto::is_valid_id(room)
    {
        anyhow::bail!("not a room name: {room}");
    }
    let reach = if local_only {
        Reach::ThisComputer
    } else {
        Reach::Network
    };
    // HTTPS for browser guests on other computers (this computer's own browser may use
    // http://localhost, a secure origin already).
    let https = if local_only {
        None
    } else {
        let names = liveloop_server::network::certificate_names();
        let id = match &tls_dir {
            Some(dir) => tls::kept(dir, &names),
            None => tls::self_signed(&names),
        }
        .context("no certificate for HTTPS")?;
        Some((https_port, tls::server_config(&id)?))
    };
    let servers = liveloop_server::embedded::start_built_in(liveloop_server::embedded::BuiltIn {
        reach,
        ports: (mm_port, rooms_port),
        https,
    })
    .context("cannot start the built-in servers")?;
    let https_rooms = servers.rooms_https_urls_on_network();
    let mut rooms = servers.rooms_urls_on_network();
    let mut matchmaking = servers.matchmaking_urls_on_network();
    if rooms.is_empty() {
        // This computer only, or no network: the loopback addresses.
        rooms.push(servers.rooms_url());
        matchmaking.push(servers.matchmaking_url());
    }
    // The room's link on each base URL (none without --room).
    let links_on = |bases: &[String]| -> Vec<String> {
        room.iter()
            .flat_map(|room| {
                bases
                    .iter()
                    .map(move |base| liveloop_proto::link::room_link_on(base, room))
            })
            .collect()
    };
    let (links, browser_links) = (links_on(&rooms), links_on(&https_rooms));
    print(&json!({
        "event": "hosting",
        "reach": if local_only { "this computer" } else { "network" },
        "rooms": rooms,
        "rooms_https": https_rooms,
        "matchmaking": matchmaking,
        "room": room,
        "room_link": links.first(),
        "links": links,
        "browser_link": browser_links.first(),
        "browser_links": browser_links,
    }));
    // Announced on the network for as long as the servers run (the goodbye on drop).
    let mut announced = match announce {
        Some(rooms) => {
            let mut d = liveloop_server::nearby::Discovery::start()
                .context("cannot announce on the network")?;
            let a = liveloop_server::nearby::Announcement {
                instance: format!("liveloop-{:016x}", rand_id()),
                name: "liveloop-cli host".into(),
                rooms_port: servers.rooms.port(),
                https_port: servers.rooms_https.map_or(0, |a| a.port()),
                matchmaking_port: servers.matchmaking.port(),
                since_ms: now_unix_ms(),
                rooms,
                waiting: 0,
            };
            d.announce(&a)?;
            Some((d, a))
        }
        None => None,
    };
    let end = async {
        match seconds {
            Some(s) => {
                tokio::time::sleep(Duration::from_secs(s)).await;
                Ok(())
            }
            None => tokio::signal::ctrl_c().await,
        }
    };
    tokio::pin!(end);
    // How many wait in its random chat is announced as it changes (every 2 s at most).
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            ended = &mut end => {
                ended.context("waiting for Ctrl+C")?;
                break;
            }
            _ = tick.tick() => {
                if let Some((d, a)) = &mut announced {
                    let now = u32::try_from(servers.waiting.count()).unwrap_or(u32::MAX);
                    if a.waiting != now {
                        a.waiting = now;
                        d.announce(a)?;
                    }
                }
            }
        }
    }
    // The goodbye goes out as the announcement is dropped.
    drop(announced);
    servers.shutdown();
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let started = Instant::now();
    let (opts, mode) = match Args::parse().command {
        Cmd::Join {
            link,
            server,
            room,
            id,
            opts,
        } => {
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
            (opts, Mode::Room { server, room, id })
        }
        Cmd::Random {
            server,
            next_after,
            opts,
        } => {
            let server = if server == "nearby" {
                shared_matchmaker().await?
            } else {
                Matchmaker::At(server)
            };
            (opts, Mode::Random { server, next_after })
        }
        Cmd::Host {
            room,
            local_only,
            rooms_port,
            matchmaking_port,
            https_port,
            tls_dir,
            mut list_rooms,
            list_nearby,
            no_announce,
            seconds,
        } => {
            if list_nearby {
                list_rooms.extend(room.clone());
            }
            let ports = (matchmaking_port, rooms_port, https_port);
            let announce = (!no_announce && !local_only).then_some(list_rooms);
            return host(room, local_only, ports, tls_dir, announce, seconds).await;
        }
        Cmd::Nearby { seconds } => return nearby(seconds).await,
        Cmd::Devices => {
            use liveloop_media::device::audio::{list_microphones, list_speakers};
            let kinds = [
                (
                    "microphone",
                    list_microphones().context("cannot list microphones")?,
                ),
                ("speaker", list_speakers().context("cannot list speakers")?),
            ];
            for (kind, devices) in kinds {
                for d in devices {
                    print(
                        &json!({"kind": kind, "id": d.id, "name": d.name, "default": d.is_default}),
                    );
                }
            }
            return Ok(());
        }
        Cmd::Screens => {
            for s in liveloop_media::device::screen::list().context("cannot list screens")? {
                print(&json!({"id": s.id, "name": s.name, "primary": s.is_default}));
            }
            return Ok(());
        }
    };
    let call_recorder = match &opts.record_call {
        Some(path) => {
            let title = match &mode {
                Mode::Room { room, .. } => format!("LiveLoop call in {room}"),
                Mode::Random { .. } => "LiveLoop random chat".to_owned(),
            };
            let mut options = RecordingOptions::new(path.clone(), title);
            options.separate_audio = opts.record_separate;
            Some(Recorder::start(options).context("cannot start recording")?)
        }
        None => None,
    };
    let feed = call_recorder.as_ref().map(Recorder::feeder);
    let (ice_servers, mut relay_only) = ice_servers(opts.rtc_config.as_deref())?;
    if opts.private {
        if liveloop_engine::Privacy::of(true, &ice_servers) == liveloop_engine::Privacy::Unavailable
        {
            anyhow::bail!(
                "--private needs a TURN server in --rtc-config: private mode sends relay candidates only"
            );
        }
        relay_only = true;
    }
    let config = EngineConfig {
        name: opts.name.clone(),
        bitrate_bps: opts.bitrate.saturating_mul(1000),
        stats_interval: opts.stats.then_some(Duration::from_secs(1)),
        ice_servers,
        relay_only,
        local_preview: feed
            .clone()
            .map(|f| FrameTap(Arc::new(move |frame| f.local_frame(frame)))),
        local_audio: feed.map(|f| AudioTap(Arc::new(move |pcm| f.local_audio(pcm)))),
        audio_processing: audio_processing(&opts),
        ..EngineConfig::default()
    };
    // The stream stays open on this thread for the whole call (cpal streams are not Send).
    let (_speaker, speaker_feed) = match opts.speaker.as_deref() {
        Some(id) => {
            let id = (!id.is_empty()).then_some(id);
            let (speaker, feed) = liveloop_media::device::audio::Speaker::open(
                id,
                liveloop_media::device::audio::LIVE_SPEAKER_RING,
            )
            .context("--speaker")?;
            (Some(speaker), Some(feed))
        }
        None => (None, None),
    };
    let (media, echo) = if opts.echo {
        let (media, feed) = echo_media(VideoFormat {
            width: 640,
            height: 360,
            fps: 30.0,
        });
        (media, Some(feed))
    } else {
        (
            Media {
                video: video_source(&opts.video)?,
                audio: audio_source(&opts.audio)?,
                speaker: speaker_feed,
            },
            None,
        )
    };
    let next_after = match &mode {
        Mode::Random { next_after, .. } => *next_after,
        Mode::Room { .. } => None,
    };
    let (handle, mut events) = match mode {
        Mode::Room { server, room, id } => {
            join_room_with(config, server, room, id, media).context("cannot join")?
        }
        Mode::Random { server, .. } => tokio::time::timeout(
            Duration::from_secs(opts.connect_timeout),
            random_chat(config, server, media),
        )
        .await
        .map_err(|_| anyhow::anyhow!("the matchmaking server did not answer"))?
        .context("cannot start random chat")?,
    };
    if opts.muted {
        handle.send(Command::SetMuted(true)).await?;
    }
    let result = run(
        &handle,
        &mut events,
        &opts,
        echo,
        next_after,
        started,
        call_recorder,
    )
    .await;
    handle.send(Command::Leave).await.ok();
    // Let the engine say goodbye (peers closed, room left) before the process ends.
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(ev) = events.recv().await {
            if matches!(ev, EngineEvent::State(State::Idle)) {
                break;
            }
        }
    })
    .await;
    result
}

enum Mode {
    Room {
        server: String,
        room: String,
        id: String,
    },
    Random {
        server: Matchmaker,
        next_after: Option<u64>,
    },
}

async fn run(
    handle: &EngineHandle,
    events: &mut tokio::sync::mpsc::Receiver<EngineEvent>,
    opts: &Opts,
    echo: Option<EchoFeed>,
    next_after: Option<u64>,
    started: Instant,
    call_recorder: Option<Recorder>,
) -> Result<()> {
    let deadline = opts
        .seconds
        .map(|s| tokio::time::Instant::now() + Duration::from_secs(s));
    let connect_by = tokio::time::Instant::now() + Duration::from_secs(opts.connect_timeout);
    let mut chat = opts.chat.clone();
    let mut summary = Summary {
        start: Some(started),
        ..Summary::default()
    };
    let mut meters: HashMap<String, AudioMeter> = HashMap::new();
    let mut recorder = match (&opts.record, &opts.measure) {
        (Some(dir), _) => Some(record::Recorder::new(dir)?),
        (None, Some(dir)) => Some(record::Recorder::measuring(dir)?),
        (None, None) => None,
    };
    let mut next_at: Option<tokio::time::Instant> = None;
    let mut share = opts.share_screen.clone();
    let mut unshare_at: Option<tokio::time::Instant> = None;
    let outcome = loop {
        let wake = [
            deadline,
            next_at,
            unshare_at,
            summary.joined_ms.is_none().then_some(connect_by),
        ]
        .into_iter()
        .flatten()
        .min();
        let ev = tokio::select! {
            ev = events.recv() => ev,
            () = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => {
                let now = tokio::time::Instant::now();
                if deadline.is_some_and(|d| now >= d) {
                    break Ok(());
                }
                if summary.joined_ms.is_none() && now >= connect_by {
                    break Err(anyhow::anyhow!(
                        "the signaling server did not let us in within {} s",
                        opts.connect_timeout
                    ));
                }
                if next_at.is_some_and(|n| now >= n) {
                    next_at = None;
                    handle.send(Command::Next).await?;
                }
                if unshare_at.is_some_and(|n| now >= n) {
                    unshare_at = None;
                    handle.send(Command::StopScreenShare).await?;
                }
                continue;
            }
            _ = tokio::signal::ctrl_c() => break Ok(()),
        };
        let Some(ev) = ev else {
            break Err(anyhow::anyhow!("the engine stopped"));
        };
        if let Some(feed) = &echo {
            feed.on_event(&ev);
        }
        if let Some(r) = &call_recorder {
            r.on_event(&ev);
        }
        if let Some(r) = recorder.as_mut()
            && let Err(e) = r.on_event(&ev)
        {
            break Err(e.context("recording failed"));
        }
        summary.sample_usage();
        match &ev {
            EngineEvent::Joined { .. } => summary.joined_ms = summary.ms_since_start(),
            EngineEvent::PeerConnected { .. } => {
                if summary.connected_ms.is_none() {
                    summary.connected_ms = summary.ms_since_start();
                }
                if let Some(text) = chat.take() {
                    // The data channel opens right after the connection.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    handle.send(Command::SendChat(text)).await?;
                }
                if let Some(secs) = next_after {
                    next_at = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
                }
                if let Some(screen) = share.take() {
                    let id = (screen != "primary").then_some(screen.as_str());
                    let source = liveloop_media::device::screen::ScreenSource::open_for_sharing(id)
                        .with_context(|| format!("cannot share {screen}"))?;
                    handle.send(Command::ShareScreen(Box::new(source))).await?;
                    if let Some(secs) = opts.share_seconds {
                        unshare_at = Some(tokio::time::Instant::now() + Duration::from_secs(secs));
                    }
                }
            }
            EngineEvent::FrameDecoded {
                from,
                stamp,
                decoded_ms,
                shown_ms,
                ..
            } => {
                if summary.first_frame_ms.is_none() {
                    summary.first_frame_ms = summary.ms_since_start();
                }
                *summary.frames.entry(from.clone()).or_default() += 1;
                if let Some(s) = stamp {
                    summary
                        .latencies
                        .push(decoded_ms.wrapping_sub(s.capture_ms));
                    summary
                        .shown_latencies
                        .push(shown_ms.wrapping_sub(s.capture_ms));
                }
            }
            EngineEvent::AudioPlayout { from, pcm } => {
                let m = meters.entry(from.clone()).or_default();
                m.samples += pcm.len();
                m.energy += pcm.iter().map(|s| f64::from(s * s)).sum::<f64>();
                if m.samples >= 48_000 {
                    let rms = (m.energy / m.samples as f64).sqrt();
                    print(&json!({"event": "audio", "from": from, "seconds": 1, "rms": rms}));
                    if rms > 0.01 {
                        *summary.audio_seconds.entry(from.clone()).or_default() += 1;
                    }
                    *m = AudioMeter::default();
                }
            }
            EngineEvent::Error {
                kind: ErrorKind::RoomFull,
                message,
            } => {
                print(&event_json(&ev).unwrap_or_default());
                break Err(anyhow::anyhow!("the room is full: {message}"));
            }
            _ => {}
        }
        if let Some(line) = event_json(&ev) {
            print(&line);
        }
    };
    if let Some(r) = recorder {
        let files = r.finish()?;
        print(&json!({"event": "recording", "files": files}));
    }
    if let Some(recorder) = call_recorder {
        let done = recorder.stop().context("recording failed")?;
        print(&json!({
            "event": "call_recording",
            "path": done.path,
            "extra_files": done.extra_files,
            "duration_ms": done.duration.as_millis() as u64,
            "video_frames": done.video_frames,
            "bytes": done.bytes,
        }));
    }
    print(&summary.json());
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links() {
        let (server, room) =
            parse_link("liveloop://join/team-42?server=ws://10.0.0.5:8080/ws").unwrap_or_default();
        assert_eq!(
            (server.as_deref(), room.as_str()),
            (Some("ws://10.0.0.5:8080/ws"), "team-42")
        );
        assert_eq!(
            parse_link("https://x/r/a").ok(),
            Some((Some("wss://x/ws".to_owned()), "a".to_owned()))
        );
        assert!(parse_link("liveloop://join/").is_err());
        assert!(video_source("synthetic:320x180@15").is_ok());
        assert!(video_source("synthetic:axb").is_err());
        assert!(video_source("/no/such.y4m").is_err());
        assert!(audio_source("/no/such.wav").is_err());
        let turn =
            r#"{"iceServers":[{"urls":["turn:t.example:3478"],"username":"u","credential":"p"}]}"#;
        let (servers, relay_only) = ice_servers(Some(turn)).unwrap_or_default();
        assert!(!relay_only);
        assert_eq!(servers.len(), 1);
        assert_eq!(servers[0].urls, vec!["turn:t.example:3478".to_owned()]);
        assert_eq!(
            (servers[0].username.as_str(), servers[0].credential.as_str()),
            ("u", "p")
        );
        assert!(ice_servers(Some("{\"iceServers\":[{\"urls\":\"http://x\"}]}")).is_err());
        assert!(ice_servers(None).unwrap_or_default().0.is_empty());
        let relay = r#"{"iceServers":[{"urls":"turn:t.example","username":"u","credential":"p"}],"iceTransportPolicy":"relay"}"#;
        assert!(ice_servers(Some(relay)).unwrap_or_default().1);
    }
}
