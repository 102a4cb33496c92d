// LiveLoop's browser client: the room service serves it at / and /r/<room>.
//
// The page's JavaScript API is seed 001's, as globals (classic scripts, on purpose, so that
// `setRoomState = function (s) { … }` hooks every state change):
//   state, connect(roomId, myId), disconnect(), callPeer(id), hangupPeer(id), hangupAll(),
//   toggleMute(), toggleCamera(), startScreenShare(), stopScreenShare(), startRecording(),
//   stopRecording(), sendChat(text), setRoomState(s)
// and two LiveLoop additions for tools and tests: callStats() and appLink().
//
// Files: app.js (state, signaling, the API), app.rtc.js (one RTCPeerConnection per member,
// perfect negotiation, the data channel), app.media.js (camera, microphone, screen, recording),
// app.ui.js (the page). The wire formats are in docs/signaling.md.
"use strict";

var state = {
  myId: "",
  ws: null,
  roomId: "",
  roomState: "idle", // 'idle' | 'connecting' | 'joined' | 'reconnecting' | 'calling'
  localStream: null,
  screenStream: null,
  usingScreen: false,
  muted: false,
  cameraOff: false,
  peers: new Map(),
  recorder: null,
  recordedChunks: [],
  // LiveLoop's additions.
  name: "",
  members: [],
  chat: [], // {from, name, text, at, mine}
  lastError: null, // {code, message}
  secret: null, // the resume secret of our id, from `joined`; sent when we rejoin after a drop
  lastRecording: null, // {name, size, type}
  videoConstraints: null, // getUserMedia video constraints; null: up to 1280x720 at 30 fps
  hungUp: new Set(), // members we hung up on or who hung up on us: not called again on their own
};

const ID_RE = /^[A-Za-z0-9_.:-]{1,64}$/;
const JOIN_ERRORS = new Set([
  "invalid_id", "duplicate_id", "identity_locked", "invalid_room", "room_full",
  "room_limit_reached", "invalid_join",
]);
let leaving = false;
let reconnectTimer = null;
let reconnectAttempt = 0;
let heartbeat = null;

function validId(id) {
  return typeof id === "string" && ID_RE.test(id);
}

function guestId() {
  const bytes = new Uint8Array(4);
  crypto.getRandomValues(bytes);
  return "web-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function wsUrl() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${location.host}/ws`;
}

/// The same room in the desktop app.
function appLink() {
  return `liveloop://join/${encodeURIComponent(state.roomId)}?server=${wsUrl()}`;
}

function reportError(code, message) {
  state.lastError = { code, message };
  if (typeof ui !== "undefined") ui.toast(message, true);
}

function sendSignal(msg) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(msg));
    return true;
  }
  return false;
}

// Seed 001's hook point: every state change goes through the global, so a page script may wrap it.
function setRoomState(newState) {
  state.roomState = newState;
  if (typeof ui !== "undefined") ui.render();
}

/// Works out the room state from the socket and the peers, and reports a change.
function updateRoomState() {
  let next;
  if (!state.ws) next = "idle";
  else if (reconnectTimer || state.ws.readyState !== WebSocket.OPEN) {
    next = state.roomState === "idle" || state.roomState === "connecting" ? "connecting" : "reconnecting";
  } else if (!state.joined) next = "connecting";
  else if ([...state.peers.values()].some((p) => p.connected)) next = "calling";
  else next = "joined";
  if (next !== state.roomState) window.setRoomState(next);
  else if (typeof ui !== "undefined") ui.render();
}

