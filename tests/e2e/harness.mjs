// The end-to-end harness: starts a real OpenID provider (oidc-provider) and daas itself
// (`daas dev` with its own private PostgreSQL under target/e2e/), and drives Debian's
// chromium with playwright-core. Screenshots go to target/screenshots/.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Provider from "oidc-provider";
import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { killSessions, killUnder } from "./processes.mjs";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const daasBin = process.env.DAAS_BIN ?? path.join(root, "target/debug/daas");
export const screenshots = path.join(root, "target/screenshots");
/** Everything the tests run from (daas's folder, its PostgreSQL, its sessions' folders). */
const e2eDir = path.join(root, "target/e2e");

/** Ports handed out so far: a port just closed may be given again by the next `listen(0)`. */
const given = new Set();

/** A free port on loopback, never one this process handed out before (daas's port is picked
 * before the identity provider takes one: the provider once got the same and daas could
 * not listen). */
export async function freePort() {
  for (;;) {
    const port = await new Promise((resolve, reject) => {
      const server = net.createServer();
      server.listen(0, "127.0.0.1", () => {
        const { port } = server.address();
        server.close(() => resolve(port));
      });
      server.on("error", reject);
    });
    if (!given.has(port)) {
      given.add(port);
      return port;
    }
  }
}

/** The facility's identity provider, with the demo people as its accounts. */
export async function startProvider(redirectUri) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const people = {
    alice: { name: "Alice Martin", email: "alice.martin@uni-example.edu", groups: ["users"] },
    sam: { name: "Sam Keller", email: "sam.keller@facility.example", groups: ["staff", "daas-scientist"] },
    admin: { name: "Facility Admin", email: "daas-admin@facility.example", groups: ["daas-admin"] },
  };
  const provider = new Provider(issuer, {
    clients: [{
      client_id: "daas",
      client_secret: "e2e-client-secret",
      redirect_uris: [redirectUri],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    }],
    claims: {
      openid: ["sub"],
      profile: ["name", "preferred_username", "groups", "affiliation"],
      email: ["email"],
    },
    // Put the scope's claims in the ID token, which is all daas reads.
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    cookies: { keys: ["e2e-cookie-signing-key"] },
    ttl: { AccessToken: 600, AuthorizationCode: 60, Grant: 600, IdToken: 600, Interaction: 600, Session: 600 },
    async findAccount(_ctx, id) {
      const person = people[id] ?? { name: id, email: `${id}@idp.example`, groups: [] };
      return {
        accountId: id,
        async claims() {
          return { sub: id, preferred_username: id, affiliation: "University of Example", ...person };
        },
      };
    },
  });
  const server = provider.listen(port);
  // Not what keeps this process alive: it must end (and clean up) when an `after` hook fails.
  server.unref();
  return { issuer, stop: () => new Promise((resolve) => server.close(resolve)) };
}

