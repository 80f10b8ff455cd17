// The dashboard's item and user lookups (asked for, never polled) and the "why this
// list" trace of a user's list. ``api`` is the page's authenticated GET; an
// ``AuthError`` from it signs the page out.
import { compact } from "./charts.js";
import { $, ago, fitTables, h, int, setMetric, stockTag } from "./dom.js";

let api = null;
let onAuthError = null;

/** Answer the item and user lookup forms with ``get`` (the page's API call); errors that
 * ``isAuthError`` recognises go to ``signOut``. */
export function installLookups(get, isAuthError, signOut) {
  api = get;
  onAuthError = (error) => {
    if (!isAuthError(error)) return false;
    signOut(`Sign-in failed: ${error.message}.`);
    return true;
  };
  $("#item-form").addEventListener("submit", lookupItem);
  $("#user-form").addEventListener("submit", lookupUser);
}

function listItems(ol, items, metricName) {
  while (ol.firstChild) ol.removeChild(ol.firstChild);
  if (!items.length) ol.appendChild(h("li", { class: "note" }, "none"));
  for (const item of items) {
    ol.appendChild(h("li", {}, item.name || item.item_id, " ",
      item.name ? h("span", { class: "id" }, item.item_id) : null, " ",
      item.score !== undefined
        ? h("span", { class: "id", "data-metric": metricName, "data-value": item.score }, `score ${compact(item.score)}`)
        : stockTag(item.in_stock),
      item.reason_text ? h("span", { class: "reason", "data-reason": item.reason }, ` · ${item.reason_text}`) : null));
  }
}

/** A lookup's outcome in its own card: the error (and no stale result) or none. */
function lookupFailed(kind, id, error) {
  $(`#${kind}-result`).hidden = true;
  const note = $(`#${kind}-error`);
  note.textContent = error ? `No answer for "${id}": ${error.message}.` : "";
  note.hidden = !error;
}

// A browser resolves "." and ".." (also written %2E) in a URL's path before sending it:
// these two ids, valid as they are, cannot reach the API's id paths from a page.
const UNREACHABLE = new Set([".", ".."]);
const unreachable = () => new Error("a browser cannot send \".\" or \"..\" as an id in a URL's path");

async function lookupItem(event) {
  event.preventDefault();
  // The id exactly as typed: an id may begin or end with a space (API.md), and a trimmed
  // id would show another entity's numbers under this one's name.
  const id = $("#item-id").value;
  if (!id) return;
  if (UNREACHABLE.has(id)) { lookupFailed("item", id, unreachable()); return; }
  const path = encodeURIComponent(id);
  const box = $("#item-result");
  try {
    const [entry, stats, similar] = await Promise.all([api(`/v1/admin/items/${path}`),
      api(`/v1/admin/items/${path}/stats`), api(`/v1/items/${path}/similar?n=10`)]);
    $("#item-name").textContent = entry.name || entry.item_id;
    const stock = $("#item-stock");
    stock.replaceWith(Object.assign(stockTag(entry.known ? entry.in_stock : null, entry.deleted), { id: "item-stock" }));
    for (const field of ["views", "clicks", "cart_adds", "purchases", "impressions", "distinct_users"]) {
      setMetric(`item_${field}`, stats[field], null, box);
    }
    setMetric("item_price", entry.price, entry.price === null ? "–" : `${entry.price} ${entry.currency || ""}`.trim(), box);
    listItems($("#item-similar"), similar.items, "similar_score");
    lookupFailed("item", id, null);
    box.hidden = false;
  } catch (error) {
    if (!onAuthError(error)) lookupFailed("item", id, error);
  }
}

async function lookupUser(event) {
  event.preventDefault();
  const id = $("#user-id").value; // as typed (see lookupItem)
  if (!id) return;
  if (UNREACHABLE.has(id)) { lookupFailed("user", id, unreachable()); return; }
  const path = encodeURIComponent(id);
  const box = $("#user-result");
  try {
    const [overview, list] = await Promise.all([api(`/v1/admin/users/${path}`),
      api(`/v1/admin/preview?user_id=${path}&n=10`)]);
    setMetric("user_purchased", overview.purchased, null, box);
    setMetric("user_cart", overview.cart.length, null, box);
    setMetric("user_list_size", overview.personal_list_size, null, box);
    setMetric("user_list_version", overview.personal_list_version, overview.personal_list_version || "none", box);
    listItems($("#user-recent"), overview.recent);
    $("#user-source").textContent = list.source;
    showExperiment(list.experiment);
    listItems($("#user-list"), list.items, "list_score");
    renderExplain(list);
    lookupFailed("user", id, null);
    box.hidden = false;
    fitTables();
  } catch (error) {
    if (!onAuthError(error)) lookupFailed("user", id, error);
  }
}

// The preview is the list outside experiments; an enrolled entity's answers are its
// variant's (a holdout gets no items), so the page names the experiment and variant.
function showExperiment(tag) {
  const note = $("#user-experiment");
  note.hidden = !tag;
  note.textContent = tag
    ? `In experiment ${tag.id} as variant ${tag.variant}: the recommendation endpoint answers ` +
      "this id what that variant serves (a holdout: no items); the list below is the one outside the experiment."
    : "";
}

// The list's explain trace (API.md "Merchandising", explain=true): the sources read with
// their size, age and model version, and the candidates left out with why.
const DROPPED_SHOWN = 10;
function renderExplain(list) {
  const box = $("#explain");
  while (box.firstChild) box.removeChild(box.firstChild);
  const trace = list.trace;
  box.hidden = !trace;
  if (!trace) return;
  const sources = h("ol", { class: "items", id: "explain-sources" });
  for (const s of trace.sources) {
    // Each number in its own element, named (data-metric) like every number of the page.
    const facts = [h("span", { "data-metric": "explain_source_size", "data-value": s.size }, `${int(s.size)} entries`)];
    if (s.age_s !== null && s.age_s !== undefined) {
      facts.push(", written ", h("span", { "data-metric": "explain_source_age_s", "data-value": s.age_s }, ago(s.age_s)));
    }
    if (s.model_version) {
      facts.push(", model ", h("span", { "data-metric": "explain_source_model_version", "data-value": s.model_version }, s.model_version));
    }
    sources.appendChild(h("li", { "data-source": s.name, "data-value": s.size }, s.name, " ",
      h("span", { class: "id" }, ...facts)));
  }
  if (!trace.sources.length) sources.appendChild(h("li", { class: "note" }, "none"));
  const byWhy = {};
  for (const d of trace.dropped) byWhy[d.why] = (byWhy[d.why] || 0) + 1;
  const summary = Object.entries(byWhy).map(([why, n]) => `${why} ${n}`).join(", ");
  const dropped = h("ol", { class: "items", id: "explain-dropped" });
  for (const d of trace.dropped.slice(0, DROPPED_SHOWN)) {
    dropped.appendChild(h("li", { "data-why": d.why }, d.item_id, " ", h("span", { class: "id" }, d.why)));
  }
  box.append(h("h4", {}, "Why this list ", h("span", { class: "note" }, "(explain=true)")),
    h("p", { class: "note" }, "sources read"), sources,
    h("p", { class: "note" }, h("span", { "data-metric": "explain_dropped", "data-value": trace.dropped_total },
      `${int(trace.dropped_total)} candidates left out`), summary ? ` (first ones: ${summary})` : ""),
    dropped);
}