/// Joins `roomId` as `myId` (a guest id when omitted). Resolves once the socket is open; the
/// state turns 'joined' when the server answers. Returns false for an invalid room or id.
async function connect(roomId, myId) {
  roomId = String(roomId ?? "").trim();
  myId = myId ? String(myId).trim() : state.myId || guestId();
  if (!validId(roomId)) {
    reportError("invalid_room", "A room name has 1 to 64 letters, digits or _ . : -");
    return false;
  }
  if (!validId(myId)) {
    reportError("invalid_id", "An id has 1 to 64 letters, digits or _ . : -");
    return false;
  }
  if (state.ws) disconnect();
  leaving = false;
  state.roomId = roomId;
  state.myId = myId;
  state.joined = false;
  state.secret = null; // a new join: our last leave released the old id
  state.lastError = null;
  state.hungUp.clear();
  if (location.pathname !== `/r/${roomId}`) {
    history.replaceState(null, "", `/r/${encodeURIComponent(roomId)}`);
  }
  window.setRoomState("connecting");
  await media.ensureLocal();
  openSocket();
  return true;
}

function openSocket() {
  const ws = new WebSocket(wsUrl());
  state.ws = ws;
  ws.onopen = () => {
    if (state.ws !== ws) return;
    reconnectAttempt = 0;
    const join = { type: "join", room: state.roomId, from: state.myId };
    // A rejoin carries the id's secret: the server keeps the id for it for 60 s after a drop,
    // and gives it to no one else.
    if (state.secret) join.secret = state.secret;
    ws.send(JSON.stringify(join));
  };
  ws.onmessage = (event) => {
    if (state.ws !== ws) return;
    let msg;
    try {
      msg = JSON.parse(event.data);
    } catch {
      return;
    }
    if (msg && typeof msg === "object") onSignal(msg);
  };
  ws.onclose = () => {
    if (state.ws !== ws || leaving) return;
    state.joined = false;
    // Calls go on without the server; rejoin with backoff (1, 2, 4, 8, then every 10 s).
    const delay = Math.min(10000, 1000 * 2 ** reconnectAttempt);
    reconnectAttempt += 1;
    clearTimeout(reconnectTimer);
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null;
      if (!leaving && state.ws === ws) openSocket();
    }, delay);
    updateRoomState();
  };
  clearInterval(heartbeat);
  // The server drops a socket silent for 20 s.
  heartbeat = setInterval(() => sendSignal({ type: "ping" }), 10000);
}

function onSignal(msg) {
  switch (msg.type) {
    case "joined":
      state.joined = true;
      if (validId(msg.from)) state.myId = msg.from;
      if (typeof msg.secret === "string" && /^[0-9a-f]{32}$/.test(msg.secret)) {
        state.secret = msg.secret;
      }
      updateRoomState();
      break;
    case "room_members":
      if (Array.isArray(msg.members)) onMembers(msg.members.filter(validId));
      break;
    case "offer":
    case "answer":
      if (validId(msg.from) && msg.sdp) rtc.onDescription(msg.from, msg.sdp);
      break;
    case "candidate":
      if (validId(msg.from)) rtc.onCandidate(msg.from, msg.candidate);
      break;
    case "hangup":
      if (validId(msg.from) && state.peers.has(msg.from)) {
        state.hungUp.add(msg.from);
        rtc.close(msg.from);
        if (typeof ui !== "undefined") ui.toast(`${rtc.displayName(msg.from)} hung up`);
        updateRoomState();
      }
      break;
    case "error": {
      let message = msg.error || msg.code;
      if (msg.code === "duplicate_id" && state.secret && !state.joined) {
        message = `Could not rejoin ${state.roomId} as ${state.myId}: while you were away the id ` +
          `went to someone else, and your resume secret no longer holds it (${message})`;
      } else if (msg.code === "replaced") {
        message = `Another connection took over ${state.myId} with this page's secret (${message})`;
      }
      reportError(msg.code, message);
      // `replaced`: the id is someone else's now; reconnecting would take it back from them.
      if ((JOIN_ERRORS.has(msg.code) && !state.joined) || msg.code === "replaced") {
        disconnect(false);
        state.lastError = { code: msg.code, message };
      }
      break;
    }
    default:
      break; // pong, and types from newer servers
  }
}

