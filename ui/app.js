// LiveLoop UI: static ES modules, no bundler. It talks to the Rust side through Tauri commands
// and the `call` event; video frames come natively scaled over a loopback WebSocket (video.js).
// Media never passes through here (see ARCHITECTURE.md).

import { TileVideo } from "./video.js";

const tauri = window.__TAURI__;
const invoke = tauri?.core?.invoke
  ?? (async () => { throw new Error("LiveLoop's UI runs inside the LiveLoop app"); });

const $ = (id) => document.getElementById(id);

function showView(name) {
  for (const view of document.querySelectorAll(".view")) {
    view.hidden = view.id !== `${name}-view`;
  }
  for (const nav of document.querySelectorAll(".nav")) {
    if (nav.dataset.view === name) nav.setAttribute("aria-current", "page");
    else nav.removeAttribute("aria-current");
  }
  document.body.dataset.view = name;
}

let toastTimer;
function toast(message, isError = false) {
  const el = $("toast");
  el.textContent = message;
  el.classList.toggle("error", isError);
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, 5000);
}

function banner(message) {
  const el = $("banner");
  el.textContent = message ?? "";
  el.hidden = !message;
}

const errorText = (e) => e?.message ?? String(e);

// ---------------------------------------------------------------- settings and home

let appStatus = null;

/// Home's Nearby: the rooms other LiveLoop apps on the network list, each joinable in one click.
async function renderNearby() {
  let view;
  try {
    view = await invoke("nearby_rooms");
  } catch {
    return;
  }
  const rooms = view.rooms;
  $("nearby-waiting").textContent = view.waiting === 1
    ? "1 person nearby is waiting in random chat."
    : view.waiting > 1 ? `${view.waiting} people nearby are waiting in random chat.` : "";
  const list = $("nearby-list");
  list.replaceChildren();
  for (const r of rooms) {
    const li = document.createElement("li");
    const label = document.createElement("span");
    label.textContent = r.host ? `${r.room} — ${r.host}` : r.room;
    const join = document.createElement("button");
    join.textContent = "Join";
    join.setAttribute("aria-label", `Join room ${r.room}`);
    join.addEventListener("click", () => openLink(r.link));
    li.append(label, join);
    list.append(li);
  }
  $("nearby-card").hidden = rooms.length === 0 && !view.waiting;
}

let settings = {
  displayName: "", matchmakingUrl: "", roomsUrl: "", camera: "", microphone: "", speaker: "", recordingDir: "", avatar: "",
  builtInThisComputerOnly: false, builtInPorts: [0, 0], privateRandom: true, privateRooms: false,
  echoCancellation: true, noiseSuppression: true, autoGain: true,
};

// ---------------------------------------------------------------- the device check

let preview = null;

async function startCheck() {
  videoEndpoint = videoEndpoint ?? await invoke("video_endpoint");
  const notes = await invoke("preview_start");
  $("device-check").hidden = false;
  $("check-devices").setAttribute("aria-pressed", "true");
  $("check-devices").textContent = "Stop check";
  $("check-notes").hidden = notes.length === 0;
  $("check-notes").textContent = notes.join(" · ");
  if (!preview) preview = new TileVideo($("preview-tile").querySelector("canvas"), videoEndpoint, "preview");
}

async function stopCheck() {
  $("device-check").hidden = true;
  $("check-devices").setAttribute("aria-pressed", "false");
  $("check-devices").textContent = "Check devices";
  preview?.close();
  preview = null;
  $("preview-tile").classList.remove("has-video");
  try { await invoke("preview_stop"); } catch { /* nothing was running */ }
}

function bindCheck() {
  $("check-devices").addEventListener("click", () => (preview ? stopCheck() : startCheck().catch((e) => toast(errorText(e), true))));
  $("take-picture").addEventListener("click", async () => {
    try {
      const picture = await invoke("preview_snapshot");
      await saveSettings({ ...settings, avatar: picture });
    } catch (e) { toast(errorText(e), true); }
  });
  $("test-sound").addEventListener("click", async () => {
    try { await invoke("speaker_test"); } catch (e) { toast(errorText(e), true); }
  });
  tauri?.event?.listen("level", (e) => { $("level").value = Math.max(-60, Math.min(0, e.payload)); });
}

