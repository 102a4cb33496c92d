// One video tile: frames arrive as binary I420 over the app's loopback WebSocket, already
// scaled to the tile's size by the native side; the newest one is drawn with a WebGL YUV shader
// once per animation frame. Older frames are simply replaced.

const VERTEX = `
attribute vec2 pos;
varying vec2 uv;
void main() {
  uv = vec2((pos.x + 1.0) / 2.0, (1.0 - pos.y) / 2.0);
  gl_Position = vec4(pos, 0.0, 1.0);
}`;

// BT.601 limited range, as the encoder and camera paths produce.
const FRAGMENT = `
precision mediump float;
varying vec2 uv;
uniform sampler2D ty, tu, tv;
void main() {
  float y = 1.1643 * (texture2D(ty, uv).r - 0.0625);
  float u = texture2D(tu, uv).r - 0.5;
  float v = texture2D(tv, uv).r - 0.5;
  gl_FragColor = vec4(y + 1.5958 * v, y - 0.39173 * u - 0.81290 * v, y + 2.017 * u, 1.0);
}`;

function shader(gl, type, source) {
  const s = gl.createShader(type);
  gl.shaderSource(s, source);
  gl.compileShader(s);
  if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(gl.getShaderInfoLog(s));
  return s;
}

export class TileVideo {
  constructor(canvas, endpoint, id) {
    this.canvas = canvas;
    this.id = id;
    this.frames = 0; // frames drawn
    this.received = 0;
    this.pending = null;
    this.closed = false;
    // No preserved drawing buffer (it costs frames under software GL): checksums are taken
    // right after a draw, when asked for.
    const gl = canvas.getContext("webgl", { preserveDrawingBuffer: false, antialias: false });
    if (!gl) throw new Error("WebGL is not available");
    this.gl = gl;
    const program = gl.createProgram();
    gl.attachShader(program, shader(gl, gl.VERTEX_SHADER, VERTEX));
    gl.attachShader(program, shader(gl, gl.FRAGMENT_SHADER, FRAGMENT));
    gl.linkProgram(program);
    gl.useProgram(program);
    const buf = gl.createBuffer();
    gl.bindBuffer(gl.ARRAY_BUFFER, buf);
    gl.bufferData(gl.ARRAY_BUFFER, new Float32Array([-1, -1, 1, -1, -1, 1, 1, 1]), gl.STATIC_DRAW);
    const pos = gl.getAttribLocation(program, "pos");
    gl.enableVertexAttribArray(pos);
    gl.vertexAttribPointer(pos, 2, gl.FLOAT, false, 0, 0);
    this.textures = ["ty", "tu", "tv"].map((name, i) => {
      const t = gl.createTexture();
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, t);
      for (const [k, v] of [[gl.TEXTURE_MIN_FILTER, gl.LINEAR], [gl.TEXTURE_MAG_FILTER, gl.LINEAR],
        [gl.TEXTURE_WRAP_S, gl.CLAMP_TO_EDGE], [gl.TEXTURE_WRAP_T, gl.CLAMP_TO_EDGE]]) {
        gl.texParameteri(gl.TEXTURE_2D, k, v);
      }
      gl.uniform1i(gl.getUniformLocation(program, name), i);
      return t;
    });
    gl.pixelStorei(gl.UNPACK_ALIGNMENT, 1);
    this.endpoint = endpoint;
    this.connect();
    this.resizeObserver = new ResizeObserver(() => this.sendSize());
    this.resizeObserver.observe(canvas.parentElement);
    const tick = () => {
      if (this.closed) return;
      if (this.pending) {
        this.draw(this.pending);
        this.pending = null;
      }
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }

  size() {
    const r = this.canvas.parentElement.getBoundingClientRect();
    const scale = window.devicePixelRatio || 1;
    return [Math.max(16, Math.round(r.width * scale)), Math.max(16, Math.round(r.height * scale))];
  }

  connect() {
    const [w, h] = this.size();
    const ws = new WebSocket(`${this.endpoint}&id=${encodeURIComponent(this.id)}&w=${w}&h=${h}`);
    ws.binaryType = "arraybuffer";
    ws.onmessage = (e) => {
      this.received += 1;
      this.pending = e.data;
    };
    ws.onclose = () => {
      // The server restarts nothing on its own; reconnect while the tile lives.
      if (!this.closed) setTimeout(() => this.connect(), 500);
    };
    this.ws = ws;
  }

  sendSize() {
    if (this.ws?.readyState === WebSocket.OPEN) {
      const [w, h] = this.size();
      this.ws.send(JSON.stringify({ w, h }));
    }
  }

  draw(buffer) {
    const gl = this.gl;
    const head = new DataView(buffer, 0, 8);
    const w = head.getUint32(0, true);
    const h = head.getUint32(4, true);
    const cw = w >> 1;
    const ch = h >> 1;
    if (buffer.byteLength < 8 + w * h + 2 * cw * ch) return;
    if (this.canvas.width !== w || this.canvas.height !== h) {
      this.canvas.width = w;
      this.canvas.height = h;
    }
    gl.viewport(0, 0, w, h);
    const planes = [
      [new Uint8Array(buffer, 8, w * h), w, h],
      [new Uint8Array(buffer, 8 + w * h, cw * ch), cw, ch],
      [new Uint8Array(buffer, 8 + w * h + cw * ch, cw * ch), cw, ch],
    ];
    planes.forEach(([data, pw, ph], i) => {
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, this.textures[i]);
      gl.texImage2D(gl.TEXTURE_2D, 0, gl.LUMINANCE, pw, ph, 0, gl.LUMINANCE, gl.UNSIGNED_BYTE, data);
    });
    gl.drawArrays(gl.TRIANGLE_STRIP, 0, 4);
    if (this.wantChecksum) {
      this.wantChecksum = false;
      this.lastChecksum = this.readChecksum();
    }
    this.frames += 1;
    this.canvas.parentElement.classList.add("has-video");
  }

  // A checksum of the picture: the one taken after the latest draw that followed the previous
  // request (tests ask, wait, and compare two to see the picture move).
  checksum() {
    this.wantChecksum = true;
    return this.lastChecksum ?? null;
  }

  readChecksum() {
    const gl = this.gl;
    const w = this.canvas.width;
    const h = this.canvas.height;
    const px = new Uint8Array(w * h * 4);
    gl.readPixels(0, 0, w, h, gl.RGBA, gl.UNSIGNED_BYTE, px);
    let sum = 0;
    for (let i = 0; i < px.length; i += 4) sum = (sum * 31 + px[i] + px[i + 1] * 7 + px[i + 2] * 13) >>> 0;
    return sum;
  }

  close() {
    this.closed = true;
    this.resizeObserver.disconnect();
    this.ws?.close();
  }
}