/** daas as a user starts it: `daas dev`, in a private folder, with OIDC configured. */
export async function startDaas({ port, issuer }) {
  const dev = path.join(e2eDir, "dev");
  const env = { ...process.env };
  delete env.DATABASE_URL;
  Object.assign(env, {
    DAAS_PUBLIC_URL: `http://localhost:${port}`,
    DAAS_SESSIONS_DOMAIN: `sessions.localhost:${port}`,
    DAAS_VENV: path.join(root, ".daas/venv"),
    DAAS_TOOLS_DIR: path.join(root, "tools"),
    // Sessions and homes of this run only: a notebook left by an earlier run must not
    // change what JupyterLab opens.
    DAAS_SESSIONS_DIR: path.join(dev, "sessions"),
    DAAS_HOMES_DIR: path.join(dev, "homes"),
    DAAS_OIDC_ISSUER: issuer,
    DAAS_OIDC_CLIENT_ID: "daas",
    DAAS_OIDC_CLIENT_SECRET: "e2e-client-secret",
    DAAS_OIDC_NAME: "Example Facility ID",
    DAAS_FRONTEND_DIR: path.join(root, "frontend"),
    DAAS_LOG: "warn",
  });
  // What an interrupted run left there is stopped while its folders still say what it is.
  const left = cleanUp(dev, env);
  if (left.length > 0) console.error(`# stopped what an earlier run left running: ${left.join("; ")}`);
  rmSync(dev, { recursive: true, force: true });
  mkdirSync(dev, { recursive: true });
  const args = ["--dev-dir", dev, "dev", "--listen", `127.0.0.1:${port}`, "--data-root", path.join(dev, "data")];
  const child = spawn(daasBin, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  const stopNow = () => {
    cleanups.delete(stopNow);
    cleanUp(dev, env);
  };
  cleanups.add(stopNow);
  watchExitPaths();
  // Nor does daas keep this process alive: if `stop()` is never called, it ends, and `exit` stops daas.
  child.unref();
  child.stdout.unref();
  let output = "";
  child.stdout.on("data", (chunk) => { output += chunk; });
  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 90_000;
  try {
    for (;;) {
      if (!running(child)) throw new Error(`daas dev exited with ${child.exitCode ?? child.signalCode}: ${output}`);
      try {
        if ((await fetch(`${url}/readyz`)).ok) break;
      } catch { /* not listening yet */ }
      if (Date.now() > deadline) throw new Error(`daas did not become ready: ${output}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  } catch (e) {
    // The test file's `after` gets no daas to stop.
    stopNow();
    throw e;
  }
  const passwords = Object.fromEntries(
    output.split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w.length === 2),
  );
  return {
    url,
    passwords,
    /** Where the users' homes are (`<homes>/<user>`): what a session wrote, as the user. */
    homes: path.join(dev, "homes"),
    async stop() {
      if (!cleanups.has(stopNow)) return;
      // SIGTERM first, as users stop daas; SIGKILL (in cleanUp) if it takes longer than its grace.
      if (running(child)) {
        child.ref();
        child.kill("SIGTERM");
        await new Promise((resolve) => {
          const timer = setTimeout(resolve, 30_000);
          child.on("exit", () => resolve(clearTimeout(timer)));
          if (!running(child)) resolve(clearTimeout(timer));
        });
      }
      stopNow();
    },
  };
}

/** Not yet exited (`exitCode` stays null when a signal ended it). */
const running = (child) => child.exitCode === null && child.signalCode === null;

/**
 * Stops, synchronously (it also runs on `exit`), what `daas dev` in the folder `dev`
 * started, daas first so that it starts nothing more: its sessions, which outlive daas by
 * design, and its PostgreSQL, which does too. Then kills anything else still running
 * from the folder (a session wrapper that had not recorded its process yet, a group
 * whose leader is gone, a PostgreSQL that would not stop), and says so. Returns what it
 * found running: daas, sessions.
 */
function cleanUp(dev, env) {
  const daas = killUnder(dev, (p) => p.args[0] === daasBin).map((p) => `daas (${p.pid})`);
  const sessions = killSessions(path.join(dev, "sessions")).map((folder) => `session ${path.basename(folder)}`);
  if (existsSync(path.join(dev, "postgres"))) {
    spawnSync(daasBin, ["--dev-dir", dev, "dev-db", "--stop"], { env, stdio: ["ignore", "ignore", "inherit"] });
  }
  for (const p of killUnder(dev)) {
    console.error(`# killed a process left under ${dev}: ${p.pid} (${p.why}): ${p.args.join(" ").slice(0, 200)}`);
  }
  return [...daas, ...sessions];
}

/** The clean-ups of the daas instances started and not stopped yet, for the exit paths. */
const cleanups = new Set();
let exitPathsWatched = false;

/**
 * `after` hooks do not run on every way out: node's default for a signal is to die at
 * once (the runner SIGTERMs its test files when it is interrupted), and a file may end
 * with a hook undone. So what is still running is stopped on `exit`, and these signals
 * exit (with the shell's code for them, 128 + the signal's number) rather than kill.
 */
function watchExitPaths() {
  if (exitPathsWatched) return;
  exitPathsWatched = true;
  process.on("exit", () => {
    for (const stop of cleanups) stop();
  });
  for (const [signal, number] of [["SIGHUP", 1], ["SIGINT", 2], ["SIGTERM", 15]]) {
    process.on(signal, () => process.exit(128 + number));
  }
  // The runner does not wait for its test files once interrupted, and may be killed: a
  // file left without it (its parent gone) stops.
  const runner = process.ppid;
  setInterval(() => {
    if (process.ppid !== runner) process.exit(1);
  }, 1000).unref();
}

/** Debian's chromium, headless, as this machine allows it (no sandbox as root, no network chatter). */
export async function launchBrowser() {
  mkdirSync(screenshots, { recursive: true });
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium",
    args: [
      "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/**
 * A page that records console errors (a CSP violation, a failed script or resource) on
 * daas's own pages; the provider's pages are not ours to judge.
 */
export async function strictPage(browser, origin) {
  const context = await browser.newContext({ viewport: { width: 1366, height: 820 } });
  const page = await context.newPage();
  page.errors = [];
  const ours = () => page.url().startsWith(origin);
  page.on("console", (m) => { if (m.type() === "error" && ours()) page.errors.push(`${page.url()}: ${m.text()}`); });
  page.on("pageerror", (e) => { if (ours()) page.errors.push(`${page.url()}: ${e}`); });
  page.on("response", (r) => { if (r.status() >= 400 && r.url().startsWith(origin)) page.errors.push(`${r.status()} ${r.url()}`); });
  return page;
}

export async function shot(page, name) {
  await page.screenshot({ path: path.join(screenshots, `${name}.png`), fullPage: true });
}

/** Logs `user` in with their demo password and waits for the proposals page. */
export async function logIn(page, daas, user) {
  await page.goto(`${daas.url}/login`);
  await page.fill("input[name=username]", user);
  await page.fill("input[name=password]", daas.passwords[user]);
  await page.getByRole("button", { name: "Log in", exact: true }).click();
  await page.waitForURL(`${daas.url}/proposals`);
}

/**
 * Launches a session through the API as the logged-in page, and waits until it runs; with
 * `watch`, on the session's page, which must turn to running and offer Connect by itself
 * (issue 14 item 1: no reload).
 */
export async function launchSession(page, daas, imageName, { watch = false } = {}) {
  const csrf = JSON.parse(await page.locator("body").getAttribute("hx-headers"))["X-CSRF-Token"];
  const images = await (await page.request.get(`${daas.url}/api/v1/images`)).json();
  const flavours = await (await page.request.get(`${daas.url}/api/v1/flavours`)).json();
  const proposal = await (await page.request.get(`${daas.url}/api/v1/proposals/20180101`)).json();
  const image = images.find((i) => i.name === imageName);
  const flavour = flavours.find((f) => f.name === "small");
  const experiment = proposal.experiments.find((e) => e.code === "S0011");
  const response = await page.request.post(`${daas.url}/api/v1/sessions`, {
    headers: { "x-csrf-token": csrf, origin: daas.url },
    data: { image: image.id, flavour: flavour.id, experiment: experiment.id },
  });
  assert.equal(response.status(), 201, await response.text());
  const { id } = await response.json();
  if (watch) {
    await page.goto(`${daas.url}/sessions/${id}`);
    let loads = 0;
    page.on("load", () => loads++);
    await page.locator("#live > p > .badge", { hasText: "running" }).waitFor({ timeout: 90_000 });
    await page.getByRole("link", { name: "Connect", exact: true }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Cancel launch" }).count(), 0);
    assert.equal(loads, 0, "the page was reloaded");
    await shot(page, "12-session-page-followed-to-running");
    return id;
  }
  const deadline = Date.now() + 90_000;
  for (;;) {
    const session = await (await page.request.get(`${daas.url}/api/v1/sessions/${id}`)).json();
    if (session.state === "running") return id;
    assert.equal(session.state, "starting", JSON.stringify(session));
    assert.ok(Date.now() < deadline, "the session did not start in time");
    await new Promise((r) => setTimeout(r, 500));
  }
}
