// daas: the little JavaScript our pages need beyond htmx. No inline scripts anywhere
// (the Content-Security-Policy forbids them), so behaviour hangs off data attributes.
"use strict";

// <button data-copy="#id">: copies the text of #id (for example a new API token).
document.addEventListener("click", (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (source && navigator.clipboard) {
    navigator.clipboard.writeText(source.textContent.trim()).then(() => { button.textContent = "Copied"; });
  }
});

// <div id="live" data-follow="/api/v1/sessions/ID/events" data-refresh="/sessions/ID/live">:
// redrawn from the server each time the session has an event, until it has ended (the part
// drawn then has no data-follow). EventSource resumes by itself after a restart of daas.
let following = null;
function follow() {
  const live = document.querySelector("[data-follow]");
  if (following && following.url !== live?.dataset.follow) {
    following.source.close();
    following = null;
  }
  if (!live || following) return;
  const source = new EventSource(live.dataset.follow);
  let redraw = null;
  source.addEventListener("session", () => {
    // A burst of events (the history, when the stream opens) is one redraw.
    clearTimeout(redraw);
    redraw = setTimeout(() => {
      const now = document.querySelector("[data-follow]");
      if (now) htmx.ajax("GET", now.dataset.refresh, { target: `#${now.id}`, swap: "outerHTML" });
    }, 150);
  });
  following = { url: live.dataset.follow, source };
}
document.addEventListener("DOMContentLoaded", follow);
document.addEventListener("htmx:afterSettle", follow);

// The launch form's parameters: a field with data-when="param.X" data-when-values="a b" is
// shown (and sent) only while X has one of those values; a dataset choice
// (data-datasets-of="experiment") offers the chosen experiment's datasets only. Without
// JavaScript every field and dataset shows, and the server checks what is sent.
function applyParameterRules() {
  for (const field of document.querySelectorAll("[data-when]")) {
    const control = document.querySelector(`[name="${field.dataset.when}"]`);
    const shown = !control || field.dataset.whenValues.split(" ").includes(control.value);
    field.hidden = !shown;
    for (const input of field.querySelectorAll("input, select")) input.disabled = !shown;
  }
  for (const choice of document.querySelectorAll("[data-datasets-of]")) {
    const experiment = document.getElementById(choice.dataset.datasetsOf)?.value;
    for (const group of choice.querySelectorAll("optgroup")) {
      const ours = group.dataset.experiment === experiment;
      group.hidden = !ours;
      group.disabled = !ours;
    }
    if (choice.selectedOptions[0]?.parentElement?.disabled) {
      const first = choice.querySelector("optgroup:not([disabled]) option");
      choice.value = first ? first.value : "";
    }
  }
}
document.addEventListener("change", (event) => {
  if (event.target.closest("#launch-form")) applyParameterRules();
});
document.addEventListener("DOMContentLoaded", applyParameterRules);
