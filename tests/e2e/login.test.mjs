// Acceptance 1 of issue 3: log in through the provider's page, see alice's proposals, star
// one and see it first, open it, log out, and find that the back button does not reach
// the proposals page.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { freePort, launchBrowser, shot, startDaas, startProvider, strictPage } from "./harness.mjs";

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

const firstRow = (page) => page.locator("table.list tbody tr").first();

test("alice logs in with the facility account, stars, opens and logs out", async () => {
  const page = await strictPage(browser, daas.url);
  await page.goto(`${daas.url}/proposals`);
  assert.match(page.url(), /\/login\?next=%2Fproposals$/);
  await shot(page, "01-login");

  await page.getByRole("link", { name: "Log in with Example Facility ID" }).click();
  await page.waitForURL(/127\.0\.0\.1/);
  await page.fill("input[name=login]", "alice");
  await page.fill("input[name=password]", "anything");
  await shot(page, "02-provider-login");
  await page.click("button[type=submit]");
  // The provider asks for consent once.
  const consent = page.locator("button[type=submit]", { hasText: "Continue" });
  if (await consent.isVisible({ timeout: 5000 }).catch(() => false)) {
    await shot(page, "03-provider-consent");
    await consent.click();
  }
  await page.waitForURL(`${daas.url}/proposals`);
  await assert.doesNotReject(page.getByText("Alice Martin").waitFor());
  const rows = await page.locator("table.list tbody tr td:nth-child(2)").allTextContents();
  assert.deepEqual(rows.map((r) => r.trim()), ["20190315", "20180101"], "alice's two proposals, not bob's");
  await shot(page, "04-proposals");

  // Star 20180101 (htmx swaps the star in place), then it comes first.
  await page.getByRole("button", { name: "Add 20180101 to favourites" }).click();
  await page.getByRole("button", { name: "Remove 20180101 from favourites" }).waitFor();
  await page.reload();
  assert.match(await firstRow(page).textContent(), /20180101/);
  assert.equal(await firstRow(page).getByRole("button").getAttribute("aria-pressed"), "true");
  await shot(page, "05-proposals-starred");

  await page.getByRole("link", { name: "20180101" }).click();
  await page.waitForURL(`${daas.url}/proposals/20180101`);
  for (const code of ["S0011", "S0012", "S0013", "S0014"]) {
    await page.getByRole("heading", { name: new RegExp(`^${code}`) }).waitFor();
  }
  await page.getByRole("cell", { name: "tomo_scan_0001", exact: true }).waitFor();
  await shot(page, "06-proposal");

  await page.getByRole("button", { name: "Log out" }).click();
  await page.waitForURL(/\/login$/);
  await shot(page, "07-logged-out");
  await page.goBack();
  await page.waitForLoadState();
  assert.match(page.url(), /\/login/, "the back button lands on the login page");
  assert.equal(await page.getByText("test 1_D").count(), 0, "no proposal data after logout");
  await shot(page, "08-back-after-logout");

  assert.deepEqual(page.errors, [], "no console errors (CSP violations, failed scripts)");
});