function renderSettings() {
  $("avatar").hidden = !settings.avatar;
  if (settings.avatar) $("avatar").src = settings.avatar;
  $("display-name").value = settings.displayName;
  $("greeting-name").textContent = settings.displayName ? `, ${settings.displayName}` : "";
  $("matchmaking-url").value = settings.matchmakingUrl;
  $("rooms-url").value = settings.roomsUrl;
  $("built-in-local-only").checked = settings.builtInThisComputerOnly;
  $("private-random").checked = settings.privateRandom;
  $("private-rooms").checked = settings.privateRooms;
  $("set-aec").checked = settings.echoCancellation;
  $("set-ns").checked = settings.noiseSuppression;
  $("set-agc").checked = settings.autoGain;
  $("call-aec").checked = settings.echoCancellation;
  $("call-ns").checked = settings.noiseSuppression;
  $("call-agc").checked = settings.autoGain;
  $("recording-dir").value = settings.recordingDir;
}

function fillPicker(select, devices, chosen) {
  select.replaceChildren();
  const system = document.createElement("option");
  system.value = "";
  system.textContent = devices.length ? "System default" : "None found";
  select.append(system);
  for (const d of devices) {
    const o = document.createElement("option");
    o.value = d.id;
    o.textContent = d.isDefault ? `${d.name} (default)` : d.name;
    select.append(o);
  }
  // A device chosen earlier but unplugged now stays selected, marked as missing.
  if (chosen && !devices.some((d) => d.id === chosen)) {
    const o = document.createElement("option");
    o.value = chosen;
    o.textContent = `${chosen} (not connected)`;
    select.append(o);
  }
  select.value = chosen ?? "";
}

async function loadDevices() {
  try {
    const d = await invoke("list_devices");
    fillPicker($("camera-select"), d.cameras, settings.camera);
    fillPicker($("microphone-select"), d.microphones, settings.microphone);
    fillPicker($("speaker-select"), d.speakers, settings.speaker);
    $("device-notes").hidden = d.notes.length === 0;
    $("device-notes").textContent = d.notes.join(" · ");
  } catch (e) {
    toast(errorText(e), true);
  }
}

async function saveSettings(next) {
  try {
    settings = await invoke("save_settings", { settings: next });
    renderSettings();
    toast("Saved");
  } catch (e) {
    toast(errorText(e), true);
  }
}

// ---------------------------------------------------------------- the call

const call = {
  active: false,
  mode: null,
  me: null,
  state: "idle",
  muted: false,
  cameraOn: true,
  peers: new Map(), // id → {name, muted, cameraOff}
  tiles: new Map(), // id → {el, video}
  unread: 0,
  chatOpen: true,
  stats: [],
  send: null, // the send side of the last stats (estimate, target, size, limit)
  recording: null, // the file being recorded
  sharing: false,
  id: null, // the call's number: events of other calls are ignored
  room: null, // the room of a room call
  listedRoom: null, // the room shown to the network (Nearby), until the call ends
};
let videoEndpoint = null;

// For tests and the bench: what each tile shows.
window.__liveloop = {
  get state() { return call.state; },
  get mode() { return call.mode; },
  tiles() {
    const out = {};
    for (const [id, t] of call.tiles) out[id] = { frames: t.video?.frames ?? 0, received: t.video?.received ?? 0 };
    return out;
  },
  checksum(id) { return call.tiles.get(id)?.video?.checksum() ?? null; },
  peers() { return Object.fromEntries(call.peers); },
  messages() { return [...document.querySelectorAll("#messages li")].map((li) => li.dataset.text); },
  previewFrames() { return preview?.frames ?? 0; },
};

function initials(name) {
  return (name || "?").split(/\s+/).map((w) => w[0]).join("").slice(0, 2).toUpperCase();
}

function tileFor(id) {
  let tile = call.tiles.get(id);
  if (tile) return tile;
  const el = document.createElement("div");
  el.className = "tile";
  el.dataset.id = id;
  el.innerHTML = `<canvas aria-hidden="true"></canvas>
    <div class="avatar" aria-hidden="true"></div>
    <div class="label"><span class="name"></span><span class="badge muted-badge" hidden>Muted</span><span class="badge cam-badge" hidden>Camera off</span></div>`;
  el.setAttribute("role", "group");
  $("tiles").append(el);
  tile = { el, video: null };
  try {
    if (videoEndpoint) tile.video = new TileVideo(el.querySelector("canvas"), videoEndpoint, id);
  } catch (e) {
    toast(`Video cannot be shown: ${errorText(e)}`, true);
  }
  call.tiles.set(id, tile);
  layoutTiles();
  return tile;
}

