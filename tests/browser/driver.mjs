// What the Chromium driver scripts of tests/browser share: their config, polling with a
// deadline, the run of their steps (result file, failure screenshot, exit code), and
// Debian's headless Chromium (never a downloaded browser) with a profile of
// their own, which harness.py kills whatever happens.
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium } from "playwright-core";

/** The driver's config (CONFIG.json, written by harness.driver). */
export const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
export const log = (...args) => console.log(new Date().toISOString(), ...args);

/** ``probe()``'s first truthy value, polled every ``every`` ms; throws after ``ms``. */
export async function until(what, ms, probe, every = 200) {
  const end = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await sleep(every);
  }
}

/** Whether ``url`` is the API's tracking endpoint (``POST /v1/events``). */
export const isEvents = (url) => url.startsWith(`${cfg.api}/v1/events`);

/** Append to ``delivered`` the event ids of every 202 the API gives the tracking posts of
 * ``context``'s pages (an aborted request's answer cannot be read: skipped). */
export function recordDeliveries(context, delivered) {
  context.on("response", async (response) => {
    try {
      if (isEvents(response.url()) && response.status() === 202) {
        delivered.push(...((await response.json()).event_ids || []));
      }
    } catch {
      // an aborted request's answer cannot be read
    }
  });
}

/** A persistent headless Chromium context of ``viewport`` size. */
export async function launch(viewport) {
  const context = await chromium.launchPersistentContext(cfg.userDataDir, {
    executablePath: cfg.chromium,
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    viewport,
  });
  context.setDefaultTimeout(20000);
  return context;
}

/** Run a driver's ``steps``: an error is recorded in ``result.error`` with a failure
 * screenshot; the result file is written and the browser closed whatever happens; the
 * process exits 1 on an error, else 0. */
export async function runSteps(context, page, result, steps) {
  try {
    await steps();
  } catch (error) {
    result.error = String(error && error.stack ? error.stack : error);
    await page.screenshot({ path: join(cfg.screenshots, "failure.png") }).catch(() => {});
  } finally {
    writeFileSync(cfg.result, JSON.stringify(result, null, 2));
    await context.close();
  }
  log("done", result.error ? "with an error" : "");
  process.exit(result.error ? 1 : 0);
}
