// The reconstruction studio's page: asks the studio (api/...) for slices as float32 and
// draws them into a canvas with a window and level of its own.
//
// Slices: at most one request is in flight; a newer one aborts it (AbortController), and
// an answer older than the newest request is never drawn. Each slider or field change puts
// a performance mark; when its slice is drawn, a measure named "slice" runs from that mark,
// and its duration (ms) goes to window.studioTimings (the last 200), for the benchmark and
// the browser test. The shared view: a member who may control posts each settled change
// (300 ms after the last input) to api/view; a guest's changes stay on their page, which
// follows the shared view (polling api/state each second) until they touch a control.
"use strict";

(() => {
  const SETTLE_MS = 300;
  const POLL_MS = 1000;
  const TRIES = 5;
  const HISTOGRAM_BINS = 1024;

  const $ = (id) => document.getElementById(id);
  const api = (path) => new URL(path, document.baseURI).toString();

  window.studioTimings = [];
  window.studioDetail = [];

  let state = null;          // the last api/state answer
  let loadedKey = "";        // which rows the controls were set up for
  let view = null;           // what this page shows: {row, centre, filter, ...}
  let requestSeq = 0;        // the newest slice request
  let inflight = null;       // {seq, controller}
  let markSeq = 0;
  let current = null;        // the drawn slice: {data, n, min, max, sharpness, view, hist}
  let contrast = { level: 0, width: 1 };
  let settleTimer = 0;
  let touched = false;       // a guest changed their own view
  let lastLocalInput = -Infinity;  // when this page last changed its view (performance.now)
  let seenVersion = -1;      // the shared view's version this page has followed or set
  const tries = [];          // [{key, view, sharpness, thumb}]
  let imageData = null;
  let spans = null;          // per row of the slice: [x0, x1) inside the reconstruction circle

  const canControl = () => state && state.user.role !== "guest";
  const viewKey = (v) => JSON.stringify([v.row, v.centre, v.filter, v.ring_removal, v.angle_from, v.angle_to, v.algorithm]);
  const fmt = (x, digits = 2) => Number(x).toFixed(digits);
  const ownerName = () => (state.view_by && state.view_by.name) || (state.owner && state.owner.name) || "the owner";

  // One message at a time; `kind` says what clears it: "connection" (the next answer of
  // api/state), "input" (a usable value), "request" (the next slice drawn).
  let problemKind = "";
  function showProblem(text, kind = "request") {
    const p = $("problem");
    p.textContent = text || "";
    p.hidden = !text;
    problemKind = text ? kind : "";
  }
  function clearProblem(kind) {
    if (problemKind === kind) showProblem("");
  }

  async function fetchJson(path, options = {}) {
    const response = await fetch(api(path), { cache: "no-store", ...options });
    const body = await response.json().catch(() => ({}));
    if (!response.ok) {
      const message = body.error ? body.error.message : `${response.status} ${response.statusText}`;
      throw new Error(message);
    }
    return body;
  }

  // ---- state: loading, too large, failed, ready ---------------------------------------

  async function poll() {
    try {
      state = await fetchJson("api/state");
      showState();
    } catch (e) {
      showProblem(`The studio does not answer (${e.message}); trying again.`, "connection");
    }
    window.setTimeout(poll, POLL_MS);
  }

  function showState() {
    const s = state;
    $("scan-name").textContent = `${s.scan.dataset} / ${s.scan.file}`;
    const rows = s.scan.rows_loaded ? `, rows ${s.scan.rows_loaded[0]} to ${s.scan.rows_loaded[1]} in memory` : "";
    $("scan-facts").textContent = `${s.scan.angles} projections of ${s.scan.rows} rows x ${s.scan.columns} columns, `
      + `${fmt(s.scan.angle_range[0], 1)} to ${fmt(s.scan.angle_range[1], 1)} degrees${rows}; ${s.scan.device}`;
    $("who").textContent = s.user.name ? `${s.user.name} (${s.user.role})` : "";
    $("use-parameters").hidden = !canControl() || s.state !== "ready";
    $("loading").hidden = s.state !== "loading";
    $("rows-panel").hidden = !(s.state === "too_large" || s.state === "failed");
    $("studio").hidden = s.state !== "ready";
    clearProblem("connection");
    if (s.state === "loading") {
      $("load-progress").value = s.progress ? s.progress.fraction : 0;
      $("load-line").textContent = s.progress ? s.progress.line : "Loading";
      loadedKey = "";
    } else if (s.state === "too_large" || s.state === "failed") {
      showRowsPanel();
    } else if (s.state === "ready") {
      const key = `${s.scan.rows_loaded}`;
      if (key !== loadedKey) {
        loadedKey = key;
        setUpControls();
        view = { ...s.view };
        seenVersion = s.view_version;
        showView();
        requestSlice(null);
      } else {
        followShared();
      }
      showGuestNote();
    }
  }

  function showRowsPanel() {
    const s = state;
    const failed = s.state === "failed";
    $("rows-title").textContent = failed ? "Loading failed" : "The scan does not fit in memory";
    $("rows-message").textContent = s.message || "";
    $("rows-form").hidden = !canControl() || (!failed && s.memory.rows_fit === 0);
    $("rows-guest").hidden = canControl();
    const first = $("first-row");
    const last = $("last-row");
    first.max = last.max = s.scan.rows - 1;
    if (!first.value) {
      const fit = Math.max(1, Math.min(s.scan.rows, s.memory.rows_fit || s.scan.rows));
      const start = Math.max(0, Math.floor((s.scan.rows - fit) / 2));
      first.value = start;
      last.value = start + fit - 1;
    }
    $("rows-hint").textContent = `${s.memory.rows_fit} of ${s.scan.rows} rows fit `
      + `(${fmt(s.memory.per_row_bytes / 2 ** 20, 1)} MiB each).`;
  }

  $("rows-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      state = await fetchJson("api/load", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ first_row: Number($("first-row").value), last_row: Number($("last-row").value) }),
      });
      clearProblem("request");
      showState();
    } catch (e) {
      showProblem(e.message);
    }
  });

  // ---- controls ---------------------------------------------------------------------------

  function fillSelect(select, options) {
    select.replaceChildren(...options.map(({ value, label }) => {
      const o = document.createElement("option");
      o.value = value;
      o.textContent = label;
      return o;
    }));
  }

  function setUpControls() {
    const s = state;
    const last = s.scan.columns - 1;
    for (const id of ["centre-range", "centre"]) {
      $(id).min = 0;
      $(id).max = last;
    }
    const [r0, r1] = s.scan.rows_loaded;
    for (const id of ["row", "row-range"]) {
      $(id).min = r0;
      $(id).max = r1;
    }
    $("row-range").hidden = r0 === r1;
    fillSelect($("filter"), s.choices.filter.map((f) => ({ value: f, label: f === "none" ? "none (ramp only)" : f })));
    fillSelect($("ring"), s.choices.ring_removal.map((f) => ({ value: f, label: f })));
    fillSelect($("algorithm"), s.choices.algorithm.map((a) => ({ value: a.name, label: a.label })));
    for (const id of ["angle-from", "angle-to"]) {
      $(id).min = s.scan.angle_range[0];
      $(id).max = s.scan.angle_range[1];
    }
    $("centre-auto").textContent = `Automatic (${fmt(s.centre_auto)})`;
    tries.length = 0;
    showTries();
  }

  function showView() {
    $("centre-range").value = view.centre;
    $("centre").value = view.centre;
    $("row").value = view.row;
    $("row-range").value = view.row;
    $("filter").value = view.filter;
    $("ring").value = view.ring_removal;
    $("angle-from").value = Number(view.angle_from.toFixed(4));
    $("angle-to").value = Number(view.angle_to.toFixed(4));
    $("algorithm").value = view.algorithm;
  }

  // The view from the controls, or null (and a message) when a value cannot be used.
  function readControls(source) {
    const next = { ...view };
    const centre = Number(source === "centre-range" ? $("centre-range").value : $("centre").value);
    const columns = state.scan.columns;
    if (!Number.isFinite(centre) || centre < 0 || centre > columns - 1) {
      showLocalProblem(`The centre must be between 0 and ${columns - 1}.`);
      return null;
    }
    next.centre = Math.round(centre * 4) / 4;
    const row = Number(source === "row-range" ? $("row-range").value : $("row").value);
    const [r0, r1] = state.scan.rows_loaded;
    if (!Number.isInteger(row) || row < r0 || row > r1) {
      showLocalProblem(`The row must be between ${r0} and ${r1}.`);
      return null;
    }
    next.row = row;
    next.filter = $("filter").value;
    next.ring_removal = $("ring").value;
    next.algorithm = $("algorithm").value;
    const from = Number($("angle-from").value);
    const to = Number($("angle-to").value);
    if (!(Number.isFinite(from) && Number.isFinite(to) && from < to)) {
      showLocalProblem("The angle range must go from a smaller to a larger angle.");
      return null;
    }
    next.angle_from = from;
    next.angle_to = to;
    showLocalProblem("");
    return next;
  }

  function showLocalProblem(text) {
    if (text) showProblem(text, "input");
    else clearProblem("input");
  }

  function onInput(event) {
    const mark = `studio-input-${++markSeq}`;
    performance.mark(mark);
    const next = readControls(event.target.id);
    if (!next) return;
    // The slider and the field show the same value.
    if (event.target.id === "centre-range") $("centre").value = next.centre;
    if (event.target.id === "centre") $("centre-range").value = next.centre;
    if (event.target.id === "row-range") $("row").value = next.row;
    if (event.target.id === "row") $("row-range").value = next.row;
    view = next;
    lastLocalInput = performance.now();
    if (!canControl() && !touched) {
      touched = true;
      showGuestNote();
    }
    requestSlice(mark);
    window.clearTimeout(settleTimer);
    settleTimer = window.setTimeout(settled, SETTLE_MS);
  }

  for (const id of ["centre-range", "centre", "row", "row-range", "angle-from", "angle-to"]) {
    $(id).addEventListener("input", onInput);
  }
  for (const id of ["filter", "ring", "algorithm"]) {
    $(id).addEventListener("change", onInput);
  }
  $("controls").addEventListener("submit", (event) => event.preventDefault());

  $("centre-auto").addEventListener("click", () => {
    $("centre").value = state.centre_auto;
    $("centre").dispatchEvent(new Event("input"));
  });

  // ---- the shared view -------------------------------------------------------------------

  function settled() {
    recordTry();
    if (canControl()) postView(view).catch((e) => showProblem(e.message));
  }

  async function postView(v) {
    const answer = await fetchJson("api/view", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(v),
    });
    seenVersion = answer.view_version;
    return answer;
  }

  // Follows the shared view when it changed elsewhere: always for a guest who has not
  // touched anything, for a member when they have not changed anything for 2 s.
  function followShared() {
    if (state.view_version === seenVersion || !state.view) return;
    const idle = performance.now() - lastLocalInput > 2000;
    const follow = canControl() ? idle : !touched;
    if (!follow) return;
    seenVersion = state.view_version;
    if (viewKey(state.view) === viewKey(view)) return;
    view = { ...state.view };
    showView();
    requestSlice(null);
  }

  function showGuestNote() {
    const note = $("guest-note");
    document.body.classList.toggle("watching", !canControl());
    if (canControl()) {
      note.hidden = true;
      return;
    }
    note.hidden = false;
    const owner = ownerName();
    $("guest-text").textContent = `You are watching: you see ${owner}'s view and may try slices of your own; `
      + "only members who may control change the shared view.";
    const follow = $("follow");
    follow.hidden = !touched;
    follow.textContent = `Back to ${owner}'s view`;
  }

  $("follow").addEventListener("click", () => {
    touched = false;
    seenVersion = -1;
    followShared();
    showGuestNote();
  });

  $("use-parameters").addEventListener("click", async () => {
    const button = $("use-parameters");
    if (!state.portal || !state.session) {
      showProblem("This studio was not opened through daas: there is no portal to take the parameters to.");
      return;
    }
    button.disabled = true;
    try {
      await postView(view);
      const target = `${state.portal}/sessions/${encodeURIComponent(state.session)}/use-parameters`;
      try {
        window.top.location.assign(target);
      } catch {
        window.location.assign(target);
      }
    } catch (e) {
      showProblem(e.message);
      button.disabled = false;
    }
  });

  // ---- slices ----------------------------------------------------------------------------

  function requestSlice(mark) {
    const seq = ++requestSeq;
    if (inflight) inflight.controller.abort();
    const controller = new AbortController();
    inflight = { seq, controller };
    const asked = { ...view };
    const query = new URLSearchParams({
      row: asked.row, centre: asked.centre, filter: asked.filter, ring_removal: asked.ring_removal,
      angle_from: asked.angle_from, angle_to: asked.angle_to, algorithm: asked.algorithm, format: "f32",
    });
    $("readout").textContent = "Reconstructing…";
    const asking = performance.now();
    fetch(api(`api/slice?${query}`), { signal: controller.signal, cache: "no-store" })
      .then(async (response) => {
        if (!response.ok) {
          const body = await response.json().catch(() => ({}));
          throw new Error(body.error ? body.error.message : `${response.status} ${response.statusText}`);
        }
        const buffer = await response.arrayBuffer();
        if (seq !== requestSeq) return;  // a newer request was made: this answer is stale
        const h = (name) => Number(response.headers.get(name));
        const received = performance.now();
        draw({
          data: new Float32Array(buffer), n: h("X-Width"), min: h("X-Min"), max: h("X-Max"),
          sharpness: h("X-Sharpness"), seconds: h("X-Seconds"), view: asked,
        });
        // Where the time goes: asking to the whole answer here, and drawing it.
        window.studioDetail.push({ fetch_ms: received - asking, draw_ms: performance.now() - received });
        if (window.studioDetail.length > 200) window.studioDetail.shift();
        let ms = null;
        if (mark) {
          const measure = performance.measure("slice", mark);
          ms = measure ? measure.duration : null;
          if (ms !== null) {
            window.studioTimings.push(ms);
            if (window.studioTimings.length > 200) window.studioTimings.shift();
          }
        }
        showReadout(ms);
        if (performance.now() - lastLocalInput >= SETTLE_MS) recordTry();
      })
      .catch((e) => {
        if (e.name === "AbortError") return;
        if (seq === requestSeq) {
          $("readout").textContent = "";
          showProblem(e.message);
        }
      })
      .finally(() => {
        if (inflight && inflight.seq === seq) inflight = null;
        if (mark) performance.clearMarks(mark);
        performance.clearMeasures("slice");
      });
  }

  function showReadout(ms) {
    const c = current;
    const browser = ms !== null ? `, ${Math.round(ms)} ms here` : "";
    $("readout").textContent = `Row ${c.view.row}, centre ${fmt(c.view.centre)}: sharpness ${c.sharpness.toFixed(4)} `
      + `(higher is sharper); made in ${Math.round(c.seconds * 1000)} ms by the studio${browser}.`;
    clearProblem("request");
  }

  function circleSpans(n) {
    // algotom's reconstruction circle: radius n // 2 about pixel n // 2.
    const c = Math.floor(n / 2);
    const out = new Int32Array(2 * n);
    for (let y = 0; y < n; y++) {
      const dy = y - c;
      const half = c * c - dy * dy;
      if (half < 0) {
        out[2 * y] = 0;
        out[2 * y + 1] = 0;
        continue;
      }
      const dx = Math.floor(Math.sqrt(half));
      out[2 * y] = Math.max(0, c - dx);
      out[2 * y + 1] = Math.min(n, c + dx + 1);
    }
    return out;
  }

  function histogram(slice) {
    const { data, n, min, max } = slice;
    const counts = new Uint32Array(HISTOGRAM_BINS);
    const scale = max > min ? (HISTOGRAM_BINS - 1) / (max - min) : 0;
    let total = 0;
    for (let y = 0; y < n; y++) {
      const row = y * n;
      for (let x = spans[2 * y]; x < spans[2 * y + 1]; x++) {
        const v = data[row + x];
        if (v === v) {  // not NaN
          counts[Math.min(HISTOGRAM_BINS - 1, Math.max(0, Math.floor((v - min) * scale)))]++;
          total++;
        }
      }
    }
    return { counts, total };
  }

  function percentile(hist, min, max, p) {
    const target = hist.total * p;
    let seen = 0;
    for (let i = 0; i < HISTOGRAM_BINS; i++) {
      seen += hist.counts[i];
      if (seen >= target) return min + ((i + 0.5) / HISTOGRAM_BINS) * (max - min);
    }
    return max;
  }

  function autoContrast() {
    const c = current;
    const lo = percentile(c.hist, c.min, c.max, 0.005);
    const hi = percentile(c.hist, c.min, c.max, 0.995);
    contrast = { level: (lo + hi) / 2, width: Math.max(hi - lo, (c.max - c.min) / 1000 || 1e-12) };
  }

  function setContrastInputs() {
    const c = current;
    const span = c.max - c.min || 1;
    const level = $("level");
    const width = $("width");
    level.min = c.min - span / 2;
    level.max = c.max + span / 2;
    level.step = span / 1000;
    width.min = span / 1000;
    width.max = span * 2;
    width.step = span / 1000;
    level.value = contrast.level;
    width.value = contrast.width;
    $("contrast-values").textContent = `Window ${contrast.width.toPrecision(3)} about ${contrast.level.toPrecision(3)} `
      + `(slice ${c.min.toPrecision(3)} to ${c.max.toPrecision(3)}, attenuation per pixel).`;
  }

  function draw(slice) {
    const canvas = $("slice");
    if (canvas.width !== slice.n) {
      canvas.width = canvas.height = slice.n;
      imageData = null;
    }
    if (!spans || spans.length !== 2 * slice.n) spans = circleSpans(slice.n);
    slice.hist = histogram(slice);
    current = slice;
    if ($("contrast-follow").checked) autoContrast();
    render();
    setContrastInputs();
    drawHistogram();
  }

  function render() {
    const c = current;
    const canvas = $("slice");
    const ctx = canvas.getContext("2d");
    if (!imageData) imageData = ctx.createImageData(c.n, c.n);
    const pixels = new Uint32Array(imageData.data.buffer);
    const lo = contrast.level - contrast.width / 2;
    const scale = 255 / contrast.width;
    const data = c.data;
    for (let i = 0; i < data.length; i++) {
      let v = (data[i] - lo) * scale;
      v = v < 0 ? 0 : v > 255 ? 255 : v | 0;
      pixels[i] = 0xff000000 | (v << 16) | (v << 8) | v;  // little-endian RGBA: grey, opaque
    }
    ctx.putImageData(imageData, 0, 0);
  }

  function drawHistogram() {
    const c = current;
    const canvas = $("histogram");
    const ctx = canvas.getContext("2d");
    const w = canvas.width;
    const h = canvas.height;
    ctx.clearRect(0, 0, w, h);
    // Bins merged to the canvas's width, heights on a log scale (the background dominates).
    const per = HISTOGRAM_BINS / w;
    let peak = 1;
    const bars = new Float64Array(w);
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let i = Math.floor(x * per); i < Math.floor((x + 1) * per); i++) sum += c.hist.counts[i];
      bars[x] = Math.log1p(sum);
      peak = Math.max(peak, bars[x]);
    }
    const toX = (v) => ((v - c.min) / (c.max - c.min || 1)) * w;
    ctx.fillStyle = "rgba(37, 99, 235, 0.15)";
    const x0 = toX(contrast.level - contrast.width / 2);
    const x1 = toX(contrast.level + contrast.width / 2);
    ctx.fillRect(x0, 0, x1 - x0, h);
    ctx.fillStyle = "#334155";
    for (let x = 0; x < w; x++) {
      const bar = (bars[x] / peak) * (h - 2);
      ctx.fillRect(x, h - bar, 1, bar);
    }
  }

  function onContrast() {
    if (!current) return;
    $("contrast-follow").checked = false;
    contrast = { level: Number($("level").value), width: Math.max(Number($("width").value), 1e-12) };
    render();
    setContrastInputs();
    drawHistogram();
  }
  $("level").addEventListener("input", onContrast);
  $("width").addEventListener("input", onContrast);
  $("contrast-auto").addEventListener("click", () => {
    if (!current) return;
    autoContrast();
    render();
    setContrastInputs();
    drawHistogram();
  });

  // ---- the last tries ------------------------------------------------------------------

  function recordTry() {
    const c = current;
    if (!c || viewKey(c.view) !== viewKey(view)) return;  // the settled view is not drawn yet
    const key = viewKey(c.view);
    const at = tries.findIndex((t) => t.key === key);
    if (at === 0) return;
    if (at > 0) tries.splice(at, 1);
    const thumb = document.createElement("canvas");
    thumb.width = thumb.height = 80;
    thumb.getContext("2d").drawImage($("slice"), 0, 0, 80, 80);
    tries.unshift({ key, view: { ...c.view }, sharpness: c.sharpness, thumb });
    tries.length = Math.min(tries.length, TRIES);
    showTries();
  }

  function showTries() {
    // Sharpness compares centres, not filters or rows: the best is among the tries made
    // like the current view but for the centre.
    const like = (t) => viewKey({ ...t.view, centre: 0 }) === viewKey({ ...view, centre: 0 });
    const best = tries.filter(like).reduce((m, t) => Math.max(m, t.sharpness), -Infinity);
    $("tries").replaceChildren(...tries.map((t) => {
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.className = "try";
      const others = [];
      if (t.view.filter !== view.filter) others.push(t.view.filter);
      if (t.view.ring_removal !== view.ring_removal) others.push(`rings ${t.view.ring_removal}`);
      if (t.view.algorithm !== view.algorithm) others.push(t.view.algorithm);
      if (t.view.row !== view.row) others.push(`row ${t.view.row}`);
      const caption = document.createElement("span");
      caption.textContent = `centre ${fmt(t.view.centre)}`;
      const figure = document.createElement("span");
      figure.textContent = `sharpness ${t.sharpness.toFixed(4)}${like(t) && t.sharpness === best && tries.filter(like).length > 1 ? " (best)" : ""}`;
      const extra = document.createElement("span");
      extra.className = "muted";
      extra.textContent = others.join(", ");
      button.setAttribute("aria-label", `Go back to centre ${fmt(t.view.centre)}, sharpness ${t.sharpness.toFixed(4)}`
        + (others.length ? `, ${others.join(", ")}` : ""));
      button.append(t.thumb, caption, figure, extra);
      button.addEventListener("click", () => {
        view = { ...t.view };
        showView();
        lastLocalInput = performance.now();
        if (!canControl()) {
          touched = true;
          showGuestNote();
        }
        const mark = `studio-input-${++markSeq}`;
        performance.mark(mark);
        requestSlice(mark);
        window.clearTimeout(settleTimer);
        settleTimer = window.setTimeout(settled, SETTLE_MS);
      });
      li.append(button);
      return li;
    }));
  }

  poll();
})();
