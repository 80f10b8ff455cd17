// streamrec operator dashboard. One request per refresh (GET /v1/admin/dashboard, served
// from the API's cached aggregate); lookups only when asked. The admin key lives in this
// tab's sessionStorage and travels only in the X-API-Key header, never in a URL.
// Everything shown goes in through textContent: item ids and names come from shops'
// pages and catalogs and are never trusted as markup.
import { PALETTE, barChart, compact, lineChart } from "./charts.js";
import {
  $, ago, bytes, clock, fill, fitTables, h, int, itemCell, num, pct, setMetric, stockTag,
} from "./dom.js";
import { installLookups } from "./lookup.js";

const KEY_STORE = "streamrec.dashboard.key";
let timer = null;
let refreshS = 5;
let lastData = null;
let inFlight = false;

// -- talking to the API -----------------------------------------------------------------
class AuthError extends Error {}

async function api(path) {
  const key = sessionStorage.getItem(KEY_STORE);
  if (!key) throw new AuthError("no key");
  const response = await fetch(path, { headers: { "X-API-Key": key, Accept: "application/json" },
    cache: "no-store", credentials: "omit" });
  if (response.status === 401 || response.status === 403) {
    throw new AuthError(response.status === 401 ? "unknown key" : "this key is not an admin key");
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const message = body && body.error ? body.error.message : `HTTP ${response.status}`;
    throw new Error(message);
  }
  return body;
}

function setState(state, text) {
  const pill = $("#state");
  pill.dataset.state = state;
  pill.textContent = text;
}

function showBoard(on) {
  $("#login").hidden = on;
  $("#board").hidden = !on;
  $("#logout").hidden = !on;
}

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORE);
  clearTimeout(timer);
  timer = null;
  showBoard(false);
  setState("idle", "signed out");
  const error = $("#login-error");
  error.textContent = message;
  error.hidden = !message;
  $("#key").value = "";
}

async function refresh() {
  clearTimeout(timer);
  timer = null;
  if (inFlight) return;
  inFlight = true;
  try {
    const data = await api("/v1/admin/dashboard");
    lastData = data;
    refreshS = Math.max(1, data.refresh_s || refreshS);
    render(data);
    const age = Date.now() / 1000 - data.generated_at;
    if (age > 3 * refreshS) setState("stale", "stale");
    else if (problemsOf(data).length) setState("degraded", "partly unknown");
    else setState("live", "live");
  } catch (error) {
    if (error instanceof AuthError) {
      signOut(error.message === "no key" ? "" : `Sign-in failed: ${error.message}.`);
      return;
    }
    setState("offline", "API unreachable, retrying");
    // Say so where the numbers are: they stay, but they are old.
    const banner = $("#errors");
    banner.textContent = `No answer from the API (${error.message}): retrying every ${refreshS} s; `
      + (lastData ? `the numbers below are from ${clock(lastData.generated_at)}.` : "nothing to show yet.");
    banner.hidden = false;
  } finally {
    inFlight = false;
  }
  if (!document.hidden && sessionStorage.getItem(KEY_STORE)) {
    timer = setTimeout(refresh, refreshS * 1000);
  }
}

// -- rendering --------------------------------------------------------------------------
/** What the aggregate could not read (`errors` of the status and of the shop part). */
function problemsOf(data) {
  return [...Object.entries(data.pipeline.errors || {}),
    ...Object.entries(data.shop.errors || {}).map(([k, v]) => [`shop ${k}`, v])];
}

// A part that could not be read comes as zeros, nulls and empty lists (as in `streamrec
// status --json`, whose `errors` say so): shown as unknown ("–"), never as a real 0 or
// "none yet".
const UNKNOWN = "unknown: not readable now (see above)";

function render(data) {
  const updated = $("#updated");
  updated.dataset.value = String(data.generated_at);
  updated.textContent = clock(data.generated_at);
  const problems = problemsOf(data);
  const banner = $("#errors");
  banner.textContent = problems.map(([k, v]) => `${k}: ${v}`).join(" · ");
  banner.hidden = !problems.length;
  const errors = { ...data.pipeline.errors };
  for (const [k, v] of Object.entries(data.shop.errors || {})) errors[`shop_${k}`] = v;
  renderPipeline(data, errors);
  renderShop(data, errors);
  renderExperiments(data.experiments, Boolean(errors.shop_experiments));
  fitTables();
}

