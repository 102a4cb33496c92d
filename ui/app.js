// LiveLoop UI: static ES module, no bundler. It only talks to the Rust side through Tauri
// commands; media never passes through here (see ARCHITECTURE.md).

const invoke = window.__TAURI__?.core?.invoke
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
  toastTimer = setTimeout(() => { el.hidden = true; }, 4000);
}

let settings = { displayName: "", matchmakingUrl: "", roomsUrl: "" };

function render() {
  $("display-name").value = settings.displayName;
  $("greeting-name").textContent = settings.displayName ? `, ${settings.displayName}` : "";
  $("matchmaking-url").value = settings.matchmakingUrl;
  $("rooms-url").value = settings.roomsUrl;
}

async function save(next) {
  try {
    settings = await invoke("save_settings", { settings: next });
    render();
    toast("Saved");
  } catch (e) {
    toast(e?.message ?? String(e), true);
  }
}

async function start() {
  for (const nav of document.querySelectorAll(".nav")) {
    nav.addEventListener("click", () => showView(nav.dataset.view));
  }
  $("save-name").addEventListener("click", () => save({ ...settings, displayName: $("display-name").value }));
  $("display-name").addEventListener("keydown", (e) => { if (e.key === "Enter") $("save-name").click(); });
  $("settings-form").addEventListener("submit", (e) => {
    e.preventDefault();
    save({ ...settings, matchmakingUrl: $("matchmaking-url").value, roomsUrl: $("rooms-url").value });
  });
  showView("home");
  try {
    settings = await invoke("get_settings");
    render();
    const status = await invoke("app_status");
    const s = status.servers;
    const where = s.embedded ? "built-in servers on this computer" : "your configured servers";
    const el = $("server-status");
    el.className = "ok";
    el.textContent = `Ready — ${where}: matchmaking ${s.matchmakingUrl}, rooms ${s.roomsUrl} (v${status.version})`;
  } catch (e) {
    const el = $("server-status");
    el.className = "bad";
    el.textContent = e?.message ?? String(e);
  }
}

start();
