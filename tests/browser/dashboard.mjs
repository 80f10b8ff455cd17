// The operator dashboard in headless Chromium (Debian's, never a downloaded browser),
// driven by playwright-core for tests/browser/test_dashboard.py, which starts the stack,
// the simulated traffic, and compares what this script read with `streamrec status`.
//
//   node dashboard.mjs CONFIG.json   -> writes CONFIG.phaseA and CONFIG.result (JSON)
//
// Phase A (traffic flowing): a wrong key is refused, the admin key signs in (and is never
// in a URL), the numbers move from refresh to refresh, the charts draw, an item and a user
// are looked up, screenshots at 1280x800 and at 390x844 (no sideways scrolling, no table
// cell outside its card or hidden behind a sideways scroll), an id with "/" is looked up,
// and one a browser cannot send ("..") is refused in the lookup's card without leaving
// the previous result shown.
// Then it waits for CONFIG.go (the test stopped the traffic and the pipeline drained) and,
// phase B, reads every number after a refresh newer than that moment.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cfg, launch, log, runSteps, sleep, until } from "./driver.mjs";

const result = {
  wrongKeyMessage: null,
  urls: [], // every URL the page or its requests used (the key must be in none)
  dataRequests: 0, // GET /v1/admin/dashboard requests the page made
  moving: [], // {processed, events_per_s, generated_at} per refresh seen in phase A
  charts: null,
  item: null,
  user: null,
  phone: null,
  layout: {}, // per viewport: overflowing tables and cells outside their card
  slashLookup: null,
  dotsLookup: null,
  storage: null,
  metrics: null, // phase B: name -> [data-value, ...]
  rows: null, // phase B: per-partition and per-topic cells
  problems: [], // console errors/warnings, page errors, failed requests
};

mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 1280, height: 800 });
const page = context.pages()[0] || (await context.newPage());
page.on("console", (m) => {
  if (m.type() === "error" || m.type() === "warning") result.problems.push(`console: ${m.text()}`);
});
page.on("pageerror", (error) => result.problems.push(`pageerror: ${error}`));
page.on("requestfailed", (r) => result.problems.push(`failed: ${r.url()} ${r.failure()?.errorText}`));
page.on("request", (r) => {
  result.urls.push(r.url());
  if (new URL(r.url()).pathname === "/v1/admin/dashboard") result.dataRequests += 1;
});
page.on("framenavigated", (frame) => result.urls.push(frame.url()));

const value = (name) => page.$eval(`[data-metric="${name}"]`, (el) => el.dataset.value);
const generatedAt = async () => Number(await value("generated_at")) || 0;
// The page asks every `refresh_s` (5 s); the API recomputes an aggregate at most every
// 2 s (api/dashboard_feed.py MAX_AGE_S). Where the test waits for refreshes, it asks
// as soon as the shown one is that old, through the page's own refresh: the same request
// and rendering, the waits ~2.5x shorter.
const AGGREGATE_AGE_S = 2;
async function refreshWhenOld() {
  if (Date.now() / 1000 - (await generatedAt()) > AGGREGATE_AGE_S) {
    await page.evaluate(() => window.streamrecDashboard.refresh());
  }
}

async function allMetrics() {
  return page.$$eval("[data-metric]", (els) => {
    const out = {};
    for (const el of els) (out[el.dataset.metric] ||= []).push(el.dataset.value);
    return out;
  });
}

async function tableRows() {
  return page.$$eval("[data-metric][data-topic]", (els) => els.map((el) => ({
    metric: el.dataset.metric, topic: el.dataset.topic,
    partition: el.dataset.partition === undefined ? null : Number(el.dataset.partition),
    value: el.dataset.value })));
}

/** What does not fit at the current viewport: the page's width, tables wider than their
 * card (columns hidden behind a sideways scroll) and cells or numbers outside their card. */
async function layout() {
  return page.evaluate(() => {
    const out = { scrollWidth: document.documentElement.scrollWidth, width: window.innerWidth,
      hiddenColumns: [], outside: [] };
    for (const box of document.querySelectorAll(".scroll")) {
      if (box.offsetParent && box.scrollWidth > box.clientWidth + 1) {
        out.hiddenColumns.push(box.querySelector("tbody")?.id);
      }
    }
    for (const el of document.querySelectorAll("th, td, .kpi .value, dd, li")) {
      const card = el.offsetParent && el.closest(".card, .kpi");
      if (!card) continue;
      const [r, c] = [el.getBoundingClientRect(), card.getBoundingClientRect()];
      if (r.right > c.right + 1 || r.left < c.left - 1) out.outside.push(el.textContent.trim().slice(0, 40));
    }
    return out;
  });
}

async function signIn(key) {
  await page.fill("#key", key);
  await page.click("#login-form button[type=submit]");
}

