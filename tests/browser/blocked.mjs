// A shopper whose browser blocks localStorage, driven for tests/browser/test_browser.py:
// the documented snippet on the shop's home page while POST /v1/events cannot reach the
// API, then with the API back; a recommendation opened in a new tab with the middle
// button. Debian's headless Chromium, playwright-core.
//
//   node blocked.mjs CONFIG.json      -> writes config.result (JSON), screenshots
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { cfg, launch, recordDeliveries, runSteps, until } from "./driver.mjs";

const result = {
  globals: null, // window properties the page gained besides the init script's own
  cookies: null, // cookie names while the events were stuck
  queuedWhileDown: null,
  refusedNull: null, // what track("view", null) gave the page
  anonymousId: null,
  middleClicked: null,
  clicks: [], // click events the page posted: {item_id, recommendation_id}
  impressions: [], // impression events posted: {id, item_ids, recommendation_id}
  delivered: [], // event ids in 202 answers
  homeList: null, // the home page's list: {rid, ids}
  finalQueued: null,
  problems: [], // page errors (uncaught exceptions, CORS)
};

mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 960, height: 420 });
await context.addInitScript(() => {
  window.__before = Object.keys(window);
  Object.defineProperty(window, "localStorage", {
    get() {
      throw new DOMException("blocked by the browser's settings", "SecurityError");
    },
  });
});
context.on("request", (request) => {
  if (request.method() !== "POST" || !request.url().startsWith(`${cfg.api}/v1/events`)) return;
  try {
    const body = JSON.parse(request.postData() || "{}");
    for (const e of body.events || [body]) {
      if (e.type === "click") result.clicks.push({ item_id: e.item_id, recommendation_id: e.recommendation_id });
      if (e.type === "impression") result.impressions.push({ id: e.event_id, item_ids: e.item_ids, recommendation_id: e.recommendation_id });
    }
  } catch {
    result.problems.push(`unreadable body of ${request.url()}`);
  }
});
recordDeliveries(context, result.delivered);
// The API is unreachable for events (reads still answer, so the list shows).
const down = (url) => url.href.startsWith(`${cfg.api}/v1/events`);
await context.route(down, (route) => route.abort("connectionrefused"));

const page = context.pages()[0] || (await context.newPage());
page.on("pageerror", (error) => result.problems.push(String(error)));
page.on("response", async (response) => {
  if (!response.url().includes("/recommendations")) return;
  try {
    const body = await response.json();
    result.homeList = { rid: body.recommendation_id, ids: (body.items || []).map((item) => item.item_id) };
  } catch {
    result.problems.push(`unreadable list from ${response.url()}`);
  }
});
page.on("console", (message) => {
  if (message.type() === "error" && message.text().includes("CORS")) result.problems.push(message.text());
});

await runSteps(context, page, result, async () => {
  await page.goto(`${cfg.shop}/`);
  await page.waitForSelector("#streamrec-recs a");
  await until("a delivery of the view failed", 15000, () => page.evaluate(() => sr.queued > 0 && document.cookie.length > 0));
  result.globals = await page.evaluate(() => Object.keys(window).filter((k) => !window.__before.includes(k) && k !== "__before"));
  result.anonymousId = await page.evaluate(() => sr.anonymousId);
  result.queuedWhileDown = await page.evaluate(() => sr.queued);
  result.cookies = await page.evaluate(() => document.cookie.split("; ").map((c) => c.split("=")[0]));
  result.refusedNull = await page.evaluate(() => {
    try {
      return sr.track("view", null);
    } catch (e) {
      return `thrown: ${e}`;
    }
  });
  await page.screenshot({ path: join(cfg.screenshots, "1-storage-blocked-api-down.png") });

  // The API is back: the middle click opens the item in a new tab and counts as a click.
  await context.unroute(down);
  result.middleClicked = await page.getAttribute("#streamrec-recs a", "data-item-id");
  const [tab] = await Promise.all([context.waitForEvent("page"), page.click("#streamrec-recs a", { button: "middle" })]);
  await tab.waitForLoadState();
  await tab.waitForFunction(() => window.sr && sr.queued > 0);
  await tab.evaluate(() => sr.flush()); // the new tab's view of the product page
  await page.bringToFront();
  await page.evaluate(() => sr.flush()); // the stuck view and the click, at once
  // The home list's impressions are tracked once it has shown for a second (with the page
  // visible), which can be after that flush() resolved (its queue then still holds them):
  // wait until they are delivered; nothing else is tracked on this page after them, so
  // a flush() then must leave the queue empty.
  await until("the home list's impressions delivered", 20000, () => {
    const seen = new Set(result.impressions
      .filter((e) => e.recommendation_id === result.homeList.rid && result.delivered.includes(e.id))
      .flatMap((e) => e.item_ids));
    return result.homeList.ids.length > 0 && result.homeList.ids.every((id) => seen.has(id));
  });
  await page.evaluate(() => sr.flush());
  result.finalQueued = await page.evaluate(() => sr.queued);
  await page.screenshot({ path: join(cfg.screenshots, "2-api-back-middle-click.png") });
});
