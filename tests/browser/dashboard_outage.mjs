// The operator dashboard through a Redis outage, in headless Chromium (Debian's), for
// tests/browser/test_dashboard_outage.py:
//
//   node dashboard_outage.mjs CONFIG.json   -> writes CONFIG.steps/<name>.json, CONFIG.result
//
// 1. signed in with the admin key, every number of the page once the running experiment
//    shows (step "before");
// 2. after the test killed Redis (CONFIG.go/killed): what the page says while Redis is
//    unreachable, the pill and the numbers Redis holds (step "outage");
// 3. after the test restarted it (CONFIG.go/restarted): the page recovers by itself, no
//    reload (step "after").
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { cfg, launch, log, runSteps, until } from "./driver.mjs";

const result = { before: null, outage: null, after: null, navigations: 0, problems: [] };
mkdirSync(cfg.steps, { recursive: true });
mkdirSync(cfg.screenshots, { recursive: true });
const context = await launch({ width: 1280, height: 800 });
const page = context.pages()[0] || (await context.newPage());
page.on("pageerror", (error) => result.problems.push(`pageerror: ${error}`));
page.on("framenavigated", () => { result.navigations += 1; });

/** The page as a person and a script read it: the pill, the banner, every number
 * (text and exact value) and the note of each empty table. */
const read = () => page.evaluate(() => {
  const metrics = {};
  for (const el of document.querySelectorAll("[data-metric]")) {
    (metrics[el.dataset.metric] ||= []).push({ text: el.textContent.trim(), value: el.dataset.value });
  }
  const empty = {};
  for (const body of document.querySelectorAll("tbody[id]")) {
    const note = body.querySelector("td.note");
    if (note) empty[body.id] = note.textContent;
  }
  return { state: document.querySelector("#state").dataset.state,
    pill: document.querySelector("#state").textContent,
    banner: document.querySelector("#errors").hidden ? null : document.querySelector("#errors").textContent,
    generatedAt: Number(document.querySelector("#updated").dataset.value) || 0,
    experimentsShown: !document.querySelector("#experiments").hidden, metrics, empty };
});

async function step(name, seen) {
  result[name] = seen;
  await page.screenshot({ path: join(cfg.screenshots, `outage-${name}.png`), fullPage: true });
  writeFileSync(join(cfg.steps, `${name}.json`), JSON.stringify(seen));
  log("step", name);
}

await runSteps(context, page, result, async () => {
  await page.goto(`${cfg.api}/dashboard`);
  await page.fill("#key", cfg.adminKey);
  await page.click("#login-form button[type=submit]");
  await step("before", await until("the experiment's rows", 60000, async () => {
    const seen = await read();
    return seen.state === "live" && seen.metrics[`experiment.${cfg.experiment}.${cfg.variant}.entities`] ? seen : null;
  }, 250));
  const navigations = result.navigations;

  await until("the test's kill", 120000, () => existsSync(join(cfg.go, "killed")), 200);
  const killedAt = Date.now() / 1000;
  await step("outage", await until("a refresh gathered after the kill that says so", 60000, async () => {
    const seen = await read();
    return seen.generatedAt > killedAt && seen.banner && seen.banner.includes("redis") ? seen : null;
  }, 250));

  await until("the test's restart", 120000, () => existsSync(join(cfg.go, "restarted")), 200);
  const restartedAt = Date.now() / 1000;
  await step("after", await until("the page live again", 90000, async () => {
    const seen = await read();
    return seen.generatedAt > restartedAt && seen.state === "live" ? seen : null;
  }, 250));
  result.reloaded = result.navigations !== navigations;
});
