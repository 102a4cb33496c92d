// One RTCPeerConnection per member, with perfect negotiation, and the "chat" data channel.
//
// Politeness: a client is polite towards a member whose id sorts before its own, by code units
// (`myId > peerId`), which is the byte order the native client and the server use. (Seed 001's
// public client uses localeCompare, which orders case and punctuation differently: two
// clients could then both be impolite and ignore each other's offers.)
"use strict";

var rtc = (() => {
  const H264 = "video/H264";

  function displayName(id) {
    return state.peers.get(id)?.name || id;
  }

  /// Prefers H.264 constrained baseline with packetization-mode 1 (what the app sends and
  /// decodes), then any other H.264, then VP8 (which the app also sends and decodes), then the
  /// rest.
  function preferH264(transceiver) {
    if (!transceiver.setCodecPreferences || !RTCRtpReceiver.getCapabilities) return;
    const caps = RTCRtpReceiver.getCapabilities("video");
    if (!caps) return;
    const rank = (c) => {
      if (c.mimeType === "video/VP8") return 2;
      if (c.mimeType !== H264) return 3;
      const f = c.sdpFmtpLine || "";
      return /profile-level-id=42e0/i.test(f) && /packetization-mode=1/.test(f) ? 0 : 1;
    };
    const codecs = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
    try {
      transceiver.setCodecPreferences(codecs);
    } catch (e) {
      console.warn("codec preferences refused", e);
    }
  }

  function open(id, { call = false } = {}) {
    const polite = state.myId > id;
    const pc = new RTCPeerConnection(window.RTC_CONFIG || {});
    const peer = {
      id,
      pc,
      polite,
      makingOffer: false,
      ignoreOffer: false,
      pendingCandidates: [],
      dc: null,
      // LiveLoop's additions.
      name: "",
      muted: false,
      cameraOff: false,
      screen: false,
      connected: false,
      absentSince: null,
      stream: new MediaStream(),
      screenStream: null, // an app peer's screen share (a stream of its own)
      restarts: 0,
      call, // this side calls: it offers even when polite
      collisions: 0, // offers that crossed ours (glare), for tests and the stats panel
      candidatesSent: 0,
      candidatesReceived: 0,
      candidateErrors: [],
      startedAt: performance.now(),
      connectedAt: null,
    };
    state.peers.set(id, peer);
    const local = state.localStream;
    for (const track of local ? local.getTracks() : []) {
      const sending = track.kind === "video" && state.usingScreen && state.screenStream
        ? state.screenStream.getVideoTracks()[0] || track
        : track;
      const sender = pc.addTrack(sending, local);
      if (track.kind === "video") {
        const t = pc.getTransceivers().find((x) => x.sender === sender);
        if (t) preferH264(t);
      }
    }
    // The impolite side makes the first offer; the polite side waits for it, so two clients
    // that see each other in the same member list do not both offer (Chromium was seen to stop
    // gathering candidates after rolling back an offer mid-gathering). A polite side offers
    // first only when it calls (callPeer), or when no offer came within 3 s (a peer that
    // reckons politeness differently). Later renegotiation is either side's.
    pc.onnegotiationneeded = () => {
      if (peer.polite && !peer.call && !pc.currentRemoteDescription) return;
      negotiate(peer);
    };
    if (polite && !call) {
      setTimeout(() => {
        if (state.peers.get(id) === peer && !pc.currentRemoteDescription) call(peer);
      }, 3000);
    }
    pc.onicecandidate = ({ candidate }) => {
      // End-of-candidates needs no message: every candidate goes out as it is found.
      if (candidate) {
        peer.candidatesSent += 1;
        sendSignal({ type: "candidate", to: id, candidate: candidate.toJSON() });
      }
    };
    pc.ontrack = ({ track, streams }) => {
      // The app sends its screen share as a second video stream of its own.
      if (streams[0]?.id === "liveloop-screen") {
        peer.screenStream = new MediaStream([track]);
        ui.render();
        return;
      }
      for (const old of peer.stream.getTracks().filter((t) => t.kind === track.kind)) {
        peer.stream.removeTrack(old);
      }
      peer.stream.addTrack(track);
      ui.render();
    };
    pc.ondatachannel = ({ channel }) => watchChannel(peer, channel);
    pc.onconnectionstatechange = () => {
      const s = pc.connectionState;
      if (s === "connected") {
        peer.connected = true;
        peer.restarts = 0;
        peer.connectedAt ??= performance.now();
        // A peer that reckons politeness differently may have brought no chat channel.
        setTimeout(() => {
          if (state.peers.get(id) === peer && !peer.dc && pc.connectionState === "connected") {
            watchChannel(peer, pc.createDataChannel("chat"));
          }
        }, 2000);
      } else if (s === "failed") {
        peer.connected = false;
        // The impolite side restarts ICE, up to three times, as the app does.
        if (!peer.polite && peer.restarts < 3) {
          peer.restarts += 1;
          pc.restartIce();
        }
      } else if (s === "closed") {
        peer.connected = false;
      }
      updateRoomState();
    };
    // The impolite side opens the channel and the polite side receives it. A polite side that
    // calls (callPeer after a hang-up) opens one too, so its offer carries the channel.
    if (!polite || call) watchChannel(peer, pc.createDataChannel("chat"));
    ui.render();
    return peer;
  }

  async function negotiate(peer) {
    const pc = peer.pc;
    try {
      peer.makingOffer = true;
      await pc.setLocalDescription();
      if (pc.localDescription?.type === "offer") {
        sendSignal({ type: "offer", to: peer.id, sdp: pc.localDescription.toJSON() });
      }
    } catch (e) {
      console.warn("offer failed", e);
    } finally {
      peer.makingOffer = false;
    }
  }

  /// Calls a member we already have a connection for that has not been negotiated yet.
  function call(peer) {
    peer.call = true;
    if (peer.pc.currentRemoteDescription || peer.pc.signalingState !== "stable") return;
    // No chat channel of our own here: the other side, which knows of us too, brings one
    // (opening ours as well made Chromium reject the data section of its answer after an
    // offer collision). A call that connects without one opens it then (see below).
    negotiate(peer);
  }

  function watchChannel(peer, channel) {
    if (channel.label !== "chat") return;
    // Messages are read from every chat channel; sends use the first one open.
    if (!peer.dc || peer.dc.readyState !== "open") peer.dc = channel;
    channel.onopen = () => {
      if (peer.dc.readyState !== "open") peer.dc = channel;
      sendData(peer.id, stateMessage());
    };
    channel.onmessage = ({ data }) => {
      let msg;
      try {
        msg = JSON.parse(data);
      } catch {
        return;
      }
      if (!msg || typeof msg !== "object") return;
      // Read as the native client reads (crates/proto/src/peer.rs): chat cut at 1000
      // characters, empty chat ignored, a field of the wrong type makes the message ignored.
      if (msg.type === "chat" && typeof msg.text === "string" && msg.text.length > 0) {
        const text = Array.from(msg.text).slice(0, 1000).join("");
        state.chat.push({ from: peer.id, name: displayName(peer.id), text, at: Date.now(), mine: false });
        ui.renderChat(true);
      } else if (msg.type === "state") {
        const typed = (k, t) => msg[k] === undefined || typeof msg[k] === t;
        if (!typed("name", "string") || !["muted", "cameraOff", "screen"].every((k) => typed(k, "boolean"))) return;
        peer.name = Array.from(msg.name ?? "").slice(0, 64).join("");
        peer.muted = msg.muted === true;
        peer.cameraOff = msg.cameraOff === true;
        peer.screen = msg.screen === true;
        ui.render();
      } else if (msg.type === "bye") {
        state.hungUp.add(peer.id);
        close(peer.id);
        ui.toast(`${displayName(peer.id)} left the call`);
        updateRoomState();
      }
    };
  }

  function stateMessage() {
    return {
      type: "state",
      name: state.name || state.myId,
      muted: state.muted,
      cameraOff: state.cameraOff,
      screen: state.usingScreen,
    };
  }

  function sendData(id, msg) {
    const dc = state.peers.get(id)?.dc;
    if (!dc || dc.readyState !== "open") return false;
    try {
      dc.send(JSON.stringify(msg));
      return true;
    } catch {
      return false;
    }
  }

  function broadcastState() {
    const msg = stateMessage();
    for (const id of state.peers.keys()) sendData(id, msg);
  }

  // Every video section of a description rejected (port 0): this browser and the other side
  // have no video codec in common (a LiveLoop app, H.264 only, meeting a browser without it,
  // whichever side rejected). Said once per call.
  function checkVideoCodec(peer, from, sdp) {
    const video = (sdp || "").split(/\r?\n/).filter((l) => l.startsWith("m=video "));
    if (peer.noVideoCodec || video.length === 0 || !video.every((l) => l.startsWith("m=video 0 "))) return;
    peer.noVideoCodec = true;
    reportError("no_video_codec",
      `${displayName(from)} and this browser have no video codec in common; the call goes on with audio and chat`);
  }

  async function onDescription(from, sdp) {
    let peer = state.peers.get(from);
    if (!peer) {
      if (sdp.type !== "offer" || !state.members.includes(from)) return;
      // A member calls us (again, after a hang-up): take the call.
      state.hungUp.delete(from);
      peer = open(from);
    }
    const pc = peer.pc;
    try {
      const collision = sdp.type === "offer" && (peer.makingOffer || pc.signalingState !== "stable");
      if (collision) peer.collisions += 1;
      peer.ignoreOffer = !peer.polite && collision;
      if (peer.ignoreOffer) return;
      await pc.setRemoteDescription(sdp); // rolls back our own offer on a collision
      checkVideoCodec(peer, from, sdp.sdp);
      for (const c of peer.pendingCandidates.splice(0)) {
        await pc.addIceCandidate(c).catch((e) => peer.candidateErrors.push(String(e.message)));
      }
      if (sdp.type === "offer") {
        await pc.setLocalDescription();
        checkVideoCodec(peer, from, pc.localDescription.sdp);
        sendSignal({ type: "answer", to: from, sdp: pc.localDescription.toJSON() });
        if (collision) watchGathering(peer);
      }
    } catch (e) {
      reportError("negotiation", `Could not set up the call with ${displayName(from)}: ${e.message}`);
    }
  }

  /// Chromium sometimes gathers no candidate at all after rolling back an offer it was still
  /// gathering for (seen in CI: an answer sent, gathering "gathering", nothing found 20 s
  /// later, and an ICE restart on the same connection found nothing either), so the call
  /// never connects. After a collision, a side that has found nothing in 2 s hangs up and
  /// calls again on a new connection: the other side sees a hang-up, then a new call.
  function watchGathering(peer) {
    const sent = peer.candidatesSent;
    setTimeout(() => {
      const pc = peer.pc;
      if (state.peers.get(peer.id) !== peer || peer.candidatesSent > sent) return;
      if (pc.connectionState === "connected" || pc.iceGatheringState === "complete") return;
      console.warn("no ICE candidates after an offer collision; calling again on a new connection");
      const { id, collisions } = peer;
      sendSignal({ type: "hangup", to: id });
      close(id);
      open(id, { call: true }).collisions = collisions;
    }, 2000);
  }

  async function onCandidate(from, candidate) {
    const peer = state.peers.get(from);
    if (!peer || !candidate || typeof candidate !== "object") return;
    peer.candidatesReceived += 1;
    if (!peer.pc.remoteDescription) {
      peer.pendingCandidates.push(candidate);
      return;
    }
    try {
      await peer.pc.addIceCandidate(candidate);
    } catch (e) {
      peer.candidateErrors.push(String(e.message));
      if (!peer.ignoreOffer) console.warn("candidate refused", e);
    }
  }

  function close(id) {
    const peer = state.peers.get(id);
    if (!peer) return;
    state.peers.delete(id);
    try {
      peer.dc?.close();
      peer.pc.close();
    } catch {
      // already closed
    }
    ui.render();
  }

  /// Replaces what every call sends as video (camera ↔ screen), without renegotiation.
  async function replaceVideo(track) {
    for (const peer of state.peers.values()) {
      for (const sender of peer.pc.getSenders()) {
        if (sender.track?.kind === "video" || (!sender.track && track)) {
          const t = peer.pc.getTransceivers().find((x) => x.sender === sender);
          if (t && t.receiver.track.kind !== "video") continue;
          await sender.replaceTrack(track).catch((e) => console.warn("replaceTrack", e));
        }
      }
    }
  }

  async function stats(peer) {
    const report = await peer.pc.getStats();
    const out = {
      state: peer.pc.connectionState,
      polite: peer.polite,
      collisions: peer.collisions,
      name: peer.name,
      setupMs: peer.connectedAt ? Math.round(peer.connectedAt - peer.startedAt) : null,
      video: {},
      audio: {},
    };
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === "codec") codecs.set(s.id, s);
    });
    report.forEach((s) => {
      if (s.type === "inbound-rtp" && (s.kind === "video" || s.kind === "audio")) {
        const o = out[s.kind];
        o.codecIn = codecs.get(s.codecId)?.mimeType ?? null;
        o.fmtpIn = codecs.get(s.codecId)?.sdpFmtpLine ?? null;
        o.packetsReceived = s.packetsReceived;
        o.packetsLost = s.packetsLost;
        o.jitterMs = s.jitter != null ? s.jitter * 1000 : null;
        if (s.kind === "video") {
          o.framesDecoded = s.framesDecoded;
          o.framesPerSecond = s.framesPerSecond ?? null;
          o.frameWidth = s.frameWidth;
          o.frameHeight = s.frameHeight;
          o.freezeCount = s.freezeCount;
          o.jitterBufferMs = s.jitterBufferEmittedCount
            ? (s.jitterBufferDelay / s.jitterBufferEmittedCount) * 1000 : null;
        } else {
          o.totalSamplesReceived = s.totalSamplesReceived;
          o.concealedSamples = s.concealedSamples;
          o.audioLevel = s.audioLevel;
          o.totalAudioEnergy = s.totalAudioEnergy;
        }
      } else if (s.type === "outbound-rtp" && (s.kind === "video" || s.kind === "audio")) {
        const o = out[s.kind];
        o.codecOut = codecs.get(s.codecId)?.mimeType ?? null;
        o.packetsSent = s.packetsSent;
        if (s.kind === "video") {
          o.framesEncoded = s.framesEncoded;
          o.framesSent = s.framesSent;
          o.sentWidth = s.frameWidth;
          o.sentHeight = s.frameHeight;
          o.sentFramesPerSecond = s.framesPerSecond ?? null;
          o.qualityLimitationReason = s.qualityLimitationReason ?? null;
          o.targetBitrate = s.targetBitrate ?? null;
          o.encoderImplementation = s.encoderImplementation;
        }
      } else if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") {
        out.rttMs = s.currentRoundTripTime != null ? s.currentRoundTripTime * 1000 : null;
      }
    });
    return out;
  }

  return {
    open, call, close, onDescription, onCandidate, sendData, broadcastState, replaceVideo, stats,
    displayName,
  };
})();