function removeTile(id) {
  const tile = call.tiles.get(id);
  if (!tile) return;
  tile.video?.close();
  tile.el.remove();
  call.tiles.delete(id);
  layoutTiles();
}

function layoutTiles() {
  const n = call.tiles.size;
  const cols = n <= 1 ? 1 : n <= 4 ? 2 : 3;
  $("tiles").style.setProperty("--cols", cols);
}

function renderTile(id) {
  const tile = call.tiles.get(id);
  if (!tile) return;
  if (id.endsWith("#screen")) {
    const owner = call.peers.get(id.slice(0, -"#screen".length))?.name || "Guest";
    tile.el.querySelector(".name").textContent = `${owner}'s screen`;
    tile.el.setAttribute("aria-label", `${owner}'s screen`);
    return;
  }
  const self = id === "self";
  const peer = call.peers.get(id) ?? {};
  const name = self ? `${settings.displayName || "You"} (you)` : (peer.name || "Guest");
  if (!self && call.mode === "test") tile.el.classList.add("echo");
  const muted = self ? call.muted : !!peer.muted;
  const cameraOff = self ? !call.cameraOn : !!peer.cameraOff;
  tile.el.querySelector(".name").textContent = name;
  tile.el.querySelector(".avatar").textContent = initials(name.replace(" (you)", ""));
  tile.el.querySelector(".muted-badge").hidden = !muted;
  tile.el.querySelector(".cam-badge").hidden = !cameraOff;
  tile.el.classList.toggle("camera-off", cameraOff);
  tile.el.setAttribute("aria-label", `${name}${muted ? ", muted" : ""}${cameraOff ? ", camera off" : ""}`);
}

function renderControls() {
  const mute = $("btn-mute");
  mute.setAttribute("aria-pressed", String(call.muted));
  mute.textContent = call.muted ? "Unmute" : "Mute";
  mute.setAttribute("aria-label", call.muted ? "Unmute microphone (M)" : "Mute microphone (M)");
  const cam = $("btn-camera");
  cam.setAttribute("aria-pressed", String(!call.cameraOn));
  cam.textContent = call.cameraOn ? "Stop video" : "Start video";
  cam.setAttribute("aria-label", call.cameraOn ? "Turn camera off (V)" : "Turn camera on (V)");
  document.body.dataset.mode = call.mode ?? "";
  const unread = $("unread");
  unread.hidden = call.unread === 0;
  unread.textContent = String(call.unread);
  renderTile("self");
}

const STATE_TEXT = {
  idle: "Not connected",
  connecting: "Connecting…",
  joined: "Waiting for others",
  calling: "In call",
  reconnecting: "Reconnecting…",
};

function renderState() {
  let text = STATE_TEXT[call.state] ?? call.state;
  if (call.mode === "random" && call.state === "connecting") text = "Looking for someone…";
  if (call.mode === "random" && call.state === "joined") text = "Stopped";
  $("call-state").textContent = text;
  $("call-state").dataset.state = call.state;
}

function addMessage(from, text, mine = false) {
  const li = document.createElement("li");
  li.className = mine ? "mine" : "";
  li.dataset.text = text;
  const who = document.createElement("strong");
  who.textContent = mine ? "You" : (call.peers.get(from)?.name || from);
  const body = document.createElement("span");
  body.textContent = text;
  li.append(who, body);
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
  if (!mine && !call.chatOpen) {
    call.unread += 1;
    renderControls();
  }
}

