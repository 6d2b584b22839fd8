// Drives the /admin/ui dashboard in headless Chromium (Debian's `chromium`) for
// tests/tests/dashboard.rs, against a host the Rust test started on a loopback port.
//
// Environment: BASE_URL, ADMIN_TOKEN, TENANTS (comma separated), PIN (the tenant to give a
// priority from the page), PRIORITY, SCREENSHOT (PNG path), CHROMIUM (executable).
// Prints one JSON line on success: {"ok": true, "rows": [...], "set": {...}}. Exits non-zero
// with a message on any failure.

import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const env = (name) => {
  const v = process.env[name];
  if (!v) throw new Error(`${name} is not set`);
  return v;
};
const base = env("BASE_URL");
const token = env("ADMIN_TOKEN");
const tenants = env("TENANTS").split(",");
const pin = env("PIN");
const priority = env("PRIORITY");
const screenshot = env("SCREENSHOT");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const log = (...a) => console.error("[dashboard.mjs]", ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One tenant request through the real server (opens the tenant's pool). */
async function traffic(tenant) {
  const r = await fetch(`${base}/users/users`, { headers: { "x-tenant-id": tenant } });
  if (r.status !== 200) throw new Error(`GET /users/users for ${tenant}: ${r.status} ${await r.text()}`);
}

const profile = mkdtempSync(join(tmpdir(), "polymongo-chromium-"));
let browser;
try {
  // A persistent context on a fresh, temporary profile (Playwright passes it as
  // --user-data-dir); the flags keep Chromium off the network and quiet.
  browser = await chromium.launchPersistentContext(profile, {
    executablePath,
    headless: true,
    timeout: 60_000,
    viewport: { width: 1280, height: 1000 },
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = browser.pages()[0] || (await browser.newPage());
  page.on("console", (m) => log("console:", m.type(), m.text()));
  page.on("pageerror", (e) => log("page error:", e.message));
  page.setDefaultTimeout(20_000);

  // 1. The page asks for the token; a wrong one is refused.
  await page.goto(`${base}/admin/ui`);
  await page.locator("#login").waitFor({ state: "visible" });
  await page.fill("#token", "wrong-token");
  await page.click("#login-form button[type=submit]");
  await page.locator("#login-error", { hasText: "refused" }).waitFor();
  log("a wrong token is refused");

  // 2. The right token shows the live dashboard, no pool yet for our tenants.
  await page.fill("#token", token);
  await page.click("#login-form button[type=submit]");
  await page.locator("#app").waitFor({ state: "visible" });
  await page.locator("#live.live").waitFor();
  for (const t of tenants) {
    if ((await page.locator(`#pools tr[data-db="${t}"]`).count()) !== 0)
      throw new Error(`pool ${t} shown before any traffic`);
  }
  log("dashboard live, no pools for the test tenants yet");

  // 3. Traffic in waves over a few seconds (so the chart has a history); pools appear live.
  for (let wave = 0; wave < 4; wave++) {
    for (const t of tenants.slice(0, 2 + wave)) await traffic(t);
    await sleep(1000);
  }
  const last = tenants[tenants.length - 1];
  await page.locator(`#pools tr[data-db="${last}"]`).waitFor();
  const rows = await page.$$eval("#pools tbody tr", (trs) => trs.map((tr) => tr.dataset.db));
  log("rows:", rows.join(", "));

  // 4. Set a priority from the page: the row's button fills the form.
  await traffic(pin);
  const row = page.locator(`#pools tr[data-db="${pin}"]`);
  await row.waitFor();
  await row.locator("button").click();
  if ((await page.inputValue("#priority-db")) !== pin) throw new Error("the row's button did not fill the form");
  await page.fill("#priority-value", priority);
  await page.click("#priority-form button[type=submit]");
  await page.locator("#priority-result.ok", { hasText: `set to ${priority}` }).waitFor();
  await page.locator(`#pools tr[data-db="${pin}"] td.priority`, { hasText: priority }).waitFor();
  log(`priority of ${pin} set to ${priority} from the page`);

  // 5. Plugins listed; let the chart take a couple more points, then the screenshot.
  await page.locator('#plugins tr[data-plugin="users"]').waitFor();
  await sleep(2000);
  await page.screenshot({ path: screenshot, fullPage: true });
  log("screenshot:", screenshot);
  console.log(JSON.stringify({ ok: true, rows, set: { db: pin, priority: Number(priority) } }));
} catch (e) {
  console.error("[dashboard.mjs] FAILED:", e && e.stack ? e.stack : e);
  process.exitCode = 1;
} finally {
  if (browser) await browser.close().catch(() => {});
  rmSync(profile, { recursive: true, force: true });
}
