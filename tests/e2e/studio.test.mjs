// Issue 18, acceptance 1, 2 and 4: alice opens the reconstruction studio on the real tooth
// scan and moves the centre of rotation from 280 to 310; each step draws a new slice, and
// the sharpness figure peaks within 2 px of the centre the batch job's automatic search
// (Vo's method) finds. "Use these parameters" leads to the reconstruction job's Launch
// dialog with that centre, which launches it. carol, who may only watch, sees the studio
// but cannot change alice's view: the proxy refuses her.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { freePort, launchBrowser, logIn, shot, startDaas, startProvider, strictPage } from "./harness.mjs";

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

/** The page's CSRF token and an API call as the logged-in page. */
async function api(page, method, path, data) {
  const csrf = JSON.parse(await page.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];
  const response = await page.request.fetch(`${daas.url}${path}`, {
    method, headers: { "x-csrf-token": csrf, origin: daas.url }, data,
  });
  return { status: response.status(), body: await response.json().catch(() => null) };
}

/** A hash of the slice canvas's pixels: a new image is a new hash. */
const canvasHash = (page) => page.evaluate(() => {
  const canvas = document.getElementById("slice");
  const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  let h = 0;
  for (let i = 0; i < data.length; i += 7) h = (h * 31 + data[i]) | 0;
  return `${canvas.width}x${canvas.height}:${h}`;
});

test("alice tunes the centre on the tooth in the studio and launches the reconstruction with it", async () => {
  const alice = await strictPage(browser, daas.url);
  await logIn(alice, daas, "alice");
  const images = (await api(alice, "GET", "/api/v1/images")).body;
  const flavours = (await api(alice, "GET", "/api/v1/flavours")).body;
  const proposal = (await api(alice, "GET", "/api/v1/proposals/20180101")).body;
  const studio = images.find((i) => i.name === "Reconstruction studio").id;
  // Its Launch dialog asks which dataset, from the image's schema.
  await alice.goto(`${daas.url}/proposals/20180101/launch?image=${studio}`);
  await alice.locator("select[name='param.dataset']").waitFor();
  assert.ok(await alice.getByRole("button", { name: "Launch web app" }).isVisible());
  const launched = await api(alice, "POST", "/api/v1/sessions", {
    image: studio,
    flavour: flavours.find((f) => f.name === "small").id,
    experiment: proposal.experiments.find((e) => e.code === "S0011").id,
    parameters: { dataset: "tooth" },
  });
  assert.equal(launched.status, 201, JSON.stringify(launched.body));
  const id = launched.body.id;
  for (const deadline = Date.now() + 120_000; ; await alice.waitForTimeout(500)) {
    const s = (await api(alice, "GET", `/api/v1/sessions/${id}`)).body;
    if (s.state === "running") break;
    assert.equal(s.state, "starting", JSON.stringify(s));
    assert.ok(Date.now() < deadline, "the studio did not start in time");
  }
  const events = await (await alice.request.get(`${daas.url}/sessions/${id}`)).text();
  // The tooth loads in a blink; what the studio said while it started is in the events.
  assert.match(events, /loading tooth\.h5|finding the centre of rotation/, "the studio's progress is not among the events");

  await alice.goto(`${daas.url}/sessions/${id}/open`);
  await alice.waitForURL(new RegExp(`^http://${id}\\.sessions\\.localhost:\\d+/sessions/${id}/$`), { timeout: 30_000 });
  await alice.locator("#studio").waitFor({ timeout: 60_000 });
  await alice.locator("#readout", { hasText: "sharpness" }).waitFor({ timeout: 30_000 });
  const state = await alice.evaluate(async () => (await fetch("api/state")).json());
  const auto = state.centre_auto;
  assert.ok(auto > 280 && auto < 310, `the automatic centre ${auto} is not near the tooth's (296)`);

  // The centre from 280 to 310: a new image at each step, and its sharpness.
  const sharpness = new Map();
  let previous = await canvasHash(alice);
  for (let centre = 280; centre <= 310; centre += 1) {
    await alice.locator("#centre").fill(String(centre));
    await alice.locator("#centre").dispatchEvent("change");
    const readout = alice.locator("#readout", { hasText: `centre ${centre.toFixed(2)}: sharpness` });
    await readout.waitFor({ timeout: 15_000 });
    const figure = Number((await readout.textContent()).match(/sharpness (-?[\d.]+)/)[1]);
    sharpness.set(centre, figure);
    const hash = await canvasHash(alice);
    assert.notEqual(hash, previous, `the slice did not change at centre ${centre}`);
    previous = hash;
  }
  const [best] = [...sharpness.entries()].sort((a, b) => b[1] - a[1])[0];
  console.log(`# sharpness peaks at ${best}; the automatic centre is ${auto.toFixed(2)}`);
  assert.ok(Math.abs(best - auto) <= 2, `the sharpness peaks at ${best}, the automatic centre is ${auto}`);
  const timings = await alice.evaluate(() => window.studioTimings.slice());
  assert.ok(timings.length >= 31, `only ${timings.length} slices were timed`);

  // The best centre, then "Use these parameters": the job's Launch dialog, filled in.
  await alice.locator("#centre").fill(String(best));
  await alice.locator("#centre").dispatchEvent("change");
  await alice.locator("#readout", { hasText: `centre ${best.toFixed(2)}: sharpness` }).waitFor();
  await shot(alice, "18-studio");
  await alice.locator("#use-parameters").click();
  await alice.waitForURL(new RegExp(`^${daas.url}/proposals/20180101/launch\\?`), { timeout: 30_000 });
  assert.equal(Number(await alice.locator("[name='param.centre_value']").inputValue()), best);
  assert.equal(await alice.locator("[name='param.dataset']").inputValue(), "tooth");
  await shot(alice, "18-launch-prefilled");
  await alice.getByRole("button", { name: "Submit job" }).click();
  await alice.waitForURL(new RegExp(`^${daas.url}/sessions/[0-9a-f-]+$`));
  const job = alice.url().split("/").pop();
  const submitted = (await api(alice, "GET", `/api/v1/jobs/${job}`)).body;
  assert.equal(submitted.parameters.centre, "given", JSON.stringify(submitted));
  assert.equal(submitted.parameters.centre_value, best);
  // Not needed to the end here (the batch job has its own test): stopped.
  assert.equal((await api(alice, "DELETE", `/api/v1/sessions/${job}`)).status, 202);

  // carol may only watch: she sees the studio, not the button, and cannot change alice's view.
  assert.equal((await api(alice, "POST", `/api/v1/sessions/${id}/members`, { user: "carol", role: "guest" })).status, 201);
  const carol = await strictPage(browser, daas.url);
  await logIn(carol, daas, "carol");
  assert.equal((await api(carol, "POST", `/api/v1/invitations/${id}/accept`, {})).status, 200);
  await carol.goto(`${daas.url}/sessions/${id}/open`);
  await carol.locator("#studio").waitFor({ timeout: 60_000 });
  await carol.locator("#guest-note").waitFor();
  assert.equal(await carol.locator("#use-parameters").isVisible(), false);
  const refused = await carol.evaluate(async (centre) => (await fetch("api/view", {
    method: "POST", headers: { "content-type": "application/json" },
    body: JSON.stringify({ row: 0, centre, filter: "hann", ring_removal: "none", algorithm: "fbp" }),
  })).status, best + 3);
  assert.equal(refused, 403, "a guest changed the shared view");
  await shot(carol, "18-studio-guest");
  carol.errors = carol.errors.filter((e) => !e.includes("403"));
  assert.deepEqual(alice.errors, []);
  assert.deepEqual(carol.errors, []);
});