function renderStats() {
  const body = $("stats-body");
  body.replaceChildren();
  let worst = "good";
  for (const p of call.stats) {
    const tr = document.createElement("tr");
    const cells = [
      call.peers.get(p.id)?.name || p.id,
      `${p.rtt_ms.toFixed(1)} ms`,
      `${p.loss_percent.toFixed(1)}%`,
      `${p.audio_jitter_ms.toFixed(1)} ms`,
      `${Math.round(p.rx_kbps)} kb/s`,
      `${Math.round(p.tx_kbps)} kb/s`,
      p.fps.toFixed(1),
      `${Math.round(p.audio_delay_ms)} ms`,
      `${p.av_offset_ms.toFixed(0)} ms`,
    ];
    for (const c of cells) {
      const td = document.createElement("td");
      td.textContent = c;
      tr.append(td);
    }
    body.append(tr);
    const level = p.loss_percent > 5 || p.rtt_ms > 400 ? "poor" : p.loss_percent > 1 || p.rtt_ms > 150 ? "fair" : "good";
    if (level === "poor" || (level === "fair" && worst === "good")) worst = level;
  }
  // What we send, and what holds it back: the send-side estimate of the slowest path.
  const send = call.send;
  const line = $("stats-send");
  if (send) {
    const estimate = send.estimate_kbps > 0 ? `${Math.round(send.estimate_kbps)} kb/s estimated` : "no estimate yet";
    const video = send.width ? `${send.width}×${send.height}` : "no video";
    const limit = send.limited_by === "bandwidth" ? " · limited by bandwidth" : "";
    // A slow member of a mesh gets a second, smaller layer of our camera; the others keep theirs.
    const low = send.low
      ? ` · ${send.low.peers === 1 ? "1 slow connection gets" : `${send.low.peers} slow connections get`} ${send.low.width}×${send.low.height} at ${Math.round(send.low.video_target_kbps)} kb/s`
      : "";
    line.textContent = `Sending ${video} at ${Math.round(send.video_target_kbps)} kb/s, audio ${Math.round(send.audio_target_kbps)} kb/s (${estimate})${limit}${low}`;
    if (send.limited_by === "bandwidth" && send.estimate_kbps > 0) {
      const level = send.estimate_kbps < 300 ? "poor" : send.estimate_kbps < 800 ? "fair" : "good";
      if (level === "poor" || (level === "fair" && worst === "good")) worst = level;
    }
  } else {
    line.textContent = "";
  }
  const q = $("quality");
  q.dataset.level = worst;
  q.textContent = `${worst[0].toUpperCase()}${worst.slice(1)} connection`;
  q.title = send && send.limited_by === "bandwidth" ? "Your video is reduced to fit the connection" : "";
}

function onCallEvent(ev) {
  // What an ended call still says (its last "idle", a late "speaking") is not about this one.
  // Calls are numbered upwards; a newer call's first events may come before its number does.
  if (ev.callId != null && call.id != null && ev.callId < call.id) return;
  switch (ev.event) {
    case "state":
      call.state = ev.state;
      renderState();
      if (ev.state === "joined" || ev.state === "calling") banner(null);
      if (ev.state === "idle" && call.active) endCall();
      break;
    case "joined":
      call.me = ev.id || call.me;
      break;
    case "peer_joined":
      call.peers.set(ev.id, { ...(call.peers.get(ev.id) ?? {}), name: ev.name || call.peers.get(ev.id)?.name || "" });
      tileFor(ev.id);
      renderTile(ev.id);
      break;
    case "peer_connected":
      tileFor(ev.id);
      renderTile(ev.id);
      break;
    case "peer_left":
      if (call.peers.get(ev.id)?.name) toast(`${call.peers.get(ev.id).name} left`);
      call.peers.delete(ev.id);
      removeTile(ev.id);
      removeTile(`${ev.id}#screen`);
      break;
    case "peer_state":
      call.peers.set(ev.id, { name: ev.name, muted: ev.muted, cameraOff: ev.cameraOff, screen: ev.screen });
      tileFor(ev.id);
      renderTile(ev.id);
      // A screen share is a tile of its own, first and full width; it goes when the share ends.
      if (ev.screen) {
        const tile = tileFor(`${ev.id}#screen`);
        tile.el.classList.add("presenting");
        $("tiles").prepend(tile.el);
        renderTile(`${ev.id}#screen`);
      } else {
        removeTile(`${ev.id}#screen`);
      }
      break;
    case "screen_share":
      call.sharing = ev.sharing;
      renderShare();
      if (!ev.sharing && ev.reason) toast(`Screen share ended: ${ev.reason}`, true);
      break;
    case "chat":
      addMessage(ev.from, ev.text);
      break;
    case "stats":
      call.stats = ev.peers;
      call.send = ev.send || null;
      renderStats();
      break;
    case "audio_processing": {
      // What the capture thread applies: the menu says what is in effect, not what was asked.
      const on = [[ev.echoCancellation, "echo cancellation"], [ev.noiseSuppression, "noise suppression"], [ev.autoGain, "automatic gain"]]
        .filter(([v]) => v).map(([, name]) => name);
      $("audio-state").textContent = on.length ? `In effect: ${on.join(", ")}` : "In effect: none (your microphone as it is)";
      break;
    }
    case "speaking_while_muted":
      if (call.muted) showMutedHint();
      break;
    case "speaking":
      for (const [id, t] of call.tiles) t.el.classList.toggle("speaking", id === ev.id);
      break;
    case "test_latency":
      if (ev.videoMs != null) {
        $("round-trip").hidden = false;
        $("round-trip").textContent = `Round trip ${ev.videoMs} ms`;
        $("round-trip").title = "Your video, out through the encoder and network to the echo peer and back";
      }
      break;
    case "error":
      if (ev.kind === "server_unreachable") banner("Lost the server — your call goes on; reconnecting…");
      else if (ev.kind === "room_full") { toast("That room is full.", true); leave(); }
      else toast(ev.message, true);
      break;
    default:
      break;
  }
}

