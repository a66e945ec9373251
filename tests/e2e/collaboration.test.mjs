// Issue 17: two people in one session, each in a browser context of their own. alice shares
// her desktop (the dialog refuses bob, who is not on the proposal, and says why) with carol,
// who may only watch: carol finds it under My sessions, connects, and what she types does
// not reach the desktop. Made a member who may control, she asks for control, alice hands
// it over, her keys arrive; alice takes it back, they stop. alice removes her: carol's
// WebSocket closes within a second. The log of who connected lists both, and its CSV
// matches. Then two members edit one notebook together, each seeing the other by name.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
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

/** Waits up to `ms` for `file` (in alice's home) to exist; whether it does. */
async function appears(file, ms) {
  const where = path.join(daas.homes, "alice", file);
  for (const deadline = Date.now() + ms; Date.now() < deadline; await new Promise((r) => setTimeout(r, 300))) {
    if (existsSync(where)) return true;
  }
  return existsSync(where);
}

/** Clicks into the desktop's terminal and types a command that creates `file` in the home. */
async function typeCommand(page, file) {
  await page.locator("#screen canvas").click({ position: { x: 300, y: 200 } });
  await page.keyboard.type(`touch ~/${file}`);
  await page.keyboard.press("Enter");
}

/** The share dialog on the session page: `role` is the words the dialog offers. */
async function share(page, who, role) {
  await page.locator("#share-user").fill(who);
  await page.locator("#share-role").selectOption({ label: role });
  await page.getByRole("button", { name: "Share", exact: true }).click();
}

