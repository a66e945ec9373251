// Attack 4 of issue 11, in chromium: a page on one session origin must not drive another
// user's notebook. All session origins are one site, so alice's cookie for her notebook
// goes along with a request that a page on carol's notebook makes; and daas adds Jupyter's
// token to what it proxies, which switches off Jupyter's own XSRF and Origin checks. So
// daas checks `Origin` itself. Here carol, a co-member of alice's proposal (only members of
// a proposal and staff of its beamline may be invited), puts a page of her own on her
// notebook's origin (as a JupyterLab extension's static file, which Jupyter serves without
// a sandbox); alice accepts carol's invitation to her session, opens it and then her page; the page
// tries, with alice's cookies, to open a terminal in alice's notebook and to type in it.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { freePort, launchBrowser, root, shot, startDaas, startProvider } from "./harness.mjs";

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

async function login(user) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  await page.goto(`${daas.url}/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", daas.passwords[user]);
  await page.getByRole("button", { name: "Log in", exact: true }).click();
  await page.waitForURL(`${daas.url}/proposals`);
  return page;
}

const csrf = async (page) => JSON.parse(await page.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];

/** Launches a notebook on an experiment through the API as the logged-in page; waits until it runs. */
async function launchNotebook(page, proposalId, code) {
  const images = await (await page.request.get(`${daas.url}/api/v1/images`)).json();
  const flavours = await (await page.request.get(`${daas.url}/api/v1/flavours`)).json();
  const proposal = await (await page.request.get(`${daas.url}/api/v1/proposals/${proposalId}`)).json();
  const response = await page.request.post(`${daas.url}/api/v1/sessions`, {
    headers: { "x-csrf-token": await csrf(page), origin: daas.url },
    data: {
      image: images.find((i) => i.name === "JupyterLab").id,
      flavour: flavours.find((f) => f.name === "small").id,
      experiment: proposal.experiments.find((e) => e.code === code).id,
    },
  });
  assert.equal(response.status(), 201, await response.text());
  const { id } = await response.json();
  for (const deadline = Date.now() + 90_000; ; await new Promise((r) => setTimeout(r, 500))) {
    const session = await (await page.request.get(`${daas.url}/api/v1/sessions/${id}`)).json();
    if (session.state === "running") return id;
    assert.equal(session.state, "starting", JSON.stringify(session));
    assert.ok(Date.now() < deadline, "the notebook did not start in time");
  }
}

const originOf = (id) => `http://${id}.sessions.localhost:${new URL(daas.url).port}`;

/** Opens a notebook as a member does (the portal's ticket, then the origin's own page). */
async function enter(page, id) {
  const lab = `${originOf(id)}/sessions/${id}/lab`;
  const answered = page.waitForResponse((r) => r.url().startsWith(lab) && r.request().isNavigationRequest());
  await page.goto(`${daas.url}/sessions/${id}/open`, { waitUntil: "commit" });
  // The origin's cookie is SameSite=Strict: the lab answers only if the browser sent it.
  assert.equal((await answered).status(), 200, "the lab did not open with the origin's cookie");
  await page.waitForURL(`${lab}**`, { waitUntil: "domcontentloaded" });
}

/** The terminals of a notebook, as the page's user reads them on that notebook's origin. */
async function terminals(page, id) {
  await page.goto(`${originOf(id)}/sessions/${id}/api/terminals`);
  return JSON.parse(await page.locator("pre").first().textContent());
}

/** Carol's page: with the visitor's cookies, a terminal in the victim's notebook, and a line typed into it. */
function attackPage(victim) {
  const base = `${originOf(victim)}/sessions/${victim}`;
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Beamtime plots</title></head><body>
<p>Plots of the beamtime.</p>
<script>
const base = ${JSON.stringify(base)};
window.attack = (async () => {
  const out = {};
  for (const mode of ["cors", "no-cors"]) {
    try {
      const r = await fetch(base + "/api/terminals", { method: "POST", credentials: "include", mode });
      out[mode] = r.type === "opaque" ? "opaque" : r.status;
    } catch (e) {
      out[mode] = "failed";
    }
  }
  out.ws = await new Promise((resolve) => {
    const ws = new WebSocket(base.replace(/^http/, "ws") + "/terminals/websocket/1");
    ws.onopen = () => {
      ws.send(JSON.stringify(["stdin", "touch ~/pwned-by-carol\\r"]));
      setTimeout(() => resolve("open"), 2000);
    };
    ws.onerror = () => resolve("refused");
  });
  return out;
})();
</script></body></html>
`;
}

test("a page on carol's notebook cannot drive alice's notebook", async () => {
  const alice = await login("alice");
  const carol = await login("carol");
  const victim = await launchNotebook(alice, "20180101", "S0011");
  const attacker = await launchNotebook(carol, "20180101", "S0011");

  // Carol invites alice into her session; she accepts on My sessions.
  const invited = await carol.request.post(`${daas.url}/api/v1/sessions/${attacker}/members`, {
    headers: { "x-csrf-token": await csrf(carol), origin: daas.url },
    data: { user: "alice", role: "user" },
  });
  assert.equal(invited.status(), 201, await invited.text());
  await alice.goto(`${daas.url}/sessions`);
  await alice.getByRole("button", { name: "Accept the invitation to JupyterLab of carol" }).click();
  await alice.waitForURL(`${daas.url}/sessions`);
  await alice.locator(`a[href="/sessions/${attacker}"]`).waitFor();

  // Carol puts her page where her Jupyter serves files without a sandbox: a JupyterLab
  // extension's static folder in her home (~/.local/share/jupyter/labextensions).
  await enter(carol, attacker);
  const placed = await carol.evaluate(async ({ id, html }) => {
    const api = `/sessions/${id}/api`;
    const put = await fetch(`${api}/contents/attack.html`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ type: "file", format: "text", content: html }),
    });
    if (!put.ok) return `contents: ${put.status} ${await put.text()}`;
    const made = await fetch(`${api}/terminals`, { method: "POST" });
    if (!made.ok) return `terminal: ${made.status} ${await made.text()}`;
    const { name } = await made.json();
    const dir = "~/.local/share/jupyter/labextensions/beamtime/static";
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://${location.host}/sessions/${id}/terminals/websocket/${name}`);
      ws.onopen = () => ws.send(JSON.stringify(["stdin", `mkdir -p ${dir} && cp ~/attack.html ${dir}/ && exit\r`]));
      ws.onclose = resolve;
      ws.onerror = () => reject(new Error("carol's own terminal did not open"));
    });
    const page = `/sessions/${id}/lab/extensions/beamtime/static/attack.html`;
    for (let i = 0; i < 40; i++) {
      if ((await fetch(page)).ok) return "ok";
      await new Promise((r) => setTimeout(r, 250));
    }
    return "the page is not served";
  }, { id: attacker, html: attackPage(victim) });
  assert.equal(placed, "ok");

  // Alice works in her notebook, then opens carol's session and her page, in one browser.
  await enter(alice, victim);
  assert.deepEqual(await terminals(alice, victim), [], "alice's notebook has a terminal before the attack");
  await enter(alice, attacker);
  const seen = [];
  alice.on("response", (r) => {
    if (r.url().startsWith(originOf(victim))) seen.push(`${r.request().method()} ${r.status()}`);
  });
  await alice.goto(`${originOf(attacker)}/sessions/${attacker}/lab/extensions/beamtime/static/attack.html`);
  const result = await alice.evaluate(() => window.attack);
  await shot(alice, "30-attack-page");

  // Nothing reached alice's notebook: daas refused each attempt with 403.
  assert.deepEqual(result, { cors: "failed", "no-cors": "opaque", ws: "refused" });
  // (chromium reports the answer to one of the two POSTs to the page's listeners, not both.)
  assert.ok(seen.length > 0 && seen.every((s) => s === "POST 403"), `alice's origin answered carol's page: ${seen}`);
  assert.deepEqual(await terminals(alice, victim), [], "carol's page opened a terminal in alice's notebook");
  await new Promise((r) => setTimeout(r, 1000));
  const homes = path.join(root, "target/e2e/dev/homes");
  assert.ok(existsSync(path.join(homes, "alice")), "alice's home is not where the test looks");
  assert.ok(!existsSync(path.join(homes, "alice/pwned-by-carol")), "carol's page typed into alice's terminal");

  // Alice's own pages still work her notebook: the lab opens a terminal.
  await enter(alice, victim);
  const own = await alice.evaluate(async (id) => (await fetch(`/sessions/${id}/api/terminals`, { method: "POST" })).status, victim);
  assert.equal(own, 200);
});