function renderPipeline(data, errors) {
  const p = data.pipeline;
  const [kafka, redis] = [!errors.kafka, !errors.redis]; // readable now
  const known = (ok, value) => (ok ? value : null);
  // Shown as they are (thousands separated), not rounded: equal to `streamrec status`.
  setMetric("events_per_s", known(redis, p.events_per_s));
  setMetric("messages_in_per_s", known(kafka, data.rates.messages_in_per_s));
  setMetric("processed", known(redis, p.processed));
  setMetric("lag", known(kafka, p.lag));
  setMetric("freshness_p50_ms", p.freshness ? p.freshness.p50_ms : null, p.freshness ? String(p.freshness.p50_ms) : "–");
  // A stopped worker's numbers stay in Redis: say how old they are (core.pipeline_status).
  const age = p.freshness ? p.freshness.age_s : null;
  // With no live worker nothing is measured: the last numbers are old, whatever their age.
  const noneLive = !p.workers.some((w) => !w.stale);
  const stale = p.freshness && (p.freshness.stale || noneLive) ? (age === null ? " (age unknown)" : ` (published ${ago(age)})`) : "";
  setMetric("freshness_p99_ms", p.freshness ? p.freshness.p99_ms : null, p.freshness ? String(p.freshness.p99_ms) + stale : "–");
  setMetric("dead_lettered", known(redis, p.dead_lettered));
  setMetric("model_version", p.model_version,
    p.model_version || (redis ? "none yet (streamrec train)" : "unknown (see above)"));
  setMetric("model_age_s", p.model_age_s, ago(p.model_age_s));
  setMetric("model_users", p.model.n_users ?? null);
  setMetric("model_items", p.model.n_items ?? null);
  setMetric("model_events", p.model.n_events ?? null);

  fill($("#partitions"), p.group.partitions.map((r) => h("tr", {},
    h("td", {}, r.topic), num("partition", r.partition, String(r.partition)),
    num("end_offset", r.end_offset, null, { "data-topic": r.topic, "data-partition": r.partition }),
    num("committed", r.committed, null, { "data-topic": r.topic, "data-partition": r.partition }),
    num("partition_lag", r.lag, null, { "data-topic": r.topic, "data-partition": r.partition }))),
  kafka ? "no partitions yet" : UNKNOWN, 5);
  fill($("#topics"), Object.entries(p.topics).map(([name, t]) => h("tr", {},
    h("td", {}, name, t.exists ? null : h("span", { class: "tag out" }, " missing")),
    num("topic_partitions", t.partitions, null, { "data-topic": name }),
    num("topic_total", t.total, null, { "data-topic": name }))), kafka ? "no topics" : UNKNOWN, 3);

  const live = p.workers.filter((w) => !w.stale);
  setMetric("workers_live", known(redis, live.length), redis ? `${live.length} live` : "unknown");
  fill($("#workers"), p.workers.map((w) => h("tr", { class: w.stale ? "stale" : "" },
    h("td", { class: "name" }, w.id), num("worker_pid", w.pid ?? null, String(w.pid ?? "?")),
    h("td", {}, w.stale ? "stale" : (w.ready ? "ready" : "starting")),
    num("worker_processed", w.processed ?? null, null, { "data-worker": w.id }),
    h("td", { class: "name", "data-metric": "worker_model_version", "data-value": w.model_version ?? "",
      "data-worker": w.id }, w.model_version || "–"),
    num("heartbeat_age_s", w.heartbeat_age_s, ago(w.heartbeat_age_s)))),
  redis ? "no worker running" : UNKNOWN, 6);

  const used = p.redis_memory_bytes;
  const limit = p.redis_maxmemory_bytes;
  setMetric("redis_memory_bytes", used, bytes(used));
  setMetric("redis_maxmemory_bytes", limit, limit === 0 ? "none set (maxmemory 0)" : bytes(limit));
  const bar = $("#memory-bar");
  const share = limit ? Math.min(1, used / limit) : 0;
  bar.style.width = `${(100 * share).toFixed(1)}%`;
  bar.className = share > 0.9 ? "high" : "";

  fill($("#history"), (p.model_history || []).map((m) => h("tr", {},
    h("td", { class: "name", "data-metric": "history_version", "data-value": m.version }, m.version),
    h("td", { "data-metric": "history_trained_at", "data-value": m.trained_at ?? "" }, clock(m.trained_at)),
    num("history_users", m.n_users ?? null), num("history_items", m.n_items ?? null),
    num("history_events", m.n_events ?? null),
    num("history_seconds", m.seconds ?? null, m.seconds === undefined ? "–" : String(m.seconds)))),
  redis ? "no training yet" : UNKNOWN, 6);

  const reasons = $("#dead-letters");
  while (reasons.firstChild) reasons.removeChild(reasons.firstChild);
  for (const d of p.dead_letters || []) {
    reasons.appendChild(h("li", {}, h("strong", {}, d.reason || "?"),
      h("div", { class: "note" }, `${d.topic}[`,
        h("span", { "data-metric": "dead_letter_partition", "data-value": d.partition ?? "" }, String(d.partition)),
        "] @ ", h("span", { "data-metric": "dead_letter_offset", "data-value": d.offset ?? "" }, String(d.offset)),
        " · ", h("span", { "data-metric": "dead_letter_at", "data-value": d.at ?? "" }, clock(d.at)))));
  }
  const shown = (p.dead_letters || []).length;
  setMetric("dead_letters_shown", known(redis, shown), redis ? `last ${shown}` : "unknown");

  const s = data.series;
  lineChart($("#chart-rates"), s.t, [
    { name: "events processed /s", values: s.events_per_s },
    { name: "messages into events /s", values: s.messages_in_per_s },
  ]);
  lineChart($("#chart-lag"), s.t, [{ name: "lag (messages)", values: s.lag, color: PALETTE[1] }]);
  const histogram = (p.freshness && p.freshness.histogram) || [];
  const top = Math.max(0, ...histogram.map((b) => b.le_ms || 0));
  const labels = histogram.map((b) => (b.le_ms === null ? `>${compact(top)}` : `≤${compact(b.le_ms)}`));
  const slowFrom = histogram.findIndex((b) => b.le_ms !== null && b.le_ms > 500);
  barChart($("#chart-freshness"), labels, histogram.map((b) => b.count),
    { highlightFrom: slowFrom < 0 ? Infinity : slowFrom });
}