test("a desktop shared: watching, asking for control, handing it over, taking it back, removal", async () => {
  const alice = await strictPage(browser, daas.url);
  await logIn(alice, daas, "alice");
  const id = await launchSession(alice, daas, "Xfce desktop");
  const sessionPage = `${daas.url}/sessions/${id}`;

  // bob is on another proposal: the dialog says why he cannot join, and keeps what was typed.
  await alice.goto(sessionPage);
  await share(alice, "bob", "may only watch");
  const refusal = alice.locator("#form-error");
  await refusal.waitFor();
  assert.match(await refusal.textContent(), /bob is neither a member of proposal 20180101 nor staff of beamline BL11/);
  assert.equal(await alice.locator("#share-user").inputValue(), "bob");
  // The refusal is a 400 page, which the browser also logs.
  alice.errors = alice.errors.filter((e) => !(e.includes("400") && e.includes(`/sessions/${id}/members`)));
  // carol is on the proposal: found by her name in the list, invited to watch.
  const offered = await alice.locator("#share-people option").evaluateAll((o) => o.map((e) => `${e.value}: ${e.textContent}`));
  assert.ok(offered.includes("carol: Carol Okafor · proposal member"), offered.join("; "));
  await share(alice, "carol", "may only watch");
  await alice.locator("#members tr", { hasText: "Carol Okafor (carol)" }).waitFor();
  await shot(alice, "17-share-dialog");

  // alice at her desktop; the terminal takes her keys.
  const desk = await alice.context().newPage();
  await desk.goto(`${sessionPage}/desktop`);
  await desk.locator("#controller", { hasText: "alice (you)" }).waitFor({ timeout: 30_000 });
  await desk.locator("#desktop-status", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
  for (let tries = 0; tries < 3 && !(await appears(".e2e-alice", 0)); tries++) {
    await typeCommand(desk, ".e2e-alice");
    if (await appears(".e2e-alice", 20_000)) break;
  }
  assert.ok(await appears(".e2e-alice", 0), "alice's own keys did not reach her terminal");

  // carol finds the invitation under My sessions, accepts, connects: view only.
  const carol = await strictPage(browser, daas.url);
  await logIn(carol, daas, "carol");
  await carol.goto(`${daas.url}/sessions`);
  await carol.getByRole("button", { name: "Accept the invitation to Xfce desktop of alice" }).click();
  const card = carol.locator("li.card.session", { hasText: "shared by alice" });
  await card.waitFor();
  await card.getByRole("link", { name: "Connect" }).click();
  await carol.locator("#desktop-status", { hasText: "Connected" }).waitFor({ timeout: 30_000 });
  await carol.locator("#view-only").waitFor();
  assert.equal(await carol.locator("#request-control").isVisible(), false, "a guest is offered control");
  // Who is connected, on both pages, with roles.
  await desk.locator("#connected", { hasText: "Carol Okafor (watching)" }).waitFor();
  assert.match(await desk.locator("#connected").textContent(), /Alice Martin \(owner\)/);
  // The page would not even send her keys; the relay drops them anyway: send them as
  // noVNC would if the page were changed.
  await carol.evaluate(() => { window.daasRfb.viewOnly = false; });
  await typeCommand(carol, ".e2e-guest");
  assert.equal(await appears(".e2e-guest", 4_000), false, "a guest's keys reached the desktop");
  await shot(carol, "17-guest-view-only");

  // Made a member who may control, she asks; alice is asked on her desktop and accepts.
  await alice.reload();
  await alice.locator("#role-carol").selectOption({ label: "may control" });
  await alice.getByRole("button", { name: "Change the role of carol" }).click();
  await carol.locator("#request-control").waitFor({ state: "visible" });
  assert.equal(await carol.locator("#view-only").isVisible(), false);
  await carol.locator("#request-control").click();
  await carol.locator("#request-waiting").waitFor({ state: "visible" });
  await desk.locator("#control-request-text", { hasText: "carol asks for control of the desktop." }).waitFor();
  await shot(desk, "17-control-requested");
  await desk.locator("#control-accept").click();
  await carol.locator("#controller", { hasText: "carol (you)" }).waitFor();
  await typeCommand(carol, ".e2e-carol");
  assert.ok(await appears(".e2e-carol", 15_000), "carol's keys did not reach the desktop once she controlled it");

  // alice takes control back: carol's keys stop arriving.
  await desk.locator("#take-back").click();
  await carol.locator("#controller", { hasText: /^alice$/ }).waitFor();
  await carol.evaluate(() => { window.daasRfb.viewOnly = false; });
  await typeCommand(carol, ".e2e-carol-after");
  assert.equal(await appears(".e2e-carol-after", 4_000), false, "carol's keys arrived after alice took control back");

  // Removed while connected: her WebSocket closes within a second.
  await carol.evaluate(() => {
    window.daasRfb.addEventListener("disconnect", () => { window.daasClosedAt = Date.now(); });
  });
  await alice.reload();
  const removedAt = Date.now();
  await alice.getByRole("button", { name: "Remove carol" }).click();
  await carol.waitForFunction(() => window.daasClosedAt !== undefined, null, { timeout: 5_000 });
  const closedAfter = (await carol.evaluate(() => window.daasClosedAt)) - removedAt;
  console.log(`# carol's desktop closed ${closedAfter} ms after alice pressed Remove`);
  assert.ok(closedAfter < 1000, `carol's WebSocket closed ${closedAfter} ms after the removal`);
  await carol.locator("#desktop-status", { hasText: "You no longer have access to this session" }).waitFor();
  await shot(carol, "17-removed");

  // Who connected: alice's and carol's connections with their durations; the CSV matches.
  await desk.close();
  await alice.waitForTimeout(500);
  await alice.reload();
  const rows = await alice.locator("#access tbody tr").evaluateAll((trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim())));
  const who = rows.map((r) => `${r[0]} ${r[1]}`);
  assert.ok(who.includes("Alice Martin (alice) owner"), who.join("; "));
  assert.ok(who.includes("Carol Okafor (carol) guest"), who.join("; "));
  for (const r of rows) assert.match(r[5], /^\d+ (s|min \d+ s)$/, `a connection without its duration: ${r.join(" | ")}`);
  await shot(alice, "17-who-connected");
  const csv = await (await alice.request.get(`${daas.url}/api/v1/sessions/${id}/access.csv`)).text();
  const lines = csv.trim().split("\n");
  assert.equal(lines[0], "id,session,user,name,role,kind,from,connected_at,disconnected_at,seconds,bytes_in,bytes_out");
  const csvWho = lines.slice(1).map((l) => l.split(",")).map((c) => `${c[3]} (${c[2]}) ${c[4]}`);
  assert.deepEqual(csvWho.toSorted(), who.toSorted(), "the CSV lists other connections than the page");
  assert.deepEqual(alice.errors, []);
  // What her page asked after the removal was refused (404): she is no longer a member.
  assert.deepEqual(carol.errors.filter((e) => !(e.includes("404") && e.includes(`/sessions/${id}`))), []);
});

