// Acceptance 1 of issue 7: the admin adds an image in the admin console, sam (BL11's
// scientist) links a dataset to S0011, alice finds the image in the Launch dialog and the
// dataset on her proposal page; the admin disables the image and it is gone from
// alice's list. Screenshots under target/screenshots/.
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { after, before, test } from "node:test";
import { freePort, launchBrowser, root, shot, startDaas, startProvider, strictPage } from "./harness.mjs";

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

/** A fresh browser context logged in as `who` through the facility's provider. */
async function loginAs(who) {
  const page = await strictPage(browser, daas.url);
  await page.goto(`${daas.url}/proposals`);
  await page.getByRole("link", { name: "Log in with Example Facility ID" }).click();
  await page.waitForURL(/127\.0\.0\.1/);
  await page.fill("input[name=login]", who);
  await page.fill("input[name=password]", "anything");
  await page.click("button[type=submit]");
  const consent = page.locator("button[type=submit]", { hasText: "Continue" });
  if (await consent.isVisible({ timeout: 5000 }).catch(() => false)) await consent.click();
  await page.waitForURL(`${daas.url}/proposals`);
  return page;
}

/** The names of the images the Launch dialog of 20180101 offers. */
async function launchable(page) {
  await page.goto(`${daas.url}/proposals/20180101`);
  await page.locator("#launch").click();
  await page.waitForURL(`${daas.url}/proposals/20180101/launch`);
  // Each choice reads "name (kind)".
  return (await page.locator("ul.choices li a").allTextContents()).map((t) => t.trim().replace(/ \(\w+\)$/, ""));
}

test("admin adds an image, sam links a dataset, alice sees both; a disabled image is gone", async () => {
  // The admin registers an image.
  const admin = await loginAs("admin");
  await admin.getByRole("link", { name: "Admin" }).click();
  await admin.waitForURL(`${daas.url}/admin/images`);
  await admin.fill("#name", "Fiji desktop");
  await admin.selectOption("#kind", "desktop");
  await admin.fill("#reference", "registry.facility.example/daas/fiji:2.14");
  await admin.fill("#description", "Fiji (ImageJ) with the facility's plugins.");
  await shot(admin, "issue7-01-admin-add-image");
  await admin.getByRole("button", { name: "Add image" }).click();
  await admin.waitForURL(`${daas.url}/admin/images`);
  await admin.locator('tr[data-image="Fiji desktop"]').getByText("enabled").waitFor();
  await shot(admin, "issue7-02-admin-image-added");

  // An invalid reference is refused with the field named, nothing added.
  await admin.fill("#name", "Broken");
  await admin.fill("#reference", "Not A Reference");
  await admin.getByRole("button", { name: "Add image" }).click();
  await admin.getByRole("alert").getByText(/^reference: /).waitFor();
  assert.equal(await admin.locator('tr[data-image="Broken"]').count(), 0);
  // The refusal is a 400 (expected here, not a fault of the page) and keeps what was typed.
  assert.equal(await admin.inputValue("#name"), "Broken");
  assert.equal(await admin.inputValue("#reference"), "Not A Reference");
  const refusal = (e) => e.includes("/admin/images") && e.includes("400");
  assert.ok(admin.errors.some(refusal), `${admin.errors}`);
  admin.errors = admin.errors.filter((e) => !refusal(e));

  // sam links a folder of the data root to S0011.
  const folder = path.join(root, "target/e2e/dev/data/BL11/20180101/S0011/tomo_scan_0042");
  mkdirSync(folder, { recursive: true });
  writeFileSync(path.join(folder, "projections.h5"), Buffer.alloc(4096, 7));
  const sam = await loginAs("sam");
  await sam.goto(`${daas.url}/proposals/20180101`);
  await sam.locator("#link-S0011").click();
  await sam.waitForURL(/\/experiments\/S0011\/datasets\/new$/);
  await sam.fill("#location", "20180101/S0011/../../../etc");
  await sam.getByRole("button", { name: "Link dataset" }).click();
  await sam.getByRole("alert").getByText(/must not contain/).waitFor();
  // A refusal is a 400 (expected here), shown by the field it names, which keeps what was typed.
  assert.equal(await sam.getAttribute("#location", "aria-describedby"), "form-error");
  assert.equal(await sam.inputValue("#location"), "20180101/S0011/../../../etc");
  const linkRefusal = (e) => e.includes("/datasets/new") && e.includes("400");
  assert.ok(sam.errors.some(linkRefusal), `${sam.errors}`);
  sam.errors = sam.errors.filter((e) => !linkRefusal(e));
  await sam.fill("#location", "BL11/20180101/S0011/tomo_scan_0042");
  await sam.fill("#metadata", '{"sample": "coupon F", "energy_kev": 33}');
  await shot(sam, "issue7-03-sam-link-dataset");
  await sam.getByRole("button", { name: "Link dataset" }).click();
  await sam.waitForURL(`${daas.url}/proposals/20180101`);
  await sam.getByRole("cell", { name: "tomo_scan_0042", exact: true }).waitFor();

  // alice sees the dataset on her proposal page and the image in the Launch dialog.
  const alice = await loginAs("alice");
  await alice.goto(`${daas.url}/proposals/20180101`);
  await alice.getByRole("cell", { name: "tomo_scan_0042", exact: true }).waitFor();
  assert.equal(await alice.locator("#link-S0011").count(), 0, "alice is not offered to link data");
  await shot(alice, "issue7-04-alice-sees-dataset");
  assert.ok((await launchable(alice)).includes("Fiji desktop"));
  await shot(alice, "issue7-05-alice-launch-dialog");

  // The admin disables the image; alice's list no longer has it.
  await admin.goto(`${daas.url}/admin/images`);
  await admin.getByRole("button", { name: "Disable Fiji desktop" }).click();
  await admin.locator('tr[data-image="Fiji desktop"]').getByText("disabled").waitFor();
  await shot(admin, "issue7-06-admin-image-disabled");
  const after = await launchable(alice);
  assert.ok(after.includes("Xfce desktop") && !after.includes("Fiji desktop"), `${after}`);
  await shot(alice, "issue7-07-alice-launch-dialog-without-it");

  // The admin's changes are in the audit log.
  await admin.goto(`${daas.url}/admin/audit?action=image`);
  await admin.getByText("image.disable").waitFor();
  await admin.getByText("image.create").waitFor();
  await shot(admin, "issue7-08-audit-log");

  for (const page of [admin, sam, alice]) assert.deepEqual(page.errors, [], "no console errors");
});

