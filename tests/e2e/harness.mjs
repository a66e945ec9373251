// The end-to-end harness: starts a real OpenID provider (oidc-provider) and daas itself
// (`daas dev` with its own private PostgreSQL under target/e2e/), and drives Debian's
// chromium with playwright-core. Screenshots go to target/screenshots/.
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import Provider from "oidc-provider";
import { chromium } from "playwright-core";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
const daasBin = process.env.DAAS_BIN ?? path.join(root, "target/debug/daas");
export const screenshots = path.join(root, "target/screenshots");

export async function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
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
  return { issuer, stop: () => new Promise((resolve) => server.close(resolve)) };
}

/** daas as a user starts it: `daas dev`, in a private folder, with OIDC configured. */
export async function startDaas({ port, issuer }) {
  const dev = path.join(root, "target/e2e/dev");
  rmSync(dev, { recursive: true, force: true });
  mkdirSync(dev, { recursive: true });
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
  const args = ["--dev-dir", dev, "dev", "--listen", `127.0.0.1:${port}`, "--data-root", path.join(dev, "data")];
  const child = spawn(daasBin, args, { env, stdio: ["ignore", "pipe", "inherit"] });
  let output = "";
  child.stdout.on("data", (chunk) => { output += chunk; });
  const url = `http://localhost:${port}`;
  const deadline = Date.now() + 90_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`daas dev exited with ${child.exitCode}: ${output}`);
    try {
      if ((await fetch(`${url}/readyz`)).ok) break;
    } catch { /* not listening yet */ }
    if (Date.now() > deadline) throw new Error(`daas did not become ready: ${output}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  const passwords = Object.fromEntries(
    output.split("\n").map((l) => l.trim().split(/\s+/)).filter((w) => w.length === 2),
  );
  return {
    url,
    passwords,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((resolve) => (child.exitCode !== null ? resolve() : child.on("exit", resolve)));
      spawnSync(daasBin, ["--dev-dir", dev, "dev-db", "--stop"], { env, stdio: "inherit" });
      killSessions(path.join(dev, "sessions"));
    },
  };
}

/**
 * Kills what is left of the sessions under `dir`: they outlive daas by design, and a test
 * run must not leave them behind. A process group is signalled only while its leader is
 * still the process the handle names (same start time): group numbers are recycled.
 * The JavaScript twin of `daas::runtime::local::kill_all`, which the Rust tests use.
 */
function killSessions(dir) {
  for (const id of existsSync(dir) ? readdirSync(dir) : []) {
    try {
      const handle = JSON.parse(readFileSync(path.join(dir, id, "handle.json"), "utf8"));
      const stat = readFileSync(`/proc/${handle.pid}/stat`, "utf8");
      const start = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
      if (handle.pid > 1 && start === handle.start_time) process.kill(-handle.pid, "SIGKILL");
    } catch { /* no handle, or the session is gone already */ }
  }
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