let starting = false;
let linkChoice = null;
let linkPending = null;

/// Opens a room link. A link to a server you have not set up, or one that would end the call in
/// progress, asks first and shows the server (a link can come from any web page).
async function openLink(link) {
  let info;
  try {
    info = await invoke("link_check", { link });
  } catch (e) {
    toast(errorText(e), true);
    return;
  }
  if (!info.foreign && !call.active) {
    await startCall("call_join", { link });
    return;
  }
  // The same link twice (a second launch and the OS's deep-link event can both deliver it)
  // is one question; a different one replaces an unanswered prompt.
  if (linkPending === link) return;
  linkChoice?.(false);
  linkPending = link;
  $("link-prompt-title").textContent = `Join room “${info.room}” on ${info.host}?`;
  const lines = [];
  if (info.foreign) {
    lines.push(`This link is for ${info.host}, a server you have not set up. Join only if you trust whoever sent it: your camera and microphone go on.`);
  }
  if (call.active) lines.push("Joining ends your current call.");
  $("link-prompt-text").textContent = lines.join(" ");
  $("link-prompt").hidden = false;
  $("link-join").focus();
  const join = await new Promise((resolve) => { linkChoice = resolve; });
  if (linkPending !== link) return; // replaced by a newer link, which owns the prompt now
  linkChoice = null;
  linkPending = null;
  $("link-prompt").hidden = true;
  if (join) await startCall("call_join", { link });
}

async function startCall(command, args = {}) {
  // A double click (or a link arriving meanwhile) must not start a second call over the first.
  if (starting) return;
  starting = true;
  try {
    await startCallNow(command, args);
  } finally {
    starting = false;
  }
}

