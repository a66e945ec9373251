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

// A part of a page that follows sessions live, redrawn from the server each time one of
// them changes: <div id="live" data-follow="/api/v1/sessions/ID/events"
// data-refresh="/sessions/ID/live"> (one session, until it has ended: the part drawn then
// has no data-follow), or data-follow="/api/v1/sessions/changes?..." for a list of many
// (My sessions, the admin's and a beamline's lists: one stream for all). data-swap says
// whether the fragment is the element itself (outerHTML, the default) or its content.
// Ticked boxes stay ticked; a redraw waits while a field in the part is being typed in.
// EventSource resumes by itself after a restart of daas.
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
  const schedule = () => {
    // A burst of events (the history, when the stream opens) is one redraw.
    clearTimeout(redraw);
    redraw = setTimeout(refresh, 150);
  };
  const refresh = () => {
    const now = document.querySelector("[data-follow]");
    if (!now) return;
    const typing = now.contains(document.activeElement) && document.activeElement.matches("input:not([type=checkbox]), textarea, select");
    if (typing) {
      document.activeElement.addEventListener("blur", schedule, { once: true });
      return;
    }
    const ticked = [...now.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    const swap = now.dataset.swap || "outerHTML";
    htmx.ajax("GET", now.dataset.refresh, { target: `#${now.id}`, swap }).then(() => {
      for (const box of document.querySelectorAll(`#${now.id} input[type=checkbox]`)) {
        if (ticked.includes(box.value)) box.checked = true;
      }
    });
  };
  source.addEventListener("session", schedule);
  source.addEventListener("change", schedule);
  following = { url: live.dataset.follow, source };
}
// A refused form comes back with its message above it (#form-error); where the message
// names a field (data-field, the control's name), it goes next to that field, which says
// it is invalid and is described by it (aria-invalid, aria-describedby), and takes the
// focus. Among controls of the same name (the quotas table) the refused row's is meant.
function placeFormError() {
  const error = document.querySelector("#form-error[data-field]:not([data-placed])");
  if (!error) return;
  const controls = [...document.querySelectorAll(`[name="${CSS.escape(error.dataset.field)}"]`)]
    .filter((c) => c.type !== "hidden");
  const control = controls.find((c) => c.closest(".refused")) ?? controls.find((c) => c.closest("form")) ?? controls[0];
  if (!control) return;
  error.dataset.placed = "true";
  error.classList.add("field-error");
  control.insertAdjacentElement("afterend", error);
  control.setAttribute("aria-invalid", "true");
  control.setAttribute("aria-describedby", error.id);
  control.focus();
}
document.addEventListener("DOMContentLoaded", placeFormError);

// A wide table folds into one block per row where the page is narrow (app.css): each
// cell is labelled with its column's heading.
function labelCells() {
  for (const table of document.querySelectorAll("table.fold")) {
    const headings = [...table.querySelectorAll("thead th")].map((th) => th.innerText.replace(/\s+/g, " ").trim());
    for (const row of table.querySelectorAll("tbody tr")) {
      [...row.children].forEach((cell, n) => {
        if (cell.tagName === "TD" && headings[n] && !cell.dataset.label) cell.dataset.label = headings[n];
      });
    }
  }
}
document.addEventListener("DOMContentLoaded", labelCells);
document.addEventListener("htmx:afterSettle", labelCells);

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
