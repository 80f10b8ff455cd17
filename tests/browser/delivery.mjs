// Events that outlive their page in Debian's headless Chromium, driven for
// tests/browser/test_browser.py:
// (1) a queue above the browser's 64 KiB limit of keepalive bodies in flight when the page
//     is left (a real navigation) while its ordinary delivery hangs: the keepalive requests
//     must carry the oldest events, in order (Playwright does not see requests of a page
//     being left: the API's counts tell), and the next page load the rest;
// (2) a visible tab crashes (CDP Page.crash: no pagehide) while its events wait stored
//     (the API unreachable): a tab of the shop opened afterwards must send them once the
//     crashed tab's mark is 15 s old.
//
//   node delivery.mjs CONFIG.json      -> writes config.result (JSON), screenshots
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { cfg, isEvents, launch, recordDeliveries, runSteps, sleep, until } from "./driver.mjs";

// views of each item, in turn (~130 KB): sent at once in ~30 KB batches, the first two and
// the small last one would fit in 64 KiB, the third not
const BLOCKS = [["sku-36", 100], ["sku-37", 100], ["sku-38", 100], ["sku-39", 100], ["sku-34", 20]];
const result = {
  homeLoads: 0, // each load of the snippet tracks one view of sku-1
  afterLeaving: null, // (1): views of each of BLOCKS the API counted before the next page
  delivered: [], // event ids in 202 answers the browser saw
  big: null, // (1): {ids, storedBytes, queued}
  crashed: null, // (2): {ids, marks (each stored entry's tab and that tab's beat in streamrec_tabs), waitedMs, queuedAfter}
  problems: [], // page errors
};

mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 960, height: 420 });
recordDeliveries(context, result.delivered);

const page = context.pages()[0] || (await context.newPage());
page.on("pageerror", (error) => result.problems.push(String(error)));

async function openHome(tab) {
  result.homeLoads += 1;
  await tab.goto(`${cfg.shop}/`);
  await tab.waitForFunction(() => window.sr && sr.queued === 0, null, { timeout: 20000 });
}

/** Views of each of BLOCKS (the API's exact counts). */
async function views() {
  const out = {};
  for (const [item] of BLOCKS) {
    const r = await fetch(`${cfg.api}/v1/admin/items/${item}/stats`, { headers: { "X-API-Key": cfg.adminKey } });
    out[item] = (await r.json()).views;
  }
  return out;
}

/** Views of each of BLOCKS once they moved from ``before`` and were then unchanged for 2 s.
 * (Only "unchanged for 2 s" took the counts before the worker had counted anything when it
 * was slower than that to start on the keepalive requests' events: all of them 0.) */
async function settledViews(before) {
  let last = await until("some events of the keepalive requests counted", 30000, async () => {
    const now = await views();
    return JSON.stringify(now) !== JSON.stringify(before) && now;
  });
  for (let stable = 0; stable < 2000; stable += 500) {
    await sleep(500);
    const now = await views();
    if (JSON.stringify(now) !== JSON.stringify(last)) stable = -500;
    last = now;
  }
  return last;
}

/** A note on the page about its queue, for the screenshot. */
const note = (tab, text) =>
  tab.evaluate((text) => {
    const el = document.getElementById("delivery-state") || document.body.appendChild(document.createElement("pre"));
    el.id = "delivery-state";
    el.textContent = `${text}; queued: ${sr.queued}; stored: ${(localStorage.getItem("streamrec_queue") || "").length} bytes`;
  }, text);

const ordinary = (url) => isEvents(url.href) && !url.search.includes("key=");

await runSteps(context, page, result, async () => {
  // (1) Ordinary delivery hangs (not failing: the page sends on hide); then the page is left.
  await openHome(page);
  await context.route(ordinary, () => undefined); // never answered
  const ids = await page.evaluate((items) => items.flatMap(([item, n]) => Array.from({ length: n }, () => sr.track("view", { item_id: item }))), BLOCKS);
  await sleep(300);
  const storedBytes = await page.evaluate(() => (localStorage.getItem("streamrec_queue") || "").length);
  result.big = { ids, storedBytes, queued: await page.evaluate(() => sr.queued) };
  await note(page, "before leaving the page");
  await page.screenshot({ path: join(cfg.screenshots, "1-long-queue-before-leaving.png") });
  const beforeLeaving = await views(); // nothing of the queue sent yet: the delivery hangs
  await page.goto("about:blank"); // pagehide: the keepalive requests
  result.afterLeaving = await settledViews(beforeLeaving);
  await context.unroute(ordinary);
  await openHome(page); // the next page load sends what the keepalive requests could not carry
  await until("every event of the long queue delivered", 30000, () => ids.every((id) => result.delivered.includes(id)));
  await note(page, "the next page delivered the rest");
  await page.screenshot({ path: join(cfg.screenshots, "2-next-page-delivered-the-rest.png") });

  // (2) A visible tab's deliveries fail; it crashes with its events stored and marked.
  const down = (url) => isEvents(url.href);
  let apiDown = true; // (a route cannot be removed once a page of the context crashed)
  await context.route(down, (route) => (apiDown ? route.abort("connectionrefused") : route.continue()));
  const lost = await page.evaluate(() => [1, 2, 3].map(() => sr.track("view", { item_id: "sku-35" })));
  await page.evaluate(() => void sr.flush().catch(() => undefined)); // fails, retried later
  await sleep(500);
  const marks = await page.evaluate(() => {
    const beats = JSON.parse(localStorage.getItem("streamrec_tabs") || "{}");
    return JSON.parse(localStorage.getItem("streamrec_queue") || "[]").map((e) => [e.t, beats[e.t]]);
  });
  await note(page, "this tab is about to crash");
  await page.screenshot({ path: join(cfg.screenshots, "3-tab-with-stored-events.png") });
  const cdp = await context.newCDPSession(page);
  const crashed = new Promise((resolve) => page.once("crash", resolve));
  cdp.send("Page.crash").catch(() => undefined);
  await crashed;
  const at = Date.now();
  apiDown = false;
  const other = await context.newPage();
  other.on("pageerror", (error) => result.problems.push(String(error)));
  await openHome(other);
  await until("the crashed tab's events sent by the other tab", 40000, () => lost.every((id) => result.delivered.includes(id)));
  const waitedMs = Date.now() - at;
  await other.waitForFunction(() => sr.queued === 0);
  result.crashed = { ids: lost, marks, waitedMs, queuedAfter: await other.evaluate(() => sr.queued) };
  await note(other, "another tab sent the crashed tab's events");
  await other.screenshot({ path: join(cfg.screenshots, "4-other-tab-sent-the-crashed-tabs-events.png") });
});