// Issue 14, item 8: no admin page scrolls sideways, on a laptop (1366 px) or a narrow
// window (800 px): wide tables fold into one labelled block per row.
test("every admin page fits a 1366-px and an 800-px window", async () => {
  const admin = await loginAs("admin");
  const pages = ["images", "flavours", "quotas", "sessions", "users", "usage", "audit", "notices", "import"];
  const wide = [];
  for (const width of [1366, 800]) {
    await admin.setViewportSize({ width, height: 900 });
    for (const name of pages) {
      await admin.goto(`${daas.url}/admin/${name}`);
      // Neither the page nor a table in it is wider than its room.
      const overflow = await admin.evaluate(() => {
        const main = document.querySelector("main").getBoundingClientRect();
        const tables = [...document.querySelectorAll("main table")].map((t) => t.getBoundingClientRect().right - main.right);
        return Math.max(document.documentElement.scrollWidth - document.documentElement.clientWidth, ...tables);
      });
      if (overflow > 1) wide.push(`${name} at ${width} px: ${Math.round(overflow)} px too wide`);
      // Every number in a field shows whole ("131072", not "1310").
      const cut = await admin.evaluate(() =>
        [...document.querySelectorAll("main input[type=number]")]
          .filter((i) => i.value && i.scrollWidth > i.clientWidth)
          .map((i) => `${i.id}=${i.value}`));
      if (cut.length) wide.push(`${name} at ${width} px: cut off ${cut.join(", ")}`);
      await shot(admin, `14-08-admin-${name}-${width}`);
    }
  }
  assert.deepEqual(wide, []);
  assert.deepEqual(admin.errors, [], "no console errors");
});
