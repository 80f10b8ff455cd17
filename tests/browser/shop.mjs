// One shopper in headless Chromium (Debian's, never a downloaded browser), driven by
// playwright-core for tests/browser/test_browser.py, which starts the stack and the shop,
// writes CONFIG.json and checks the server side afterwards.
//
//   node shop.mjs CONFIG.json      -> writes config.result (JSON), screenshots
//
// The visit: the shop's home page (the documented snippet, another origin than the API)
// whose first POST /v1/events reaches the API but is answered 503 to the page, so the SDK
// must resend the same event ids; impressions of the list; a click on a recommendation
// (leaving the page: the click goes by keepalive fetch); a purchase on the product page; back home,
// "Log in as u42" (identify); reloads until the page shows u42 a personalized list.
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { cfg, isEvents, launch, log, runSteps, sleep, until } from "./driver.mjs";

const result = {
  homeLoads: 0, // each load of the snippet tracks one view of sku-1
  forced: null, // the delivery answered 503 to the page: {ids, serverStatus}
  sent: {}, // event_id -> event, as the page posted them (fetch and beacon)
  delivered: [], // event ids in 202 answers the page saw
  lists: [], // recommendation answers the page got: {path, source, ids}
  script: null, // how /sdk/streamrec.js travelled
  clicked: null,
  bought: null,
  anonymousId: null,
  personalized: null, // {source, ids, shown}
  finalQueued: null,
  problems: [], // console errors and page errors
};

mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 960, height: 420 });

context.on("request", (request) => {
  if (request.method() !== "POST" || !isEvents(request.url())) return;
  try {
    const body = JSON.parse(request.postData() || "{}");
    for (const event of body.events || [body]) result.sent[event.event_id] = event;
  } catch {
    result.problems.push(`unreadable body of ${request.url()}`);
  }
});
context.on("response", async (response) => {
  const url = response.url();
  try {
    if (url.startsWith(`${cfg.api}/sdk/streamrec.js`)) {
      const headers = await response.allHeaders();
      result.script = { status: response.status(), encoding: headers["content-encoding"] || null,
        length: Number(headers["content-length"] || -1) };
    } else if (isEvents(url) && response.status() === 202) {
      result.delivered.push(...((await response.json()).event_ids || []));
    } else if (url.includes("/recommendations") || url.includes("/similar")) {
      const body = await response.json();
      result.lists.push({ path: new URL(url).pathname, source: body.source, rid: body.recommendation_id,
        ids: (body.items || []).map((item) => item.item_id) });
    }
  } catch {
    // a beacon's or an aborted request's answer cannot be read: nothing to record
  }
});

// The first delivery reaches the API for real, but the page is told 503: only the SDK's
// retry with the same event ids can make it count, and only the API's dedupe keeps it once.
await context.route((url) => isEvents(url.href), async (route, request) => {
  if (request.method() !== "POST" || result.forced) return route.continue();
  const real = await route.fetch();
  const body = JSON.parse(request.postData() || "{}");
  result.forced = { ids: (body.events || [body]).map((e) => e.event_id), serverStatus: real.status() };
  log("forced failure of a delivery the API answered", real.status());
  return route.fulfill({
    status: 503,
    contentType: "application/json",
    headers: { "Access-Control-Allow-Origin": cfg.shop, "Access-Control-Expose-Headers": "Retry-After",
      "Retry-After": "1" },
    body: JSON.stringify({ error: { code: "broker_unavailable", message: "forced by the test" } }),
  });
});

const page = context.pages()[0] || (await context.newPage());
page.on("console", (message) => {
  if (message.type() === "error" || message.type() === "warning") result.problems.push(message.text());
});
page.on("pageerror", (error) => result.problems.push(String(error)));

async function openHome(how) {
  result.homeLoads += 1;
  await how();
  await page.waitForSelector("#streamrec-recs a");
}
const shown = () => page.$$eval("#streamrec-recs a", (links) => links.map((a) => a.dataset.itemId));

await runSteps(context, page, result, async () => {
  // 1. Anonymous visit: the forced failure, its retry, impressions of the list.
  await openHome(() => page.goto(`${cfg.shop}/`));
  result.anonymousId = await page.evaluate(() => sr.anonymousId);
  await until("the failed delivery resent with the same ids and accepted", 30000, () =>
    result.forced && result.forced.ids.every((id) => result.delivered.includes(id)));
  await context.unrouteAll({ behavior: "wait" }); // from here on, real CORS preflights only
  await until("an impression of the home list delivered", 30000, () =>
    Object.values(result.sent).some((e) => e.type === "impression" && result.delivered.includes(e.event_id)));
  await page.screenshot({ path: join(cfg.screenshots, "1-home-anonymous.png") });

  // 2. A click on the first recommendation leaves the page (the click goes by keepalive fetch).
  result.clicked = await page.getAttribute("#streamrec-recs a", "data-item-id");
  await Promise.all([page.waitForURL(`**/products/**`), page.click("#streamrec-recs a")]);
  await page.click("#buy");
  await page.waitForSelector("body[data-bought='1']");
  result.bought = result.clicked;
  await page.screenshot({ path: join(cfg.screenshots, "2-product-bought.png") });

  // 3. Back home, log in: identify links the visit so far to u42.
  await openHome(() => page.goto(`${cfg.shop}/`));
  await page.click("#streamrec-login");
  await page.evaluate(() => sr.flush());

  // 4. Reload until the page shows u42 a personalized list (the worker folds the merged
  //    history into the model in the background).
  result.personalized = await until("a personalized list for u42 on the page", 90000, async () => {
    const before = result.lists.length;
    await openHome(() => page.reload());
    const mine = await until("u42's list answered", 20000, () =>
      result.lists.slice(before).find((l) => l.path === "/v1/users/u42/recommendations"));
    const ids = await shown();
    if (mine.source !== "personalized" || ids.join() !== mine.ids.join()) {
      await sleep(700);
      return null;
    }
    return { source: mine.source, ids: mine.ids, shown: ids, rid: mine.rid };
  });
  // The list's impressions are tracked once it has shown for a second, which can be after
  // a flush() resolved (its queue then still holds them): wait until they are delivered;
  // nothing else is tracked on this page after them, so flush() must leave the queue empty.
  await until("the personalized list's impressions delivered", 20000, () => {
    const seen = new Set(Object.values(result.sent)
      .filter((e) => e.type === "impression" && e.recommendation_id === result.personalized.rid
        && result.delivered.includes(e.event_id))
      .flatMap((e) => e.item_ids));
    return result.personalized.shown.every((id) => seen.has(id));
  });
  await page.evaluate(() => sr.flush());
  result.finalQueued = await page.evaluate(() => sr.queued);
  await page.screenshot({ path: join(cfg.screenshots, "3-home-personalized.png") });
});