function shopRows(items, kind) {
  return items.map((item, i) => h("tr", {},
    num(`${kind}_rank`, i + 1, String(i + 1)), itemCell(item),
    num(`${kind}_score`, item.score, compact(item.score), { "data-item": item.item_id }),
    h("td", {}, stockTag(item.in_stock, item.deleted))));
}

function attributionRows(rows, kind) {
  return rows.map((r) => h("tr", {}, h("td", {}, r.name),
    num("impressions", r.impressions, null, { "data-row": `${kind}:${r.name}` }),
    num("clicks", r.clicks, null, { "data-row": `${kind}:${r.name}` }),
    num("ctr", r.ctr, pct(r.ctr), { "data-row": `${kind}:${r.name}` }),
    num("purchases", r.purchases, null, { "data-row": `${kind}:${r.name}` }),
    num("conversion", r.conversion, pct(r.conversion), { "data-row": `${kind}:${r.name}` })));
}

function renderShop(data, errors) {
  const shop = data.shop;
  const lists = !errors.shop_lists;
  fill($("#popular"), shopRows(shop.popular, "popular"), lists ? "nothing popular yet" : UNKNOWN, 4);
  fill($("#trending"), shopRows(shop.trending, "trending"), lists ? "nothing trending yet" : UNKNOWN, 4);
  const out = shop.popular_out_of_stock || [];
  $("#stock-warning").hidden = !out.length;
  setMetric("popular_out_of_stock", lists ? out.length : null);
  $("#stock-warning-items").textContent = out.map((i) => i.name ? `${i.name} (${i.item_id})` : i.item_id).join(", ");
  const a = shop.attribution || { by_origin: [], by_context: [] };
  const none = shop.attribution ? "no list events yet" : UNKNOWN;
  fill($("#attribution-origin"), attributionRows(a.by_origin, "origin"), none, 6);
  fill($("#attribution-context"), attributionRows(a.by_context, "context"), none, 6);
  const tr = data.series.trending;
  const names = Object.fromEntries(shop.trending.map((i) => [i.item_id, i.name || i.item_id]));
  lineChart($("#chart-trending"), data.series.t,
    tr.items.map((item, k) => ({ name: names[item] || item, values: tr.scores[k] })),
    { emptyText: "trending scores appear after two refreshes" });
}

