// Page hide in Debian's headless Chromium, driven for tests/browser/test_browser.py: the
// documented snippet on the shop's home page, an event tracked and the page hidden at once
// (`pagehide`), (1) with the page's ordinary deliveries failing, so only the keepalive
// request the SDK sends on hide can deliver it: flush() must resolve on that request's 202;
// (2) with the API unreachable at hide and no delivery failed before: the event must stay
// stored, flush() must not resolve, and the next page load must deliver it.
//
//   node pagehide.mjs CONFIG.json      -> writes config.result (JSON), screenshots
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { cfg, isEvents, launch, recordDeliveries, runSteps, sleep, until } from "./driver.mjs";

const result = {
  homeLoads: 0, // each load of the snippet tracks one view of sku-1
  hidden: [], // requests with ?key= (sent on hide): {contentType, keyHeader}
  beacons: null, // navigator.sendBeacon calls (none: Chromium has keepalive fetch)
  delivered: [], // event ids in 202 answers the page saw
  keptalive: null, // (1): {id, flushed, stored}
  down: null, // (2): {id, flushed, queued, stored}
  adoptedKept: null, // (2): the kept event still stored once the next page's queue emptied
  problems: [], // page errors
};

mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 960, height: 420 });
await context.addInitScript(() => {
  window.__beacons = 0;
  const beacon = navigator.sendBeacon.bind(navigator);
  navigator.sendBeacon = (...args) => {
    window.__beacons += 1;
    return beacon(...args);
  };
});
context.on("request", async (request) => {
  if (request.method() !== "POST" || !isEvents(request.url()) || !request.url().includes("?key=")) return;
  const headers = await request.allHeaders();
  result.hidden.push({ contentType: headers["content-type"] || null, keyHeader: "x-api-key" in headers });
});
recordDeliveries(context, result.delivered);

const page = context.pages()[0] || (await context.newPage());
page.on("pageerror", (error) => result.problems.push(String(error)));

async function openHome(how) {
  result.homeLoads += 1;
  await how();
  await page.waitForFunction(() => window.sr && sr.queued === 0);
  await until("the snippet's view delivered", 20000, () => page.evaluate(() => sr.queued === 0));
}

/** Track a view of ``item`` and hide the page at once; the page shows what followed. */
const trackAndHide = (item) =>
  page.evaluate((item) => {
    const id = sr.track("view", { item_id: item });
    window.__flushed = false;
    window.dispatchEvent(new Event("pagehide"));
    sr.flush().then(() => (window.__flushed = true), () => undefined);
    return id;
  }, item);

const state = () =>
  page.evaluate(() => {
    const stored = JSON.parse(localStorage.getItem("streamrec_queue") || "[]");
    const out = { flushed: window.__flushed, queued: sr.queued, stored: stored.map((e) => e.id), beacons: window.__beacons };
    const note = document.getElementById("pagehide-state") || document.body.appendChild(document.createElement("pre"));
    note.id = "pagehide-state";
    note.textContent = `after pagehide: flush() resolved: ${out.flushed}; queued: ${out.queued}; stored: ${out.stored.length}`;
    return out;
  });

// The page's ordinary deliveries carry the key in a header, never in the URL.
const ordinary = (url) => isEvents(url.href) && !url.search.includes("key=");

await runSteps(context, page, result, async () => {
  await openHome(() => page.goto(`${cfg.shop}/`));

  // (1) Ordinary deliveries fail: only the keepalive request sent on hide can deliver.
  await context.route(ordinary, (route) => route.abort("connectionrefused"));
  const id1 = await trackAndHide("sku-7");
  await until("flush() resolved by the keepalive's 202", 15000, () => page.evaluate(() => window.__flushed));
  const one = await state();
  result.keptalive = { id: id1, flushed: one.flushed, stored: one.stored };
  result.beacons = one.beacons;
  await page.screenshot({ path: join(cfg.screenshots, "1-hidden-keepalive-202.png") });
  await context.unroute(ordinary);

  // (2) A fresh page; the API cannot be reached when the page is hidden.
  await openHome(() => page.reload());
  const down = (url) => isEvents(url.href);
  await context.route(down, (route) => route.abort("connectionrefused"));
  const id2 = await trackAndHide("sku-8");
  await sleep(1500);
  const two = await state();
  result.down = { id: id2, ...two };
  await page.screenshot({ path: join(cfg.screenshots, "2-hidden-api-down-kept.png") });

  // The API is back: the next page load takes the stored event and delivers it.
  await context.unroute(down);
  result.homeLoads += 1;
  await page.reload();
  await until("the kept event delivered by the next page", 20000, () => result.delivered.includes(id2));
  // the page's own view and its list's impressions (tracked once the list shows, maybe
  // after a flush() resolved) deliver too; then nothing of the kept event may remain stored
  await until("the next page's queue emptied", 20000, () => page.evaluate(() => sr.queued === 0));
  result.adoptedKept = await page.evaluate((id) => (localStorage.getItem("streamrec_queue") || "").includes(id), id2);
  await page.screenshot({ path: join(cfg.screenshots, "3-next-page-delivered.png") });
});
