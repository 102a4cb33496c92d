// Camera, microphone, screen share and recording.
//
// Every call sends one audio and one video track. Without a camera or microphone (or without
// permission) the page still joins: it sends a black video track and a silent audio track, and
// shows itself as camera off / muted, so the others' media still arrives and the call can be
// renegotiation-free when a device comes back.
"use strict";

var media = (() => {
  let placeholder = null; // {ctx, canvas, timer}
  let recording = null; // {canvas, timer, ctx, resolve}

  function placeholderTracks(needVideo, needAudio) {
    placeholder ??= {};
    const tracks = [];
    if (needVideo) {
      const canvas = document.createElement("canvas");
      canvas.width = 640;
      canvas.height = 360;
      const g = canvas.getContext("2d");
      const paint = () => {
        g.fillStyle = "#000";
        g.fillRect(0, 0, canvas.width, canvas.height);
      };
      paint();
      placeholder.timer = setInterval(paint, 1000);
      tracks.push(canvas.captureStream(1).getVideoTracks()[0]);
    }
    if (needAudio) {
      placeholder.ctx = new AudioContext();
      tracks.push(placeholder.ctx.createMediaStreamDestination().stream.getAudioTracks()[0]);
    }
    return tracks;
  }

  /// Opens the camera and microphone once per join (asking permission), falling back to
  /// placeholders for whatever is missing.
  async function ensureLocal() {
    if (state.localStream) return state.localStream;
    let stream = null;
    try {
      stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true },
        video: state.videoConstraints
          || { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      });
    } catch (e) {
      try {
        stream = await navigator.mediaDevices.getUserMedia({ audio: true });
        ui.toast(`No camera (${e.name}): others see your name instead`, true);
      } catch (e2) {
        ui.toast(`No camera or microphone (${e2.name}): you can still see and hear the others`, true);
      }
    }
    stream ??= new MediaStream();
    const hasVideo = stream.getVideoTracks().length > 0;
    const hasAudio = stream.getAudioTracks().length > 0;
    for (const t of placeholderTracks(!hasVideo, !hasAudio)) stream.addTrack(t);
    state.cameraOff = state.cameraOff || !hasVideo;
    state.muted = state.muted || !hasAudio;
    state.hasCamera = hasVideo;
    state.hasMicrophone = hasAudio;
    state.localStream = stream;
    applyFlags();
    ui.render();
    return stream;
  }

  function stopLocal() {
    stopScreenShare();
    for (const t of state.localStream?.getTracks() ?? []) t.stop();
    state.localStream = null;
    if (placeholder) {
      clearInterval(placeholder.timer);
      placeholder.ctx?.close();
      placeholder = null;
    }
    ui.render();
  }

  /// Mute and camera-off disable the tracks: the others get silence and black frames at once,
  /// and the data channel tells them why (their tile shows the badge).
  function applyFlags() {
    for (const t of state.localStream?.getAudioTracks() ?? []) t.enabled = !state.muted;
    for (const t of state.localStream?.getVideoTracks() ?? []) t.enabled = !state.cameraOff;
  }

  async function startScreenShare() {
    if (state.usingScreen) return true;
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({
        video: { frameRate: { ideal: 15, max: 30 } },
        audio: false,
      });
    } catch (e) {
      ui.toast(`Screen share did not start (${e.name})`, true);
      return false;
    }
    const track = stream.getVideoTracks()[0];
    if (!track) return false;
    // Text stays legible: keep the resolution, drop the frame rate when bandwidth is short.
    track.contentHint = "detail";
    track.onended = () => stopScreenShare();
    state.screenStream = stream;
    state.usingScreen = true;
    await rtc.replaceVideo(track);
    rtc.broadcastState();
    ui.render();
    return true;
  }

  async function stopScreenShare() {
    if (!state.usingScreen) return false;
    for (const t of state.screenStream?.getTracks() ?? []) t.stop();
    state.screenStream = null;
    state.usingScreen = false;
    await rtc.replaceVideo(state.localStream?.getVideoTracks()[0] ?? null);
    rtc.broadcastState();
    ui.render();
    return true;
  }

  function pickMime() {
    const kinds = [
      "video/webm;codecs=vp8,opus",
      "video/webm;codecs=vp9,opus",
      "video/webm",
      "video/mp4",
    ];
    return kinds.find((k) => MediaRecorder.isTypeSupported(k)) || "";
  }

  /// Records the call as the page shows it: every participant in a gallery (the screen share,
  /// when there is one, gets the large area) and everyone's audio mixed, yours included.
  function startRecording() {
    if (state.recorder) return true;
    const canvas = document.createElement("canvas");
    canvas.width = 1280;
    canvas.height = 720;
    const g = canvas.getContext("2d");
    const draw = () => {
      g.fillStyle = "#0f172a";
      g.fillRect(0, 0, canvas.width, canvas.height);
      const tiles = ui.recordingTiles();
      const big = tiles.find((t) => t.screen);
      const rest = tiles.filter((t) => t !== big);
      let area = { x: 0, y: 0, w: canvas.width, h: canvas.height };
      if (big) {
        drawTile(g, big, { x: 0, y: 0, w: canvas.width * 0.75, h: canvas.height });
        area = { x: canvas.width * 0.75, y: 0, w: canvas.width * 0.25, h: canvas.height };
      }
      const n = Math.max(1, rest.length);
      const cols = big ? 1 : Math.ceil(Math.sqrt(n));
      const rows = Math.ceil(n / cols);
      rest.forEach((t, i) => {
        const w = area.w / cols;
        const h = big ? Math.min(area.h / n, w * 9 / 16) : area.h / rows;
        drawTile(g, t, { x: area.x + (i % cols) * w, y: area.y + Math.floor(i / cols) * h, w, h });
      });
    };
    draw();
    const timer = setInterval(draw, 1000 / 30);
    const ctx = new AudioContext();
    const mix = ctx.createMediaStreamDestination();
    const sources = [];
    const addAudio = (stream) => {
      if (stream && stream.getAudioTracks().length) {
        const s = ctx.createMediaStreamSource(stream);
        s.connect(mix);
        sources.push(s);
      }
    };
    addAudio(state.localStream);
    for (const p of state.peers.values()) addAudio(p.stream);
    const out = new MediaStream([...canvas.captureStream(30).getVideoTracks(), ...mix.stream.getAudioTracks()]);
    const mimeType = pickMime();
    let recorder;
    try {
      recorder = new MediaRecorder(out, mimeType ? { mimeType } : undefined);
    } catch (e) {
      clearInterval(timer);
      ctx.close();
      ui.toast(`Recording is not available here (${e.name})`, true);
      return false;
    }
    state.recordedChunks = [];
    recorder.ondataavailable = ({ data }) => {
      if (data.size) state.recordedChunks.push(data);
    };
    recording = { timer, ctx, started: new Date(), mimeType: recorder.mimeType || "video/webm" };
    recorder.start(1000);
    state.recorder = recorder;
    ui.render();
    return true;
  }

  function drawTile(g, tile, r) {
    g.fillStyle = "#1e293b";
    g.fillRect(r.x + 2, r.y + 2, r.w - 4, r.h - 4);
    const v = tile.video;
    if (v && v.videoWidth && !tile.cameraOff) {
      const s = Math.min((r.w - 4) / v.videoWidth, (r.h - 4) / v.videoHeight);
      const w = v.videoWidth * s;
      const h = v.videoHeight * s;
      g.drawImage(v, r.x + (r.w - w) / 2, r.y + (r.h - h) / 2, w, h);
    }
    g.fillStyle = "#e2e8f0";
    g.font = "16px system-ui, sans-serif";
    g.fillText(tile.label + (tile.muted ? " (muted)" : ""), r.x + 10, r.y + r.h - 12);
  }

  /// Stops the recording and downloads the file. Resolves to {name, size, type}.
  function stopRecording() {
    const recorder = state.recorder;
    if (!recorder || !recording) return Promise.resolve(null);
    const rec = recording;
    recording = null;
    return new Promise((resolve) => {
      recorder.onstop = () => {
        clearInterval(rec.timer);
        rec.ctx.close();
        const type = rec.mimeType.split(";")[0];
        const blob = new Blob(state.recordedChunks, { type });
        const stamp = rec.started.toISOString().slice(0, 19).replace(/[T:]/g, "-");
        const ext = type.includes("mp4") ? "mp4" : "webm";
        const name = `LiveLoop ${state.roomId || "call"} ${stamp}.${ext}`;
        const a = document.createElement("a");
        a.href = URL.createObjectURL(blob);
        a.download = name;
        document.body.appendChild(a);
        a.click();
        a.remove();
        setTimeout(() => URL.revokeObjectURL(a.href), 60000);
        state.recorder = null;
        state.lastRecording = { name, size: blob.size, type };
        ui.toast(`Recording saved as “${name}”`);
        ui.render();
        resolve(state.lastRecording);
      };
      recorder.stop();
    });
  }

  return { ensureLocal, stopLocal, applyFlags, startScreenShare, stopScreenShare, startRecording, stopRecording };
})();