// Experiments (GET /v1/admin/experiments/{id}/report for each; running ones first, then
// the stopped ones, tagged): one row per variant, the control without lifts. Each lift (conversion, and revenue per entity: do
// the lists pay?) is relative to the control, with its 95 % interval. Hidden while none
// is defined; shown as unknown when the reports could not be read.
const signedPct = (r) => (r === null || r === undefined ? "–" : `${r >= 0 ? "+" : ""}${(100 * r).toFixed(1)} %`);
const money = (x) => (x === null || x === undefined ? "–"
  : Number(x).toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 }));

/** The lift and interval cells of one metric (``name``: ``lift`` or ``revenue_lift``). */
function liftCells(key, name, lift) {
  const ci = lift && lift.ci95;
  return [
    h("td", { class: "num", "data-metric": `${key}.${name}`, "data-value": lift ? lift.value ?? "" : "" },
      lift ? signedPct(lift.value) : "–"),
    h("td", { class: "num", "data-metric": `${key}.${name}_ci95`, "data-value": ci ? ci.join(",") : "" },
      ci ? `${signedPct(ci[0])} … ${signedPct(ci[1])}` : "–"),
  ];
}

function renderExperiments(experiments, unreadable) {
  const box = $("#experiments");
  box.hidden = !unreadable && (!experiments || !experiments.length);
  if (box.hidden) return;
  const rows = [];
  for (const exp of experiments || []) {
    const srm = exp.srm_p_value;
    const broken = srm !== null && srm !== undefined && srm < 0.001;
    for (const v of exp.variants) {
      const key = `experiment.${exp.experiment_id}.${v.name}`;
      rows.push(h("tr", {},
        h("td", {}, exp.experiment_id, exp.status === "stopped" ? h("span", { class: "tag", "data-metric": `experiment.${exp.experiment_id}.status`, "data-value": "stopped" }, " stopped") : null, broken ? h("span", { class: "error", "data-metric": `experiment.${exp.experiment_id}.srm`, "data-value": srm }, " split broken (SRM)") : null),
        h("td", {}, v.name, v.name === exp.control && v.name !== "control" ? h("span", { class: "id" }, " (control)") : null),
        h("td", { class: "num", "data-metric": `${key}.entities`, "data-value": v.entities }, int(v.entities)),
        h("td", { class: "num", "data-metric": `${key}.purchasers`, "data-value": v.purchasers }, int(v.purchasers)),
        h("td", { class: "num", "data-metric": `${key}.conversion`, "data-value": v.conversion }, pct(v.conversion)),
        ...liftCells(key, "lift", (v.lift || {}).conversion),
        h("td", { class: "num", "data-metric": `${key}.revenue`, "data-value": v.revenue }, money(v.revenue)),
        h("td", { class: "num", "data-metric": `${key}.revenue_per_entity`, "data-value": v.revenue_per_entity }, money(v.revenue_per_entity)),
        ...liftCells(key, "revenue_lift", (v.lift || {}).revenue_per_entity)));
    }
  }
  fill($("#experiments-rows"), rows, unreadable ? UNKNOWN : "no experiment defined", 11);
}

// -- start ------------------------------------------------------------------------------
function start() {
  $("#login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const key = $("#key").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_STORE, key);
    $("#key").value = "";
    $("#login-error").hidden = true;
    showBoard(true);
    setState("idle", "loading");
    refresh();
  });
  $("#logout").addEventListener("click", () => signOut());
  window.addEventListener("resize", fitTables);
  installLookups(api, (error) => error instanceof AuthError, signOut);
  document.addEventListener("visibilitychange", () => {
    // A hidden tab asks nothing; it catches up when shown again.
    if (!document.hidden && sessionStorage.getItem(KEY_STORE) && timer === null) refresh();
  });
  if (sessionStorage.getItem(KEY_STORE)) {
    showBoard(true);
    refresh();
  }
}

start();
window.streamrecDashboard = { refresh, last: () => lastData };
