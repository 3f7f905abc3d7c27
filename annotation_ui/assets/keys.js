() => {
  // Keyboard shortcuts click the matching button, so keys and mouse take the same path.
  const ACTIONS = {
    "1": "choose-left", "ArrowLeft": "choose-left",
    "2": "choose-right", "ArrowRight": "choose-right",
    "3": "choose-tie", "4": "choose-both-bad", "5": "choose-cant-tell",
    "s": "skip", "u": "undo",
  };
  // Answers by button: a key pressed for one of them while the server is away is queued, not lost.
  const ANSWERS = new Map([
    ["choose-left", "left"], ["choose-right", "right"], ["choose-tie", "tie"], ["choose-both-bad", "both_bad"],
    ["choose-cant-tell", "cant_tell"], ["skip", "skip"],
  ]);
  const ZOOMS = [1, 2, 4, 8];
  // A key this soon after typing is typing too (typing "a(1) b(2)" on the page once stored two
  // judgements; "soft edges under 5 lights" must record and skip nothing).
  const TYPING_PAUSE_MS = 1500;
  // A letter shortcut waits this long and acts only if no other key follows: then it was a
  // word's first letter ("soft" must not skip, "of" must not toggle the outline). d is exempt:
  // it only moves the typing into the description box, where the rest of a word belongs anyway.
  const LETTER_HOLD_MS = 400;
  const root = document.documentElement;
  let zoom = 1, panX = 0, panY = 0, latched = false, spaceHeld = false, outlineShown = true;
  let lastTyped = -Infinity, heldLetter = null, drag = null;
  let shownPair = null, shownAt = performance.now();
  // The answer sent last (until its pair leaves the screen), one answer waiting for the server,
  // and whether the server answers.
  let pending = null, queued = null, sending = false, connection = "ok", restarted = false;

  // The page's id: its lease belongs to it. Kept across reloads of this tab (sessionStorage),
  // new in every other tab.
  function pageId() {
    let id = sessionStorage.getItem("srprefs-page");
    if (!id) {
      id = Date.now().toString(36) + Math.random().toString(36).slice(2, 12);
      sessionStorage.setItem("srprefs-page", id);
    }
    return id;
  }

  // What the server needs with every event (sent by VIEW_JS in app.py).
  window.srprefsView = () => ({
    page: pageId(),
    pair: shownPair,
    swapped: latched !== spaceHeld,
    zoom,
    outline: outlineShown,
    ms: Math.round(performance.now() - shownAt),
    visible: document.visibilityState === "visible",
  });

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
    const panel = document.querySelector(".panel");
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

  function describeBox() {
    return document.querySelector("#description textarea, #description input");
  }

  // Typed descriptions live in the browser until submitted, so a reload (after a server restart)
  // never loses them.
  const draftKey = (pair) => `srprefs-draft:${pair}`;
  function restoreDraft() {
    const box = describeBox(), draft = shownPair && localStorage.getItem(draftKey(shownPair));
    if (box && draft && !box.value) {
      box.value = draft;
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
  }
  document.addEventListener("input", (event) => {
    if (shownPair && event.target === describeBox()) localStorage.setItem(draftKey(shownPair), event.target.value);
  });

  // Every pair opens in the default view (no flicker, 1x, outline on): a view carried over
  // from the last pair would make "1" mean the candidate the person did not see on the left.
  // The admin's review view (its own pair, the same keys) resets the same way.
  let reviewedPair = null;
  function onPairShown() {
    const viewer = document.getElementById("viewer"), review = document.getElementById("review-viewer");
    const pair = viewer && viewer.dataset.pair ? viewer.dataset.pair : null;
    const reviewed = review ? review.dataset.pair : null;
    if (pair === shownPair && reviewed === reviewedPair) return;
    if (pair !== shownPair) {
      if (shownPair) localStorage.removeItem(draftKey(shownPair));  // judged or skipped
      shownPair = pair;
      shownAt = performance.now();
      pending = null;
      if (pair) setTimeout(restoreDraft, 60);  // after Gradio has written the server's text
    }
    reviewedPair = reviewed;
    zoom = 1; panX = 0; panY = 0; latched = false; outlineShown = true;
    if (heldLetter) { clearTimeout(heldLetter); heldLetter = null; }
    applyView();
  }
  new MutationObserver(onPairShown).observe(document.body, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-pair"],
  });

  function isTyping(target) {
    return target && (target.tagName === "TEXTAREA" || target.tagName === "INPUT" ||
                      target.tagName === "SELECT" || target.isContentEditable);
  }

  function press(id) {
    const button = document.getElementById(id);
    if (!button || button.disabled || button.offsetParent === null) return;
    if (ANSWERS.has(id) && (connection !== "ok" || restarted)) {
      if (queued) {
        hint("Not sent: an answer is already waiting for the server. It goes out when the server is back.");
      } else {
        queued = { id, pair: shownPair };
        if (connection === "ok") sendQueued();
        else hint("The server is away: your answer is queued and will be sent when it is back.");
      }
      return;
    }
    if (ANSWERS.has(id)) pending = { id, pair: shownPair };
    button.click();
  }

  function viewKey(key) {
    if (key === "f") latched = !latched;
    else if (key === "z") {
      zoom = ZOOMS[(ZOOMS.indexOf(zoom) + 1) % ZOOMS.length];
      if (zoom === 1) { panX = 0; panY = 0; }
    } else if (key === "o") outlineShown = !outlineShown;
    else { press(ACTIONS[key]); return; }
    applyView();
  }
  const LETTERS = new Set(["f", "z", "o", "d", "s", "u"]);

  function typed(now) {
    lastTyped = now;
    if (heldLetter) { clearTimeout(heldLetter); heldLetter = null; }
    hint("Typing? Press d to write in the description box. Shortcuts pause while you type.");
  }

  document.addEventListener("keydown", (event) => {
    const target = event.target;
    if (isTyping(target)) {
      // Escape leaves the description box, so the next key is a shortcut again (at once: leaving
      // the box is deliberate, not stray typing).
      if (event.key === "Escape") {
        target.blur();
        lastTyped = -Infinity;
      }
      return;
    }
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const now = performance.now();
    const key = event.key.length === 1 ? event.key.toLowerCase() : event.key;
    const typing = heldLetter !== null || now - lastTyped < TYPING_PAUSE_MS;
    if (event.key === " ") {
      event.preventDefault();
      if (typing) { typed(now); return; }
      if (!spaceHeld) { spaceHeld = true; applyView(); }
      return;
    }
    if (event.repeat) return;
    const shortcut = LETTERS.has(key) || ACTIONS[event.key];
    if (!shortcut) {
      if (event.key.length === 1) typed(now);
      return;
    }
    if (typing) { typed(now); return; }
    event.preventDefault();
    if (key === "d") {
      const box = describeBox();
      if (box) box.focus();
      return;
    }
    if (LETTERS.has(key)) {
      heldLetter = setTimeout(() => { heldLetter = null; viewKey(key); }, LETTER_HOLD_MS);
      return;
    }
    press(ACTIONS[event.key]);
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

  // After a server restart or a lost connection, one clear notice instead of errors everywhere;
  // an answer sent into the outage, or pressed during it, goes out once the server is back.
  const base = window.location.pathname.replace(/[^/]*$/, "");
  let appId = null;
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
  // A queued answer goes out by plain HTTP (the page's Gradio connection does not survive a
  // server restart), with the text in the box; then the page reloads onto its next pair.
  async function sendQueued() {
    const waiting = queued;
    if (!waiting) return;
    if (waiting.pair !== shownPair) {
      queued = null;
      hint("Your queued answer was for a pair no longer on screen: not sent.");
      return;
    }
    const box = describeBox(), about = document.querySelector("#about input:checked");
    const body = {
      choice: ANSWERS.get(waiting.id), description: box ? box.value : "", about: about ? about.value : "both",
      view: { ...window.srprefsView(), pair: waiting.pair },
    };
    if (sending) return;
    sending = true;
    let result;
    try {
      const response = await fetch(`${base}srprefs/answer`, {
        method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      });
      // A server still starting answers before its routes and logins are in place: try again.
      if (!response.ok) return;
      result = await response.json();
    } catch (error) {
      return;  // still away: it stays queued for the next try
    } finally {
      sending = false;
    }
    queued = null;
    if (result.ok) {
      localStorage.removeItem(draftKey(waiting.pair));
      hint("Your queued answer was recorded. Loading your next pair…");
      window.location.reload();
    } else {
      banner("reload", `Your queued answer was not recorded: ${result.error}. Reload the page.`);
    }
  }
  async function poll() {
    try {
      const response = await fetch(`${base}gradio_api/app_id`, { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error(String(response.status));
      const id = (await response.json()).app_id;
      if (appId === null) appId = id;
      const was = connection;
      connection = "ok";
      if (queued) sendQueued();
      if (id !== appId) {
        if (!restarted) banner("reload", "The server restarted. Reload the page when convenient: your judgements and typed text are kept.");
        restarted = true;
      } else if (was !== "ok") {
        banner("ok");
      }
    } catch (error) {
      restarted = false;
      if (connection === "ok" && pending && pending.pair === shownPair && !queued) {
        // Sent just before the outage and no answer came: send it again once the server is back
        // (a second copy of a recorded answer is refused with a message, never stored twice).
        queued = pending;
        pending = null;
      }
      connection = "lost";
      banner("lost", "Connection to the server lost. Reconnecting… (your judgements so far are saved; an answer you press now is queued)");
    }
  }
  poll();
  setInterval(poll, 1000);
}