async function startCallNow(command, args) {
  if (preview) await stopCheck();
  if (call.active) await leave();
  try {
    videoEndpoint = videoEndpoint ?? await invoke("video_endpoint");
    const started = await invoke(command, args);
    call.id = started.callId;
    call.active = true;
    call.mode = started.mode;
    call.me = started.me;
    call.state = "connecting";
    call.muted = false;
    call.cameraOn = true;
    call.unread = 0;
    call.peers.clear();
    $("messages").replaceChildren();
    for (const note of started.notes) {
      toast(note, true);
      if (note.startsWith("No camera")) call.cameraOn = false;
      if (note.startsWith("No microphone")) call.muted = true;
    }
    $("call-title").textContent = started.mode === "random" ? "Random chat"
      : started.mode === "test" ? "Test call" : `Room ${started.room}`;
    $("round-trip").hidden = true;
    // Private mode: say when it holds, and when it was asked for but cannot.
    const privateState = $("private-state");
    privateState.hidden = started.private === "off";
    privateState.textContent = started.private === "on" ? "Private" : "Not private";
    privateState.classList.toggle("warn", started.private === "unavailable");
    privateState.title = started.private === "on"
      ? "Private mode: through the server's relay only, the other side can't see your IP address"
      : "Private mode can't apply: this server has no TURN relay, so the other side can see your IP address";
    $("room-link-row").hidden = !started.link;
    $("room-link").value = started.link ?? "";
    // Several addresses on the network (Wi-Fi and Ethernet, IPv4 and IPv6), and the HTTPS
    // links browsers need for the camera: offer each.
    const choice = $("room-link-choice");
    choice.replaceChildren();
    const offers = [
      ...(started.browserLinks ?? []).map((l) => [l, `${new URL(l).host} (app or browser)`]),
      ...(started.links ?? []).map((l) => [l, `${new URL(l).host} (LiveLoop app only)`]),
    ];
    for (const [l, label] of offers) {
      const o = document.createElement("option");
      o.value = l;
      o.textContent = label;
      choice.append(o);
    }
    choice.hidden = offers.length < 2;
    // Listing is off by default, and only for a room on this app's own servers on the network.
    const listable = appStatus?.nearby && started.linkReach === "network" && started.room;
    $("room-listed-row").hidden = !listable;
    $("room-listed").checked = false;
    call.listedRoom = null;
    call.room = started.room ?? null;
    $("room-link-note").textContent = started.linkReach === "network"
      ? "People on your network can join with this link, in LiveLoop or a browser (a browser warns once about this computer's certificate). For people elsewhere, set a server in Settings."
      : started.linkReach === "this computer"
        ? "This link works on this computer only (the built-in servers are kept to this computer, or it has no network)."
        : "";
    tileFor("self");
    renderControls();
    renderState();
    showView("call");
  } catch (e) {
    toast(errorText(e), true);
  }
}

function endCall() {
  call.active = false;
  call.state = "idle";
  for (const id of [...call.tiles.keys()]) removeTile(id);
  call.peers.clear();
  call.stats = [];
  call.send = null;
  call.recording = null;
  call.sharing = false;
  renderShare();
  $("share-picker").hidden = true;
  toggleAudioMenu(false);
  hideMutedHint();
  $("audio-state").textContent = "";
  $("btn-record").textContent = "Record";
  $("btn-record").classList.remove("recording");
  $("btn-record").setAttribute("aria-pressed", "false");
  banner(null);
  showView("home");
}

function renderShare() {
  const button = $("btn-share");
  button.textContent = call.sharing ? "Stop sharing" : "Share screen";
  button.setAttribute("aria-pressed", String(Boolean(call.sharing)));
}

/// Opens the picker (screens and windows with thumbnails), or stops sharing.
async function toggleShare() {
  if (!call.active) return;
  if (call.sharing) {
    try { await invoke("call_stop_share"); } catch (e) { toast(errorText(e), true); }
    return;
  }
  const picker = $("share-picker");
  const list = $("share-list");
  list.replaceChildren();
  picker.hidden = false;
  let sources = [];
  try {
    sources = await invoke("screen_sources");
  } catch (e) {
    toast(errorText(e), true);
  }
  $("share-empty").hidden = sources.length > 0;
  for (const s of sources) {
    const li = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.dataset.id = s.id;
    const picture = document.createElement(s.thumbnail ? "img" : "div");
    if (s.thumbnail) { picture.src = s.thumbnail; picture.alt = ""; } else picture.className = "no-thumb";
    const label = document.createElement("span");
    label.textContent = `${s.kind === "window" ? "Window" : "Screen"}: ${s.name}`;
    button.append(picture, label);
    button.addEventListener("click", async () => {
      picker.hidden = true;
      try {
        await invoke("call_share_screen", { id: s.id });
      } catch (e) {
        toast(errorText(e), true);
      }
    });
    li.append(button);
    list.append(li);
  }
  list.querySelector("button")?.focus();
}

/// Starts or stops recording the call (a Matroska file in the recording folder).
async function toggleRecording() {
  if (!call.active) return;
  const button = $("btn-record");
  try {
    if (!call.recording) {
      call.recording = await invoke("call_record_start");
      toast(`Recording to ${call.recording}`);
    } else {
      await stopRecording();
    }
  } catch (e) {
    toast(errorText(e), true);
  }
  button.textContent = call.recording ? "Stop recording" : "Record";
  button.classList.toggle("recording", Boolean(call.recording));
  button.setAttribute("aria-pressed", String(Boolean(call.recording)));
}

