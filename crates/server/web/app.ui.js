// The page: pre-join card, gallery, controls, members and chat. Rendering reads `state` only.
"use strict";

var ui = (() => {
  const $ = (id) => document.getElementById(id);
  const tiles = new Map(); // id → {el, video, audio, label, badges}
  let toastTimer = null;
  let unread = 0;

  function roomFromPath() {
    const m = location.pathname.match(/^\/r\/([^/?#]+)\/?$/);
    return m ? decodeURIComponent(m[1]) : "";
  }

  function init() {
    const room = roomFromPath();
    const params = new URLSearchParams(location.search);
    $("room").value = room;
    $("room-row").hidden = Boolean(room);
    $("prejoin-title").textContent = room ? `Join “${room}”` : "Join a room";
    $("name").value = params.get("name") || localStorage.getItem("liveloop.name") || "";
    // Opened over plain HTTP from another computer: no camera here, but the servers speak
    // HTTPS too (the LiveLoop app's built-in ones): say so, and where.
    if (!window.isSecureContext && window.LIVELOOP_HTTPS_PORT) {
      const secure = new URL(location.href);
      secure.protocol = "https:";
      secure.port = String(window.LIVELOOP_HTTPS_PORT);
      $("secure-link").href = secure.href;
      $("insecure").hidden = false;
    }
    $("join-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.name = $("name").value.trim().slice(0, 64);
      localStorage.setItem("liveloop.name", state.name);
      connect($("room").value, params.get("id") || undefined);
    });
    $("mute").addEventListener("click", () => toggleMute());
    $("camera").addEventListener("click", () => toggleCamera());
    $("screen").addEventListener("click", () => (state.usingScreen ? stopScreenShare() : startScreenShare()));
    $("record").addEventListener("click", () => (state.recorder ? stopRecording() : startRecording()));
    $("leave").addEventListener("click", () => disconnect());
    $("chat-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const text = $("chat-input").value;
      if (sendChat(text) >= 0 && text.trim()) $("chat-input").value = "";
    });
    $("copy-link").addEventListener("click", async () => {
      try {
        await navigator.clipboard.writeText(location.href);
        toast("Link copied");
      } catch {
        toast("Copy the address bar to invite others");
      }
    });
    document.addEventListener("keydown", (e) => {
      if (e.target.closest("input, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
      if (state.roomState === "idle") return;
      if (e.key === "m") toggleMute();
      else if (e.key === "v") toggleCamera();
    });
    render();
  }

  function toast(text, error = false) {
    const el = $("toast");
    if (!el) return;
    el.textContent = text;
    el.className = error ? "error" : "";
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => (el.hidden = true), error ? 6000 : 3000);
  }

  function tile(id, { local = false } = {}) {
    let t = tiles.get(id);
    if (t) return t;
    const el = document.createElement("figure");
    el.className = "tile";
    el.dataset.id = id;
    const video = document.createElement("video");
    video.autoplay = true;
    video.playsInline = true;
    video.muted = true; // sound plays through the <audio> element (never our own)
    const caption = document.createElement("figcaption");
    const label = document.createElement("span");
    const badges = document.createElement("span");
    badges.className = "badges";
    caption.append(label, badges);
    el.append(video, caption);
    let audio = null;
    if (!local) {
      audio = document.createElement("audio");
      audio.autoplay = true;
      el.append(audio);
    }
    $("tiles").append(el);
    t = { el, video, audio, label, badges };
    tiles.set(id, t);
    return t;
  }

  function setStream(media, stream) {
    if (media && media.srcObject !== stream) {
      media.srcObject = stream;
      media.play?.().catch(() => {});
    }
  }

  function badgesText(muted, cameraOff, screen) {
    return [muted && "Muted", cameraOff && "Camera off", screen && "Presenting"].filter(Boolean).join(" · ");
  }

  function render() {
    if (!$("prejoin")) return;
    const inRoom = state.roomState !== "idle";
    $("prejoin").hidden = inRoom;
    $("call").hidden = !inRoom;
    $("room-name").textContent = state.roomId || "";
    $("room-state").textContent = state.roomState;
    $("room-state").dataset.state = state.roomState;
    $("banner").hidden = state.roomState !== "reconnecting";
    const roomForLink = state.roomId || $("room").value.trim();
    $("open-app").href = roomForLink
      ? `liveloop://join/${encodeURIComponent(roomForLink)}?server=${location.protocol === "https:" ? "wss:" : "ws:"}//${location.host}/ws`
      : "liveloop://";
    $("mute").textContent = state.muted ? "Unmute" : "Mute";
    $("mute").setAttribute("aria-pressed", String(state.muted));
    $("mute").disabled = state.hasMicrophone === false;
    $("camera").textContent = state.cameraOff ? "Start video" : "Stop video";
    $("camera").setAttribute("aria-pressed", String(state.cameraOff));
    $("camera").disabled = state.hasCamera === false;
    $("screen").textContent = state.usingScreen ? "Stop sharing" : "Share screen";
    $("screen").hidden = !navigator.mediaDevices?.getDisplayMedia;
    $("record").textContent = state.recorder ? "Stop recording" : "Record";
    $("record").classList.toggle("recording", Boolean(state.recorder));
    if (!inRoom) {
      for (const [, t] of tiles) t.el.remove();
      tiles.clear();
      return;
    }
    // Our own tile first, then one per call.
    const me = tile("self", { local: true });
    setStream(me.video, state.usingScreen ? state.screenStream : state.localStream);
    me.el.classList.toggle("mirror", !state.usingScreen);
    me.label.textContent = `${state.name || state.myId} (you)`;
    me.badges.textContent = badgesText(state.muted, state.cameraOff, state.usingScreen);
    me.el.classList.toggle("off", state.cameraOff && !state.usingScreen);
    for (const [id, peer] of state.peers) {
      const t = tile(`peer:${id}`);
      setStream(t.video, peer.stream);
      setStream(t.audio, peer.stream);
      t.label.textContent = peer.name || id;
      t.badges.textContent = peer.connected ? badgesText(peer.muted, peer.cameraOff, peer.screen) : "Connecting…";
      t.el.classList.toggle("off", peer.cameraOff);
      t.el.classList.toggle("presenting", peer.screen);
    }
    for (const [id, peer] of state.peers) {
      // An app peer's screen share: its own tile, first and full width, while it shares.
      const key = `screen:${id}`;
      if (peer.screen && peer.screenStream) {
        const t = tile(key);
        setStream(t.video, peer.screenStream);
        t.label.textContent = `${peer.name || id}'s screen`;
        t.badges.textContent = "";
        t.el.classList.add("presenting");
        if ($("tiles").firstChild !== t.el) $("tiles").prepend(t.el);
      } else if (tiles.has(key)) {
        tiles.get(key).el.remove();
        tiles.delete(key);
      }
    }
    for (const [key, t] of tiles) {
      if (key.startsWith("screen:")) {
        if (!state.peers.get(key.slice(7))?.screen) {
          t.el.remove();
          tiles.delete(key);
        }
        continue;
      }
      if (key !== "self" && !state.peers.has(key.slice(5))) {
        t.el.remove();
        tiles.delete(key);
      }
    }
    $("tiles").dataset.count = String(tiles.size);
    renderMembers();
  }

  function renderMembers() {
    const list = $("members");
    list.replaceChildren();
    for (const id of state.members) {
      if (id === state.myId) continue;
      const peer = state.peers.get(id);
      const li = document.createElement("li");
      const name = document.createElement("span");
      name.textContent = peer?.name || id;
      const button = document.createElement("button");
      if (peer) {
        button.textContent = "Hang up";
        button.addEventListener("click", () => hangupPeer(id));
      } else {
        button.textContent = "Call";
        button.addEventListener("click", () => callPeer(id));
      }
      button.setAttribute("aria-label", `${button.textContent} ${name.textContent}`);
      li.append(name, button);
      list.append(li);
    }
    $("members-empty").hidden = state.members.length > 1;
  }

  function renderChat(incoming = false) {
    const list = $("messages");
    list.replaceChildren(
      ...state.chat.slice(-200).map((m) => {
        const li = document.createElement("li");
        li.className = m.mine ? "mine" : "";
        const who = document.createElement("strong");
        who.textContent = m.mine ? "You" : m.name;
        const text = document.createElement("span");
        text.textContent = m.text;
        li.append(who, text);
        return li;
      }),
    );
    list.scrollTop = list.scrollHeight;
    if (incoming && document.hidden) {
      unread += 1;
      document.title = `(${unread}) LiveLoop`;
    }
  }

  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) {
      unread = 0;
      document.title = "LiveLoop";
    }
  });

  /// What the recorder draws: every tile's video element and caption.
  function recordingTiles() {
    const out = [];
    const me = tiles.get("self");
    if (me) {
      out.push({ video: me.video, label: state.name || "You", muted: state.muted,
        cameraOff: state.cameraOff && !state.usingScreen, screen: state.usingScreen });
    }
    for (const [id, peer] of state.peers) {
      const t = tiles.get(`peer:${id}`);
      const shared = tiles.get(`screen:${id}`);
      if (shared) out.push({ video: shared.video, label: `${peer.name || id}'s screen`, screen: true });
      if (t) out.push({ video: t.video, label: peer.name || id, muted: peer.muted, cameraOff: peer.cameraOff, screen: peer.screen && !shared });
    }
    return out;
  }

  return { init, render, renderChat, toast, recordingTiles };
})();
