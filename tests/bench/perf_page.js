// What the quality harness (`liveloop-bench-quality`) adds to a browser-client page to measure
// Chromium's own WebRTC the way `liveloop-cli` measures the native engine. It is evaluated
// in the page before joining and defines `window.perf`:
//   perf.join(room, id)   join the room (the page's own connect()), timing from this call
//   perf.leave()          hang up and leave (the page's own disconnect())
//   perf.setup()          {connectedMs, firstFrameMs} of the latest join, once both happened
//   perf.collect()        everything measured since the last collect, then forgets it
//
// What it watches, all with Unix-epoch milliseconds (performance.timeOrigin + now(), one clock
// for every page and process on the machine):
// - every video frame the camera gives the page (a MediaStreamTrackProcessor on a clone of the
//   local track), by the stamp the harness wrote into its fake-camera clip;
// - every remote video frame as it leaves the decoder (a MediaStreamTrackProcessor on the
//   received track): its stamp, its time, and once every 2 s its luma plane;
// - the 2.4 kHz timing marks in the local microphone and in each remote audio track, and the
//   remote audio itself (for PESQ), through an AudioWorklet.
"use strict";
(() => {
  if (window.perf) return;
  const wall = () => performance.timeOrigin + performance.now();
  const STAMP_COLS = 36;
  const STAMP_BITS = 72;

  function crc8(bytes) {
    let crc = 0x5a;
    for (const b of bytes) {
      crc ^= b;
      for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
    }
    return crc;
  }

  // The stamp in the top-left corner (liveloop_media::synthetic::read_stamp, in JavaScript),
  // where the sender may have scaled the picture down: blocks are 16 pixels of the clip's
  // width (`P.clipWidth`), so `16 * width / clipWidth` of what arrives.
  async function readStamp(frame) {
    const { width, height } = frame.visibleRect;
    const clip = P.clipWidth || width;
    const b = ((clip >= STAMP_COLS * 16 ? 16 : 8) * width) / clip;
    if (b < 4 || 2 * b > height) return null;
    // Rectangles for I420 copies start and end on even pixels.
    const rect = {
      x: frame.visibleRect.x,
      y: frame.visibleRect.y,
      width: Math.min(2 * Math.ceil((STAMP_COLS * b) / 2), width & ~1),
      height: Math.min(2 * Math.ceil(b) + 2, height) & ~1,
    };
    const buf = new Uint8Array(frame.allocationSize({ rect }));
    const layout = await frame.copyTo(buf, { rect });
    const { offset, stride } = layout[0];
    const bytes = new Uint8Array(9);
    for (let i = 0; i < STAMP_BITS; i++) {
      const col = i % STAMP_COLS;
      const row = Math.floor(i / STAMP_COLS);
      // The block's inner half, away from edges the codec and the scaler smear.
      const x0 = Math.round(col * b + b / 4);
      const x1 = Math.max(x0 + 1, Math.round(col * b + (3 * b) / 4));
      const y0 = Math.round(row * b + b / 4);
      const y1 = Math.max(y0 + 1, Math.round(row * b + (3 * b) / 4));
      let sum = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) sum += buf[offset + y * stride + x];
      }
      if (sum / ((x1 - x0) * (y1 - y0)) > 125) bytes[i >> 3] |= 1 << (7 - (i % 8));
    }
    if (crc8(bytes.subarray(0, 8)) !== bytes[8]) return null;
    const view = new DataView(bytes.buffer);
    return { number: view.getUint32(0), captureMs: view.getUint32(4) };
  }

  async function lumaBase64(frame) {
    const { width, height } = frame.visibleRect;
    const buf = new Uint8Array(frame.allocationSize());
    const layout = await frame.copyTo(buf);
    const { offset, stride } = layout[0];
    const y = new Uint8Array(width * height);
    const x0 = frame.visibleRect.x;
    const y0 = frame.visibleRect.y;
    for (let row = 0; row < height; row++) {
      const start = offset + (row + y0) * stride + x0;
      y.set(buf.subarray(start, start + width), row * width);
    }
    let s = "";
    for (let i = 0; i < y.length; i += 0x8000) s += String.fromCharCode.apply(null, y.subarray(i, i + 0x8000));
    return { width, height, luma: btoa(s) };
  }

  const P = {
    t0: null, // wall time of the latest join
    joinedAt: null, // performance.now() of the latest join
    firstFrame: null, // wall time of the first remote frame since the latest join
    sent: [], // [stamp number, wall ms] for each camera frame
    recv: {}, // peer id → {frames: [[number, wall ms]], samples: [{number, width, height, luma}]}
    marksSent: [], // wall ms of each timing mark in the microphone
    marksRecv: {}, // peer id → wall ms of each timing mark heard
    audio: {}, // peer id → [Float32Array] of the remote audio
    sampleRate: 48000,
    errors: [],
    diag: { pumped: 0, stamped: 0, stampMs: 0 }, // frames read, stamps found, ms spent reading
    ctx: null,
    tapped: new WeakSet(),
    clipWidth: 0, // the width the senders' camera gives (stamps scale with the picture)
    sendSeries: [], // [wall ms, kbit/s sent over the last second, estimate kbit/s], each second
  };
  window.perf = P;

  // Every frame of a video track, as it becomes available.
  async function pump(track, onFrame) {
    const reader = new MediaStreamTrackProcessor({ track }).readable.getReader();
    for (;;) {
      const { value: frame, done } = await reader.read();
      if (done) return;
      const at = wall();
      try {
        await onFrame(frame, at);
      } catch (e) {
        P.errors.push(String(e));
      } finally {
        frame.close();
      }
    }
  }

  function peerOf(pc) {
    for (const [id, peer] of state.peers) if (peer.pc === pc) return id;
    return null;
  }

  function tapRemoteVideo(id, track) {
    const r = (P.recv[id] ??= { frames: [], samples: [], lastSample: 0 });
    pump(track, async (frame, at) => {
      P.firstFrame ??= at;
      P.diag.pumped += 1;
      const t = performance.now();
      const stamp = await readStamp(frame);
      P.diag.stampMs += performance.now() - t;
      if (!stamp) return;
      P.diag.stamped += 1;
      r.frames.push([stamp.number, at, frame.visibleRect.width, frame.visibleRect.height]);
      if (at - r.lastSample >= 2000) {
        r.lastSample = at;
        r.samples.push({ number: stamp.number, ...(await lumaBase64(frame)) });
      }
    });
  }

  const WORKLET = `
    class Tap extends AudioWorkletProcessor {
      constructor(options) {
        super();
        this.keep = options.processorOptions.keep;
        this.coeff = 2 * Math.cos(2 * Math.PI * 2400 / sampleRate);
        this.quietBlocks = 1000;
        this.peak = 0.02;
        this.chunk = [];
        this.chunkLen = 0;
      }
      process(inputs) {
        const ch = inputs[0] && inputs[0][0];
        if (!ch) return true;
        // Goertzel at 2.4 kHz over this 128-sample block: the mark's amplitude.
        let s1 = 0, s2 = 0;
        for (let i = 0; i < ch.length; i++) {
          const s0 = ch[i] + this.coeff * s1 - s2;
          s2 = s1;
          s1 = s0;
        }
        const amp = 2 * Math.sqrt(Math.max(0, s1 * s1 + s2 * s2 - this.coeff * s1 * s2)) / ch.length;
        if (amp > 0.3 * this.peak && this.quietBlocks > 150) {
          this.port.postMessage({ mark: currentTime });
          this.quietBlocks = 0;
        } else if (amp < 0.15 * this.peak) {
          this.quietBlocks += 1;
        }
        if (amp > this.peak) this.peak = Math.min(amp, 1);
        if (this.keep) {
          this.chunk.push(new Float32Array(ch));
          this.chunkLen += ch.length;
          if (this.chunkLen >= 4800) {
            const out = new Float32Array(this.chunkLen);
            let o = 0;
            for (const c of this.chunk) { out.set(c, o); o += c.length; }
            this.port.postMessage({ audio: out }, [out.buffer]);
            this.chunk = [];
            this.chunkLen = 0;
          }
        }
        return true;
      }
    }
    registerProcessor("liveloop-tap", Tap);`;

  async function audioContext() {
    if (P.ctx) return P.ctx;
    const ctx = new AudioContext({ sampleRate: 48000 });
    await ctx.audioWorklet.addModule(URL.createObjectURL(new Blob([WORKLET], { type: "text/javascript" })));
    await ctx.resume();
    P.sampleRate = ctx.sampleRate;
    P.ctx = ctx;
    return ctx;
  }

  // Context time → wall clock, through the context's own output timestamp.
  function ctxToWall(ctx, t) {
    const ts = ctx.getOutputTimestamp();
    return performance.timeOrigin + ts.performanceTime + (t - ts.contextTime) * 1000;
  }

  async function tapAudio(track, onMark, onAudio) {
    const ctx = await audioContext();
    const src = ctx.createMediaStreamSource(new MediaStream([track]));
    const node = new AudioWorkletNode(ctx, "liveloop-tap", { processorOptions: { keep: !!onAudio } });
    node.port.onmessage = ({ data }) => {
      if (data.mark !== undefined) onMark(ctxToWall(ctx, data.mark));
      if (data.audio && onAudio) onAudio(data.audio);
    };
    // A silent sink keeps the graph pulling.
    const mute = ctx.createGain();
    mute.gain.value = 0;
    src.connect(node).connect(mute).connect(ctx.destination);
  }

  function onTrack(pc, { track, streams }) {
    if (streams[0]?.id === "liveloop-screen") return;
    // The page adds its peers before it answers; look the id up once the event has run.
    setTimeout(() => {
      const id = peerOf(pc);
      if (!id) return;
      if (track.kind === "video") tapRemoteVideo(id, track);
      else {
        tapAudio(
          track,
          (at) => (P.marksRecv[id] ??= []).push(at),
          (pcm) => (P.audio[id] ??= []).push(pcm),
        ).catch((e) => P.errors.push(String(e)));
      }
    }, 0);
  }

  // The native client draws nothing; so that both measure the call and not the page, the
  // page's video elements are not drawn either (the frames are still decoded and read).
  const style = document.createElement("style");
  style.textContent = "video { display: none !important; }";
  document.head.append(style);

  const Native = window.RTCPeerConnection;
  window.RTCPeerConnection = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("track", (e) => onTrack(this, e));
    }
  };

  function tapLocal() {
    const stream = state.localStream;
    if (!stream || P.tapped.has(stream)) return;
    P.tapped.add(stream);
    const video = stream.getVideoTracks()[0];
    if (video) {
      pump(video.clone(), async (frame, at) => {
        const stamp = await readStamp(frame);
        if (stamp) P.sent.push([stamp.number, at]);
      });
    }
    const audio = stream.getAudioTracks()[0];
    if (audio) tapAudio(audio.clone(), (at) => P.marksSent.push(at)).catch((e) => P.errors.push(String(e)));
  }

  // Every video sender is capped at `P.maxBitrate` (bit/s), as the native client is, so both
  // stacks spend the same bits.
  P.maxBitrate = 0;
  setInterval(() => {
    if (!P.maxBitrate) return;
    for (const peer of state.peers.values()) {
      for (const sender of peer.pc.getSenders()) {
        if (sender.track?.kind !== "video" || sender.capped === P.maxBitrate) continue;
        const params = sender.getParameters();
        if (!params.encodings?.length) continue;
        params.encodings[0].maxBitrate = P.maxBitrate;
        sender.capped = P.maxBitrate;
        sender.setParameters(params).catch((e) => P.errors.push(String(e)));
      }
    }
  }, 200);

  P.join = async (room, id) => {
    P.t0 = wall();
    P.joinedAt = performance.now();
    P.firstFrame = null;
    const joined = connect(room, id);
    await joined;
    tapLocal();
    return true;
  };

  P.leave = () => {
    hangupAll();
    disconnect();
    return true;
  };

  P.setup = () => {
    let connectedAt = null;
    for (const peer of state.peers.values()) if (peer.connectedAt != null) connectedAt = peer.connectedAt;
    if (connectedAt == null || P.firstFrame == null) return null;
    return { connectedMs: connectedAt - P.joinedAt, firstFrameMs: P.firstFrame - P.t0 };
  };

  function pcmBase64(chunks) {
    let n = 0;
    for (const c of chunks) n += c.length;
    const pcm = new Int16Array(n);
    let o = 0;
    for (const c of chunks) {
      for (let i = 0; i < c.length; i++) pcm[o++] = Math.max(-32768, Math.min(32767, Math.round(c[i] * 32767)));
    }
    const bytes = new Uint8Array(pcm.buffer);
    let s = "";
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  }

  // What this page sends, second by second, and Chromium's own estimate (the selected pair's
  // availableOutgoingBitrate): the harness's send plot and step recovery for Chromium.
  let lastSent = null;
  setInterval(async () => {
    let bytes = 0;
    let estimate = 0;
    try {
      for (const peer of state.peers.values()) {
        if (!peer.pc) continue;
        const stats = await peer.pc.getStats();
        for (const r of stats.values()) {
          if (r.type === "outbound-rtp") bytes += r.bytesSent + (r.headerBytesSent || 0);
          if (r.type === "candidate-pair" && r.nominated && r.availableOutgoingBitrate) {
            estimate = Math.max(estimate, r.availableOutgoingBitrate / 1000);
          }
        }
      }
    } catch (e) {
      P.errors.push(`send sampler: ${e}`);
      return;
    }
    const now = wall();
    if (lastSent && bytes >= lastSent.bytes) {
      const kbps = ((bytes - lastSent.bytes) * 8) / (now - lastSent.at);
      P.sendSeries.push([now, kbps, estimate]);
    }
    lastSent = { at: now, bytes };
  }, 1000);

  P.collect = () => {
    const out = {
      sendSeries: P.sendSeries,
      sent: P.sent,
      recv: {},
      marksSent: P.marksSent,
      marksRecv: P.marksRecv,
      audio: {},
      sampleRate: P.sampleRate,
      errors: P.errors,
      diag: P.diag,
    };
    for (const [id, r] of Object.entries(P.recv)) out.recv[id] = { frames: r.frames, samples: r.samples };
    for (const [id, chunks] of Object.entries(P.audio)) out.audio[id] = pcmBase64(chunks);
    P.sent = [];
    P.sendSeries = [];
    P.marksSent = [];
    P.marksRecv = {};
    P.errors = [];
    for (const r of Object.values(P.recv)) {
      r.frames = [];
      r.samples = [];
    }
    P.audio = {};
    return out;
  };
})();
