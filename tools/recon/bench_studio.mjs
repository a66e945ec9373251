// The studio's page in a real browser (Debian's chromium, headless, driven by
// playwright-core from tests/e2e/node_modules): steps the centre slider with the keyboard
// (ArrowRight: +0.25 px), waits for each slice to be drawn, and prints one JSON line:
// {"browser_ms": [...], "server_s": [...], "errors": [...], "checks": {...}}.
//
//   node tools/recon/bench_studio.mjs URL STEPS [--screenshot FILE] [--check]
//
// browser_ms: window.studioTimings, the page's own "slice" measures (slider change to the
// slice drawn into the canvas); server_s: the X-Seconds header of each of those slices.
// --check also checks the page's behaviour (tests/test_studio.py runs it): a stale answer
// is never drawn, guests are told they watch, the last tries are shown. Run by
// tools/recon/bench_studio.py (`make bench-studio`), which starts the studio.
import { createRequire } from "node:module";

const require = createRequire(new URL("../../tests/e2e/package.json", import.meta.url));
const { chromium } = require("playwright-core");

const [url, stepsText, ...rest] = process.argv.slice(2);
const steps = Number(stepsText ?? 40);
const screenshot = rest.includes("--screenshot") ? rest[rest.indexOf("--screenshot") + 1] : null;
const check = rest.includes("--check");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const out = { browser_ms: [], server_s: [], detail: [], errors: [], checks: {} };
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  page.on("console", (m) => { if (m.type() === "error") out.errors.push(m.text()); });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  const server = [];
  page.on("response", (r) => {
    if (r.url().includes("/api/slice")) server.push(Number(r.headers()["x-seconds"]));
    else if (r.status() >= 400) out.errors.push(`${r.status()} ${r.url()}`);
  });
  await page.goto(url);
  // The first slice (the shared view) is drawn, and recorded as the first try.
  await page.waitForFunction(() => document.getElementById("readout").textContent.includes("sharpness"),
    null, { timeout: 120000 });
  await page.waitForSelector("#tries .try");
  const slider = page.locator("#centre-range");
  await slider.focus();
  const before = server.length;
  for (let i = 1; i <= steps; i++) {
    await page.keyboard.press("ArrowRight");
    await page.waitForFunction((n) => window.studioTimings.length >= n, i, { timeout: 60000 });
  }
  out.browser_ms = await page.evaluate(() => window.studioTimings.slice());
  out.detail = await page.evaluate((n) => window.studioDetail.slice(-n), steps);
  out.server_s = server.slice(before);
  if (screenshot) await page.screenshot({ path: screenshot });

  if (check) {
    // The centre field follows the slider; the readout names the centre drawn.
    const centre = Number(await page.locator("#centre").inputValue());
    out.checks.centre_field = centre;
    out.checks.readout = await page.locator("#readout").textContent();
    // Five quick steps: older answers are dropped, the newest is drawn, at most one in flight.
    const drawn = await page.evaluate(async () => {
      const el = document.getElementById("centre-range");
      const seen = [];
      // In flight: slice requests not answered and not aborted when the next one starts.
      const original = window.fetch;
      const open = [];
      let most = 0;
      window.fetch = (resource, options = {}) => {
        if (String(resource).includes("api/slice")) {
          const live = open.filter((o) => !o.done && !(o.signal && o.signal.aborted)).length;
          most = Math.max(most, live + 1);
          const entry = { signal: options.signal, done: false };
          open.push(entry);
          const answer = original(resource, options);
          answer.then(() => { entry.done = true; }, () => { entry.done = true; });
          return answer;
        }
        return original(resource, options);
      };
      const start = window.studioTimings.length;
      for (let i = 0; i < 5; i++) {
        el.value = Number(el.value) + 0.25;
        el.dispatchEvent(new Event("input", { bubbles: true }));
        seen.push(Number(el.value));
      }
      while (window.studioTimings.length === start) await new Promise((r) => setTimeout(r, 20));
      await new Promise((r) => setTimeout(r, 500));
      window.fetch = original;
      return { last: seen[4], drawn: window.studioTimings.length - start, most,
        readout: document.getElementById("readout").textContent };
    });
    out.checks.quick_steps = drawn;
    await page.waitForTimeout(700);  // settled: the try is recorded and the view posted
    out.checks.tries = await page.locator("#tries .try").count();
    out.checks.shared_centre = await page.evaluate(async () =>
      (await (await fetch("api/state")).json()).view.centre);
    // A guest: told they watch, no "Use these parameters", follows the shared view.
    const guest = await browser.newContext({
      viewport: { width: 1366, height: 820 },
      extraHTTPHeaders: { "X-Daas-User": "gus", "X-Daas-Name": "Gus%20G%C3%A4st", "X-Daas-Role": "guest" },
    });
    const gpage = await guest.newPage();
    gpage.on("pageerror", (e) => out.errors.push(`guest: ${e}`));
    await gpage.goto(url);
    await gpage.waitForFunction(() => document.getElementById("readout").textContent.includes("sharpness"));
    out.checks.guest_note = await gpage.locator("#guest-text").textContent();
    out.checks.guest_use_parameters_hidden = await gpage.locator("#use-parameters").isHidden();
    out.checks.guest_centre = Number(await gpage.locator("#centre").inputValue());
    // The owner moves the shared view; the guest's page follows within the poll.
    await page.evaluate(() => {
      const el = document.getElementById("centre");
      el.value = Number(el.value) - 2;
      el.dispatchEvent(new Event("input", { bubbles: true }));
    });
    const moved = Number(await page.locator("#centre").inputValue());
    await gpage.waitForFunction((c) => Number(document.getElementById("centre").value) === c, moved,
      { timeout: 5000 });
    out.checks.guest_followed = moved;
    await guest.close();
  }
  await context.close();
} catch (e) {
  out.errors.push(String(e && e.stack ? e.stack : e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
