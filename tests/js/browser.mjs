// A real browser peer for LiveLoop's interop tests: Debian's Chromium, headless, with fake
// camera and microphone, driven by playwright-core (or Firefox ESR: BROWSER=firefox, below). The Rust test talks to this process in
// JSON lines: each request on stdin gets one reply on stdout with the same `id`, in the order
// they finish.
//
//   {"id":1,"op":"open","page":"a","url":"http://127.0.0.1:8080/r/room"}
//   {"id":2,"op":"eval","page":"a","expr":"return state.roomState"}   (an async function body)
//   {"id":3,"op":"wait","page":"a","expr":"return state.peers.size === 1","timeoutMs":20000}
//   {"id":4,"op":"download","page":"a","expr":"return stopRecording()","dir":"/tmp/x"}
//   {"id":5,"op":"screenshot","page":"a","path":"/tmp/a.png"}
//   {"id":6,"op":"close","page":"a"}
// Replies: {"id":…,"ok":true,"value":…} or {"id":…,"ok":false,"error":"…"}.
//
// Environment: CHROMIUM (default /usr/bin/chromium), FAKE_AUDIO (a WAV the microphone plays,
// looped), FAKE_VIDEO (a Y4M the camera plays), BROWSER_LOG (a file for the pages' console),
// EXTRA_ARGS (a JSON array of more Chromium flags), BYPASS_CSP=1 (let evaluated code load
// worklets from blob: URLs, for the quality harness's instrumentation).
import { chromium } from "playwright-core";
import { createInterface } from "node:readline";
import { mkdtempSync, appendFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const args = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
  "--allow-loopback-in-peer-connection",
  "--autoplay-policy=no-user-gesture-required",
  // Pages in background tabs keep full-rate timers and rendering.
  "--disable-background-timer-throttling",
  "--disable-renderer-backgrounding",
  "--disable-backgrounding-occluded-windows",
];
if (process.env.FAKE_AUDIO) args.push(`--use-file-for-fake-audio-capture=${process.env.FAKE_AUDIO}`);
if (process.env.EXTRA_ARGS) args.push(...JSON.parse(process.env.EXTRA_ARGS));
if (process.env.FAKE_VIDEO) args.push(`--use-file-for-fake-video-capture=${process.env.FAKE_VIDEO}`);

// BROWSER=firefox: Debian's Firefox ESR instead, driven by puppeteer-core over WebDriver BiDi,
// with fake devices by prefs. Firefox has no pipe transport: run this whole driver inside a
// network namespace when Firefox must be in one. INSECURE_ORIGIN (host:port) lets a page served
// over plain HTTP from another address use the camera (a secure origin otherwise).
const firefox = process.env.BROWSER === "firefox";

async function launchFirefox() {
  const { default: puppeteer } = await import("puppeteer-core");
  const profile = mkdtempSync(join(tmpdir(), "liveloop-firefox-"));
  const browser = await puppeteer.launch({
    browser: "firefox",
    protocol: "webDriverBiDi",
    executablePath: process.env.FIREFOX || "/usr/bin/firefox-esr",
    headless: true,
    userDataDir: profile,
    extraPrefsFirefox: {
      "media.navigator.streams.fake": true,
      "media.navigator.permission.disabled": true,
      "media.peerconnection.ice.loopback": true,
      "media.peerconnection.ice.obfuscate_host_addresses": false,
      "media.autoplay.default": 0,
      "media.autoplay.blocking_policy": 0,
      "media.devices.insecure.enabled": true,
      "media.getusermedia.insecure.enabled": true,
      "dom.securecontext.allowlist": process.env.INSECURE_ORIGIN?.split(":")[0] ?? "",
      "browser.shell.checkDefaultBrowser": false,
      "datareporting.policy.dataSubmissionEnabled": false,
      "app.update.enabled": false,
    },
  });
  return { newPage: () => browser.newPage(), close: () => browser.close() };
}

const profile = mkdtempSync(join(tmpdir(), "liveloop-chromium-"));
const context = firefox
  ? await launchFirefox()
  : await chromium.launchPersistentContext(profile, {
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      headless: true,
      args,
      acceptDownloads: true,
      bypassCSP: process.env.BYPASS_CSP === "1",
      viewport: { width: 1280, height: 720 },
    });
const pages = new Map();
const log = process.env.BROWSER_LOG;

function reply(msg) {
  process.stdout.write(JSON.stringify(msg) + "\n");
}

function page(name) {
  const p = pages.get(name);
  if (!p) throw new Error(`no page ${name}`);
  return p;
}

const run = (p, expr) => p.evaluate(`(async () => { ${expr} })()`);

async function handle(req) {
  switch (req.op) {
    case "open": {
      const p = await context.newPage();
      if (log) {
        p.on("console", (m) => appendFileSync(log, `[${req.page}] ${m.type()}: ${m.text()}\n`));
        p.on("pageerror", (e) => appendFileSync(log, `[${req.page}] pageerror: ${e.message}\n`));
        p.on("response", (r) => {
          if (r.status() >= 400) appendFileSync(log, `[${req.page}] HTTP ${r.status()} ${r.url()}\n`);
        });
      }
      await p.goto(req.url);
      pages.set(req.page, p);
      return null;
    }
    case "eval":
      return run(page(req.page), req.expr);
    case "wait": {
      const deadline = Date.now() + (req.timeoutMs ?? 20000);
      let last;
      for (;;) {
        last = await run(page(req.page), req.expr);
        if (last) return last;
        if (Date.now() > deadline) throw new Error(`timed out waiting for: ${req.expr} (last: ${JSON.stringify(last)})`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    case "download": {
      if (firefox) throw new Error("download is implemented for Chromium only");
      const p = page(req.page);
      const [download, value] = await Promise.all([p.waitForEvent("download"), run(p, req.expr)]);
      const path = join(req.dir, download.suggestedFilename());
      await download.saveAs(path);
      return { path, size: statSync(path).size, value };
    }
    case "screenshot":
      await page(req.page).screenshot({ path: req.path });
      return null;
    case "close": {
      await page(req.page).close();
      pages.delete(req.page);
      return null;
    }
    default:
      throw new Error(`unknown op ${req.op}`);
  }
}

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  if (!line.trim()) continue;
  let req;
  try {
    req = JSON.parse(line);
  } catch (e) {
    reply({ id: null, ok: false, error: `bad request: ${e.message}` });
    continue;
  }
  // Requests run concurrently (a test may wait on one page while it acts on another).
  handle(req).then(
    (value) => reply({ id: req.id, ok: true, value: value ?? null }),
    (e) => reply({ id: req.id, ok: false, error: String(e?.message ?? e) }),
  );
}
await context.close();