async function stopRecording() {
  const saved = await invoke("call_record_stop");
  call.recording = null;
  window.__liveloop.lastRecording = saved;
  toast(`Recording saved (${Math.round(saved.durationMs / 1000)} s): ${saved.path}`);
}

async function leave() {
  try {
    if (call.recording) await stopRecording();
  } catch (e) {
    toast(errorText(e), true);
  }
  try {
    await invoke("call_leave");
  } catch (e) {
    toast(errorText(e), true);
  }
  // A listed room is shown only while you are in it.
  if (call.listedRoom) {
    invoke("room_listed", { room: call.listedRoom, listed: false }).catch(() => {});
    call.listedRoom = null;
  }
  endCall();
}

let mutedHintTimer;
function showMutedHint() {
  $("muted-hint").hidden = false;
  clearTimeout(mutedHintTimer);
  mutedHintTimer = setTimeout(() => { $("muted-hint").hidden = true; }, 5000);
}

function hideMutedHint() {
  clearTimeout(mutedHintTimer);
  $("muted-hint").hidden = true;
}

function toggleAudioMenu(open = $("audio-menu").hidden) {
  $("audio-menu").hidden = !open;
  $("btn-audio").setAttribute("aria-expanded", String(open));
}

async function setAudioProcessing() {
  try {
    settings = await invoke("call_audio_processing", {
      echoCancellation: $("call-aec").checked,
      noiseSuppression: $("call-ns").checked,
      autoGain: $("call-agc").checked,
    });
    renderSettings();
  } catch (e) { toast(errorText(e), true); }
}

async function toggleMute() {
  if (!call.active) return;
  const next = !call.muted;
  try {
    await invoke("call_mute", { muted: next });
    call.muted = next;
    if (!next) hideMutedHint();
    renderControls();
  } catch (e) { toast(errorText(e), true); }
}

async function toggleCamera() {
  if (!call.active) return;
  const next = !call.cameraOn;
  try {
    await invoke("call_camera", { on: next });
    call.cameraOn = next;
    renderControls();
  } catch (e) { toast(errorText(e), true); }
}

async function sendChat(text) {
  try {
    await invoke("call_chat", { text });
    addMessage(call.me, text, true);
  } catch (e) { toast(errorText(e), true); }
}

