() => {
  // Keyboard shortcuts click the matching button, so keys and mouse take the same path.
  const ACTIONS = {
    "1": "choose-left", "ArrowLeft": "choose-left",
    "2": "choose-right", "ArrowRight": "choose-right",
    "3": "choose-tie", "4": "choose-both-bad", "5": "choose-cant-tell",
    "s": "skip", "S": "skip", "u": "undo", "U": "undo",
  };
  const ZOOMS = [1, 2, 4, 8];
  // A shortcut this soon after a key that is no shortcut is stray typing, not a judgement
  // (typing "a(1) b(2)" on the page once stored two judgements).
  const TYPING_PAUSE_MS = 1500;
  // An action key this soon after a view key (f, z, o) is typing too ("fur" must not undo).
  const BURST_MS = 200;
  const root = document.documentElement;
  let zoom = 1, panX = 0, panY = 0, latched = false, spaceHeld = false, outlineShown = true;
  let lastStray = -Infinity, lastPrintable = -Infinity, drag = null;

  // The page's floating messages (key hints, connection banner): made once, reused after.
  function floatingBox(id, role) {
    let box = document.getElementById(id);
    if (!box) {
      box = document.createElement("div");
      box.id = id;
      box.setAttribute("role", role);
      document.body.appendChild(box);
    }
    return box;
  }

  function hint(text) {
    const box = floatingBox("key-hint", "status");
    box.textContent = text;
    box.classList.add("shown");
    clearTimeout(box.hideTimer);
    box.hideTimer = setTimeout(() => box.classList.remove("shown"), 3500);
  }

  function applyView() {
    const limit = (size) => Math.max(0, (zoom - 1) * size / 2);
    const panel = document.getElementById("panel-left");
    const width = panel ? panel.clientWidth : 0, height = panel ? panel.clientHeight : 0;
    panX = Math.max(-limit(width), Math.min(limit(width), panX));
    panY = Math.max(-limit(height), Math.min(limit(height), panY));
    root.style.setProperty("--zoom", String(zoom));
    root.style.setProperty("--zoom-label", `"${zoom}\u00d7"`);
    root.style.setProperty("--pan-x", `${panX}px`);
    root.style.setProperty("--pan-y", `${panY}px`);
    const flipped = latched !== spaceHeld;
    root.style.setProperty("--own-visibility", flipped ? "hidden" : "visible");
    root.style.setProperty("--other-visibility", flipped ? "visible" : "hidden");
    root.style.setProperty("--outline-display", outlineShown ? "block" : "none");
  }
  applyView();

  function isTyping(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" ||
                      target.tagName === "SELECT" || target.isContentEditable);
  }

  function describeBox() {
    return document.querySelector("#description textarea, #description input");
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (isTyping(target)) {
      // Escape leaves the description box, so the next key is a shortcut again (at once: leaving
      // the box is deliberate, not stray typing).
      if (event.key === "Escape") {
        target.blur();
        lastStray = lastPrintable = -Infinity;
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const now = performance.now();
    const printable = event.key.length === 1;
    const burst = now - lastPrintable < BURST_MS;
    if (printable && !ACTIONS[event.key]) lastPrintable = now;
    if (event.key === " ") {
      event.preventDefault();
      if (!spaceHeld) { spaceHeld = true; applyView(); }
      return;
    }
    if (event.repeat) return;
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    if (key === "f") { latched = !latched; applyView(); return; }
    if (key === "z") {
      zoom = ZOOMS[(ZOOMS.indexOf(zoom) + 1) % ZOOMS.length];
      if (zoom === 1) { panX = 0; panY = 0; }
      applyView();
      return;
    }
    if (key === "o") { outlineShown = !outlineShown; applyView(); return; }
    if (key === "d") {
      const box = describeBox();
      if (box) { event.preventDefault(); box.focus(); }
      return;
    }
    const id = ACTIONS[event.key];
    if (!id) {
      if (printable) {
        lastStray = now;
        hint("Typing? Press d to write in the description box. Shortcuts pause while you type.");
      }
      return;
    }
    if (burst || now - lastStray < TYPING_PAUSE_MS) {
      lastStray = now;
      hint("Ignored: that looked like typing. Press d to write a description, then Esc.");
      return;
    }
    const button = document.getElementById(id);
    if (button && !button.disabled && button.offsetParent !== null) {
      event.preventDefault();
      button.click();
    }
  });

  document.addEventListener("keyup", (event) => {
    if (event.key !== " " || isTyping(event.target)) return;
    // A focused button would take the Space as a click: it is the flicker key here.
    event.preventDefault();
    if (spaceHeld) { spaceHeld = false; applyView(); }
  });
  window.addEventListener("blur", () => { if (spaceHeld) { spaceHeld = false; applyView(); } });

  // Drag either panel to pan both (they share one transform).
  document.addEventListener("mousedown", (event) => {
    const panel = event.target.closest && event.target.closest(".panel");
    if (!panel || zoom === 1) return;
    drag = { x: event.clientX, y: event.clientY, panX, panY };
    event.preventDefault();
  });
  document.addEventListener("mousemove", (event) => {
    if (!drag) return;
    panX = drag.panX + event.clientX - drag.x;
    panY = drag.panY + event.clientY - drag.y;
    applyView();
  });
  document.addEventListener("mouseup", () => { drag = null; });

  // After a server restart or a lost connection, one clear notice instead of errors everywhere.
  const base = window.location.pathname.replace(/[^/]*$/, "");
  let appId = null, state = "ok";
  function banner(kind, text) {
    const box = floatingBox("connection-banner", "alert");
    if (kind === "ok") { box.remove(); root.style.removeProperty("--server-errors"); return; }
    root.style.setProperty("--server-errors", "hidden");
    box.className = kind;
    box.innerHTML = "";
    const message = document.createElement("span");
    message.textContent = text;
    box.appendChild(message);
    if (kind === "reload") {
      const button = document.createElement("button");
      button.id = "reload-page";
      button.textContent = "Reload";
      button.addEventListener("click", () => window.location.reload());
      box.appendChild(button);
    }
  }
  async function poll() {
    try {
      const response = await fetch(`${base}gradio_api/app_id`, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const id = (await response.json()).app_id;
      if (appId === null) appId = id;
      if (id !== appId) {
        state = "reload";
        banner("reload", "The server restarted. Please reload the page: your judgements are saved and you stay logged in.");
      } else if (state !== "ok") {
        state = "ok";
        banner("ok");
      }
    } catch (error) {
      if (state === "reload") return;
      state = "lost";
      banner("lost", "Connection to the server lost. Reconnecting… (your judgements so far are saved)");
    }
  }
  poll();
  setInterval(poll, 2000);
}