await runSteps(context, page, result, async () => {
  // A wrong key: the form says so and the board stays hidden.
  await page.goto(`${cfg.api}/dashboard`);
  const before = result.problems.length;
  await signIn("not-the-admin-key");
  await page.waitForSelector("#login-error:not([hidden])");
  result.wrongKeyMessage = await page.textContent("#login-error");
  // The refused request's 401 is the one console error expected; anything else stays.
  result.problems.push(...result.problems.splice(before).filter((p) => !p.includes("401")));

  // The admin key: numbers appear, and they move while traffic flows.
  await signIn(cfg.adminKey);
  await page.waitForSelector('[data-metric="processed"]:not([data-value=""])');
  await until("the numbers moving over three refreshes", 90000, async () => {
    await refreshWhenOld();
    const seen = { processed: Number(await value("processed")),
      events_per_s: Number(await value("events_per_s")), generated_at: await generatedAt() };
    const last = result.moving[result.moving.length - 1];
    if (!last || seen.generated_at !== last.generated_at) result.moving.push(seen);
    const rising = result.moving.filter((m, i) => i > 0 && m.processed > result.moving[i - 1].processed);
    return rising.length >= 2 && seen.events_per_s > 0;
  }, 500);
  // Enough history for the charts to say something (also in the screenshots).
  await until("six refreshes of history", 90000, async () => {
    await refreshWhenOld();
    return page.evaluate(() => (window.streamrecDashboard.last()?.series.t.length || 0) >= 6);
  }, 500);
  result.charts = await page.$$eval("figure.chart svg", (svgs) => Object.fromEntries(svgs.map((svg) =>
    [svg.id, svg.querySelectorAll("polyline, rect.bar").length])));

  // Lookups: the top popular item and the test's own user.
  const itemId = await page.getAttribute('[data-metric="popular_score"]', "data-item");
  await page.fill("#item-id", itemId);
  await page.click("#item-form button");
  await page.waitForSelector("#item-result:not([hidden])");
  result.item = { id: itemId, name: await page.textContent("#item-name"),
    stock: await page.textContent("#item-stock"),
    views: Number(await value("item_views")), purchases: Number(await value("item_purchases")),
    similar: await page.$$eval("#item-similar li", (lis) => lis.length) };
  await page.fill("#user-id", cfg.userId);
  await page.click("#user-form button");
  await page.waitForSelector("#user-result:not([hidden])");
  result.user = { recent: await page.$$eval("#user-recent li", (lis) => lis.map((li) => li.textContent)),
    list: await page.$$eval("#user-list li", (lis) => lis.length),
    source: await page.textContent("#user-source"), cart: Number(await value("user_cart")),
    reasons: await page.$$eval("#user-list li .reason", (els) => els.map((e) => e.textContent)),
    traceSources: await page.$$eval("#explain-sources li[data-source]", (lis) =>
      lis.map((li) => ({ name: li.dataset.source, size: Number(li.dataset.value) }))),
    traceShown: await page.$eval("#explain", (el) => !el.hidden),
    experiment: await page.$eval("#user-experiment", (el) => (el.hidden ? null : el.textContent)) };

  // Screenshots: the top of the page on a desktop and on a phone.
  result.layout.desktop = await layout();
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.screenshot({ path: join(cfg.screenshots, "dashboard-desktop.png") });
  await page.screenshot({ path: join(cfg.screenshots, "dashboard-desktop-full.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await sleep(300);
  await page.evaluate(() => window.scrollTo(0, 0));
  result.phone = await page.evaluate(() => ({ scrollWidth: document.documentElement.scrollWidth,
    width: window.innerWidth }));
  result.layout.phone = await layout();
  await page.screenshot({ path: join(cfg.screenshots, "dashboard-phone.png") });
  await page.screenshot({ path: join(cfg.screenshots, "dashboard-phone-full.png"), fullPage: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  // An id with "/" (sent as %2F): looked up like any other, here an unknown item.
  await page.fill("#item-id", "a/b ü");
  await page.click("#item-form button");
  await until("the item a/b ü looked up", 20000, async () =>
    (await page.textContent("#item-name")) === "a/b ü", 200);
  result.slashLookup = { name: await page.textContent("#item-name"),
    stock: await page.textContent("#item-stock"),
    error: await page.$eval("#item-error", (el) => (el.hidden ? null : el.textContent)),
    resultShown: await page.$eval("#item-result", (el) => !el.hidden) };
  // ".." (valid, but a browser resolves it in a URL's path): said in the item's card,
  // and the previous item is no longer shown.
  await page.fill("#item-id", "..");
  await page.click("#item-form button");
  await page.waitForSelector("#item-error:not([hidden])");
  result.dotsLookup = { error: await page.textContent("#item-error"),
    resultShown: await page.$eval("#item-result", (el) => !el.hidden) };
  // The same id with a space after it is another (unknown) id, not our user again.
  await page.fill("#user-id", `${cfg.userId} `);
  await page.click("#user-form button");
  await until("the id with a space looked up", 20000, () => page.evaluate(() =>
    document.querySelector("#user-recent li")?.textContent === "none"), 200);
  // An entity in the experiment's holdout: its variant is named beside the list shown.
  await page.fill("#user-id", cfg.holdoutUserId);
  await page.click("#user-form button");
  await until("the holdout entity looked up", 20000, () => page.evaluate(() =>
    !document.querySelector("#user-experiment").hidden), 200);
  result.holdoutUser = { experiment: await page.textContent("#user-experiment") };
  result.storage = await page.evaluate((key) => ({ session: sessionStorage.length,
    local: localStorage.length, cookie: document.cookie,
    inSession: Object.values({ ...sessionStorage }).includes(key) }), cfg.adminKey);
  writeFileSync(cfg.phaseA, JSON.stringify({ done: true }));
  log("phase A done; waiting for the test to stop the traffic");

  // Phase B: the traffic stopped and the pipeline drained at `drainedAt`: read every
  // number of a refresh gathered after that.
  const go = await until("the test's go", 180000, async () =>
    existsSync(cfg.go) && JSON.parse(readFileSync(cfg.go, "utf8")), 200);
  await until("a refresh after the pipeline drained", 30000, async () => {
    await refreshWhenOld();
    return (await generatedAt()) > go.drainedAt;
  }, 250);
  result.metrics = await allMetrics();
  result.rows = await tableRows();
  result.deadLetters = await page.$$eval("#dead-letters li strong", (els) => els.map((e) => e.textContent));
  result.stockWarning = await page.$eval("#stock-warning", (el) => (el.hidden ? null : el.textContent));
});