/** Waits until the notebook's kernel is idle, answering JupyterLab's kernel dialog if it asks. */
async function untilIdle(page) {
  const idle = page.getByText("| Idle").first();
  for (const deadline = Date.now() + 120_000; !(await idle.isVisible()); await page.waitForTimeout(500)) {
    const select = page.getByRole("button", { name: "Select", exact: true }).first();
    if (await select.isVisible()) await select.click();
    assert.ok(Date.now() < deadline, "the kernel did not become idle");
  }
}

test("two members edit one notebook at once and see each other by name", async () => {
  const alice = await strictPage(browser, daas.url);
  await logIn(alice, daas, "alice");
  const id = await launchSession(alice, daas, "JupyterLab");
  const csrf = JSON.parse(await alice.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];
  const invited = await alice.request.post(`${daas.url}/api/v1/sessions/${id}/members`, {
    headers: { "x-csrf-token": csrf, origin: daas.url },
    data: { user: "carol", role: "user" },
  });
  assert.equal(invited.status(), 201, await invited.text());
  const carol = await strictPage(browser, daas.url);
  await logIn(carol, daas, "carol");
  const carolCsrf = JSON.parse(await carol.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];
  const accepted = await carol.request.post(`${daas.url}/api/v1/invitations/${id}/accept`, {
    headers: { "x-csrf-token": carolCsrf, origin: daas.url },
  });
  assert.equal(accepted.status(), 200, await accepted.text());

  // alice makes a notebook and writes in its first cell.
  const lab = new RegExp(`^http://${id}\\.sessions\\.localhost:\\d+/sessions/${id}/lab`);
  await alice.goto(`${daas.url}/sessions/${id}/open`);
  await alice.waitForURL(lab, { timeout: 30_000 });
  await alice.locator(".jp-LauncherCard[title*='Python 3']").first().click({ timeout: 60_000 });
  const aliceCell = alice.locator(".jp-Cell .cm-content").first();
  await aliceCell.waitFor({ timeout: 60_000 });
  await untilIdle(alice);
  await aliceCell.click();
  await alice.keyboard.type("from_alice = 1");

  // carol opens the same notebook: alice's text is there, and she adds hers.
  await carol.goto(`${daas.url}/sessions/${id}/open`);
  await carol.waitForURL(lab, { timeout: 30_000 });
  const file = carol.locator(".jp-DirListing-item .jp-DirListing-itemText", { hasText: /^Untitled\.ipynb$/ });
  await file.dblclick({ timeout: 60_000 });
  const carolCell = carol.locator(".jp-Cell .cm-content").first();
  await carolCell.filter({ hasText: "from_alice = 1" }).waitFor({ timeout: 30_000 });
  await untilIdle(carol);
  await carolCell.click();
  await carol.keyboard.press("End");
  await carol.keyboard.type("; from_carol = 2");
  await aliceCell.filter({ hasText: "from_alice = 1; from_carol = 2" }).waitFor({ timeout: 30_000 });

  // Each sees the other among the collaborators, by the name daas gave Jupyter.
  for (const [page, other] of [[alice, "Carol Okafor"], [carol, "Alice Martin"]]) {
    // The panel may be open already (JupyterLab's layout is one per server, shared).
    if (!(await page.locator("#jp-collaboration-panel").isVisible())) {
      await page.locator("li[data-id='jp-collaboration-panel']").click();
    }
    // And its sections too (also shared).
    const section = page.locator(".jp-AccordionPanel-title", { hasText: /online collaborators/i });
    if ((await section.getAttribute("aria-expanded")) !== "true") await section.click();
    await page.locator(".jp-CollaboratorsList .jp-Collaborator", { hasText: other }).waitFor({ timeout: 30_000 });
  }
  assert.equal(await alice.locator(".jp-UserInfo-Container h3").textContent(), "Alice Martin");
  assert.equal(await carol.locator(".jp-UserInfo-Container h3").textContent(), "Carol Okafor");
  await shot(alice, "17-notebook-together-alice");
  await shot(carol, "17-notebook-together-carol");
});