function bindCall() {
  $("start-random").addEventListener("click", () => startCall("call_random"));
  $("create-room").addEventListener("click", () => startCall("call_create"));
  $("test-call").addEventListener("click", () => startCall("call_test"));
  $("join-room").addEventListener("click", () => {
    const link = $("join-link").value.trim();
    if (!link) { toast("Paste a room link or type a room name.", true); return; }
    startCall("call_join", { link });
  });
  $("join-link").addEventListener("keydown", (e) => { if (e.key === "Enter") $("join-room").click(); });
  $("btn-mute").addEventListener("click", toggleMute);
  $("btn-camera").addEventListener("click", toggleCamera);
  $("btn-audio").addEventListener("click", () => toggleAudioMenu());
  $("audio-menu-close").addEventListener("click", () => toggleAudioMenu(false));
  for (const id of ["call-aec", "call-ns", "call-agc"]) $(id).addEventListener("change", setAudioProcessing);
  $("btn-hangup").addEventListener("click", leave);
  $("btn-record").addEventListener("click", toggleRecording);
  $("btn-share").addEventListener("click", toggleShare);
  $("share-cancel").addEventListener("click", () => { $("share-picker").hidden = true; });
  $("btn-next").addEventListener("click", async () => {
    try {
      await invoke("call_next");
      for (const id of [...call.tiles.keys()]) if (id !== "self") removeTile(id);
      call.peers.clear();
    } catch (e) { toast(errorText(e), true); }
  });
  $("btn-stop").addEventListener("click", async () => {
    try { await invoke("call_stop"); } catch (e) { toast(errorText(e), true); }
    leave();
  });
  $("btn-chat").addEventListener("click", () => {
    call.chatOpen = !call.chatOpen;
    $("chat").hidden = !call.chatOpen;
    $("btn-chat").setAttribute("aria-pressed", String(call.chatOpen));
    if (call.chatOpen) call.unread = 0;
    renderControls();
  });
  $("chat-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("chat-input").value.trim();
    if (!text) return;
    $("chat-input").value = "";
    sendChat(text);
  });
  $("room-link-choice").addEventListener("change", (e) => { $("room-link").value = e.target.value; });
  $("room-listed").addEventListener("change", async (e) => {
    const room = call.room;
    if (!room) return;
    try {
      await invoke("room_listed", { room, listed: e.target.checked });
      call.listedRoom = e.target.checked ? room : null;
      toast(e.target.checked ? "People on your network see this room under Nearby" : "This room is no longer shown nearby");
    } catch (err) {
      e.target.checked = !e.target.checked;
      toast(errorText(err), true);
    }
  });
  $("copy-link").addEventListener("click", async () => {
    try {
      await navigator.clipboard.writeText($("room-link").value);
      toast("Link copied");
    } catch {
      $("room-link").select();
      toast("Select the link and copy it (Ctrl+C)");
    }
  });
  $("quality").addEventListener("click", () => {
    const panel = $("stats-panel");
    panel.hidden = !panel.hidden;
    $("quality").setAttribute("aria-expanded", String(!panel.hidden));
  });
  document.addEventListener("keydown", (e) => {
    if (!call.active || e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target instanceof HTMLInputElement) return;
    const key = e.key.toLowerCase();
    if (key === "m") toggleMute();
    else if (key === "v") toggleCamera();
    else if (key === "h") leave();
    else if (key === "r") toggleRecording();
    else if (key === "n" && call.mode === "random") $("btn-next").click();
  });
  const listening = [
    tauri?.event?.listen("call", (e) => onCallEvent(e.payload)),
    // Links opened while the app runs (deep links, a second launch) arrive here.
    tauri?.event?.listen("open-link", (e) => openLink(e.payload)),
  ];
  Promise.all(listening).catch((e) => {
    window.__liveloop.listenError = errorText(e);
    toast(`The app cannot follow the call: ${errorText(e)}`, true);
  });
}

async function start() {
  for (const nav of document.querySelectorAll(".nav")) {
    nav.addEventListener("click", () => {
      showView(nav.dataset.view === "home" && call.active ? "call" : nav.dataset.view);
      if (nav.dataset.view === "settings") loadDevices();
    });
  }
  $("save-name").addEventListener("click", () => saveSettings({ ...settings, displayName: $("display-name").value }));
  $("display-name").addEventListener("keydown", (e) => { if (e.key === "Enter") $("save-name").click(); });
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveSettings({
      ...settings,
      matchmakingUrl: $("matchmaking-url").value,
      roomsUrl: $("rooms-url").value,
      builtInThisComputerOnly: $("built-in-local-only").checked,
      privateRandom: $("private-random").checked,
      privateRooms: $("private-rooms").checked,
      echoCancellation: $("set-aec").checked,
      noiseSuppression: $("set-ns").checked,
      autoGain: $("set-agc").checked,
      camera: $("camera-select").value,
      microphone: $("microphone-select").value,
      speaker: $("speaker-select").value,
      recordingDir: $("recording-dir").value,
    });
  });
  bindCall();
  bindCheck();
  $("link-join").addEventListener("click", () => linkChoice?.(true));
  $("link-cancel").addEventListener("click", () => linkChoice?.(false));
  showView("home");
  try {
    settings = await invoke("get_settings");
    renderSettings();
    const status = await invoke("app_status");
    appStatus = status;
    if (status.nearby) {
      renderNearby();
      setInterval(renderNearby, 2000);
    }
    const s = status.servers;
    const where = !s.embedded ? "your configured servers"
      : s.reach === "network" ? `built-in servers, open to your network (${s.networkRoomsUrls[0] ?? ""})`
        : "built-in servers on this computer only";
    const el = $("server-status");
    el.className = "ok";
    el.textContent = `Ready — ${where}: matchmaking ${s.matchmakingUrl}, rooms ${s.roomsUrl} (v${status.version})`;
    if (status.openLink) openLink(status.openLink);
  } catch (e) {
    const el = $("server-status");
    el.className = "bad";
    el.textContent = errorText(e);
  }
}

start();
