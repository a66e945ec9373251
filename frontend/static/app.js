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