/// Calls every new member; ends calls with members that left (a connected call is kept for
/// 30 s, as the app does, so a server restart never ends calls).
function onMembers(members) {
  const before = new Set(state.members);
  state.members = members;
  const listed = new Set(members);
  for (const id of members) {
    if (id === state.myId || state.peers.has(id) || state.hungUp.has(id)) continue;
    if (!before.has(id)) rtc.open(id);
  }
  for (const [id, peer] of state.peers) {
    if (listed.has(id)) peer.absentSince = null;
    else if (!peer.connected) rtc.close(id);
    else peer.absentSince ??= Date.now();
  }
  for (const id of state.hungUp) if (!listed.has(id)) state.hungUp.delete(id);
  updateRoomState();
}

setInterval(() => {
  for (const [id, peer] of state.peers) {
    if (peer.absentSince && Date.now() - peer.absentSince > 30000) rtc.close(id);
  }
  updateRoomState();
}, 1000);

/// Leaves the room: says goodbye on every data channel, closes the calls and the socket, and
/// turns the camera and microphone off.
function disconnect(stopMedia = true) {
  leaving = true;
  clearTimeout(reconnectTimer);
  reconnectTimer = null;
  clearInterval(heartbeat);
  for (const id of [...state.peers.keys()]) {
    rtc.sendData(id, { type: "bye" });
    rtc.close(id);
  }
  if (state.ws) {
    sendSignal({ type: "leave" });
    state.ws.close(1000);
  }
  state.ws = null;
  state.joined = false;
  state.members = [];
  if (state.recorder) stopRecording();
  if (stopMedia) media.stopLocal();
  updateRoomState();
}

/// Calls a member (again): after a hang-up, or to retry a call that failed.
function callPeer(peerId) {
  if (!state.members.includes(peerId) || peerId === state.myId) {
    reportError("target_not_found", `${peerId} is not in this room`);
    return false;
  }
  state.hungUp.delete(peerId);
  const peer = state.peers.get(peerId);
  if (peer && peer.pc.connectionState !== "failed" && peer.pc.connectionState !== "closed") {
    rtc.call(peer); // offers now unless an offer or answer is already under way
    return true;
  }
  if (peer) rtc.close(peerId);
  rtc.open(peerId, { call: true });
  updateRoomState();
  return true;
}

function hangupPeer(peerId) {
  if (!state.peers.has(peerId)) return false;
  rtc.sendData(peerId, { type: "bye" });
  sendSignal({ type: "hangup", to: peerId });
  state.hungUp.add(peerId);
  rtc.close(peerId);
  updateRoomState();
  return true;
}

function hangupAll() {
  for (const id of [...state.peers.keys()]) hangupPeer(id);
}

/// Sends a chat message to every connected peer; returns how many got it.
function sendChat(text) {
  text = String(text ?? "");
  const length = [...text].length;
  if (length === 0 || length > 1000) {
    reportError("invalid_chat", "A chat message has 1 to 1000 characters");
    return 0;
  }
  let sent = 0;
  for (const id of state.peers.keys()) if (rtc.sendData(id, { type: "chat", text })) sent += 1;
  state.chat.push({ from: state.myId, name: state.name || "You", text, at: Date.now(), mine: true });
  if (typeof ui !== "undefined") ui.renderChat();
  return sent;
}

function toggleMute() {
  state.muted = !state.muted;
  media.applyFlags();
  rtc.broadcastState();
  ui.render();
  return state.muted;
}

function toggleCamera() {
  state.cameraOff = !state.cameraOff;
  media.applyFlags();
  rtc.broadcastState();
  ui.render();
  return state.cameraOff;
}

function startScreenShare() {
  return media.startScreenShare();
}

function stopScreenShare() {
  return media.stopScreenShare();
}

function startRecording() {
  return media.startRecording();
}

function stopRecording() {
  return media.stopRecording();
}

/// A summary of every call's `getStats()`, for the stats panel and for tests.
async function callStats() {
  const out = {};
  for (const [id, peer] of state.peers) out[id] = await rtc.stats(peer);
  return out;
}

window.addEventListener("DOMContentLoaded", () => ui.init());
window.addEventListener("pagehide", () => {
  if (state.ws) disconnect();
});
