// The desktop page: noVNC connected to daas's relay, the clipboard, full screen, who is in
// control and who is connected, asking for control and answering such a request (kept
// live from the session's event stream). The relay enforces control; the page only
// mirrors it so a viewer's keys are not even sent.
import RFB from "/static/vendor/novnc/core/rfb.js";

const root = document.getElementById("desktop");
// Only ever used in URLs: encoded once, as a path segment.
const id = encodeURIComponent(root.dataset.session);
const csrf = root.dataset.csrf;
const status = document.getElementById("desktop-status");
const clipboard = document.getElementById("clipboard");
const screen = document.getElementById("screen");

const scheme = location.protocol === "https:" ? "wss:" : "ws:";
// When the desktop does not let daas in (a burst of viewers, a desktop still starting),
// the relay answers 503 with Retry-After: 2 (a browser hides it from scripts): try again.
const RETRY_S = 2;
const TRIES = 5;
let rfb;
let failures = 0;
let ended = false;

function connect() {
  rfb = new RFB(screen, `${scheme}//${location.host}/sessions/${id}/desktop/ws`);
  rfb.resizeSession = true;
  rfb.viewOnly = true;
  window.daasRfb = rfb;
  rfb.addEventListener("connect", () => {
    failures = 0;
    status.textContent = "Connected";
    rfb.focus();
    refreshControl();
  });
  rfb.addEventListener("disconnect", async (e) => {
    if (ended) return;
    if (e.detail.clean) {
      // Closed by daas: the session ended, or this person's access did.
      const still = await fetch(`/api/v1/sessions/${id}/control`);
      if (still.status === 404) {
        lostAccess();
      } else {
        status.textContent = "Disconnected";
      }
    } else if (++failures <= TRIES) {
      status.textContent = `The desktop does not answer; trying again in ${RETRY_S} s (${failures} of ${TRIES})`;
      setTimeout(connect, RETRY_S * 1000);
    } else {
      status.textContent = "Connection lost; reload to reconnect";
    }
  });
  rfb.addEventListener("clipboard", (e) => { clipboard.value = e.detail.text; });
}

connect();
clipboard.addEventListener("change", () => rfb.clipboardPasteFrom(clipboard.value));
document.getElementById("fullscreen").addEventListener("click", () => screen.requestFullscreen());

const el = (name) => document.getElementById(name);
const controller = el("controller");
const handover = el("handover");
const handoverUser = el("handover-user");
const ROLE_WORDS = { owner: "owner", user: "may control", guest: "watching", support: "beamline support", admin: "admin" };

/** This person was removed (or lost their account): nothing on the page works any more. */
function lostAccess() {
  ended = true;
  events.close();
  status.textContent = "You no longer have access to this session";
  for (const name of ["request-control", "request-waiting", "handover", "control-request", "view-only"]) {
    el(name).hidden = true;
  }
  controller.textContent = "—";
  el("connected").textContent = "—";
}

async function refreshControl() {
  if (ended) return;
  const response = await fetch(`/api/v1/sessions/${id}/control`);
  if (response.status === 404) return lostAccess();
  if (!response.ok) return;
  const control = await response.json();
  controller.textContent = control.controller + (control.you_control ? " (you)" : "");
  rfb.viewOnly = !control.you_control;
  el("view-only").hidden = control.role !== "guest";
  handover.hidden = !control.may_hand_over;
  handoverUser.replaceChildren(...control.candidates.map((name) => {
    const option = document.createElement("option");
    option.value = option.textContent = name;
    option.selected = name === control.controller;
    return option;
  }));
  // The owner takes control back in one press.
  el("take-back").hidden = !(control.role === "owner" && !control.you_control);
  const mine = control.requested_by !== null && control.requested_by === me();
  el("request-control").hidden = !control.may_request || mine;
  el("request-waiting").hidden = !mine;
  const prompt = el("control-request");
  prompt.hidden = !control.may_answer;
  if (control.may_answer) {
    el("control-request-text").textContent = `${control.requested_by} asks for control of the desktop.`;
  }
  el("connected").textContent = control.connected.length === 0 ? "nobody"
    : control.connected.map((v) => `${v.display_name} (${ROLE_WORDS[v.role] ?? v.role})`).join(", ");
}

// The caller's username, as the page was rendered for them.
const me = () => root.dataset.user;

async function send(method, path, body) {
  await fetch(`/api/v1/sessions/${id}/${path}`, {
    method,
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  refreshControl();
}

el("handover-button").addEventListener("click", () => send("PUT", "control", { user: handoverUser.value }));
el("take-back").addEventListener("click", () => send("PUT", "control", { user: me() }));
el("request-control").addEventListener("click", () => send("POST", "control/request"));
el("control-accept").addEventListener("click", () => send("POST", "control/answer", { accept: true }));
el("control-decline").addEventListener("click", () => send("POST", "control/answer", { accept: false }));

const events = new EventSource(`/api/v1/sessions/${id}/events`);
events.addEventListener("session", (e) => {
  const event = JSON.parse(e.data);
  if (event.state === "stopped" || event.state === "failed") {
    ended = true;
    status.textContent = `The desktop has ${event.state}`;
    events.close();
    // Nothing to stop any more: the way back to the session's page instead.
    const back = document.createElement("a");
    back.href = `/sessions/${id}`;
    back.className = "button";
    back.textContent = "Back to the session";
    document.querySelector(".desktop-bar form")?.replaceWith(back);
  }
  refreshControl();
});
refreshControl();
