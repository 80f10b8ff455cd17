// Small DOM and number-formatting helpers of the operator dashboard. Everything shown
// goes in through textContent (h() never parses markup): ids and names come from shops'
// pages and catalogs and are never trusted as markup.
export const $ = (selector, root = document) => root.querySelector(selector);
export const metric = (name, root = document) => $(`[data-metric="${name}"]`, root);

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.appendChild(typeof child === "object" ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function fill(tbody, rows, emptyText, columns = 1) {
  while (tbody.firstChild) tbody.removeChild(tbody.firstChild);
  if (!rows.length) {
    tbody.appendChild(h("tr", {}, h("td", { colSpan: columns, class: "note" }, emptyText)));
    return;
  }
  // Each cell knows its column's header: a stacked table (fitTables) shows it as a label.
  const heads = [...tbody.closest("table").querySelectorAll("thead th")].map((th) => th.textContent);
  for (const row of rows) {
    [...row.cells].forEach((cell, i) => { cell.dataset.label = heads[i] || ""; });
    tbody.appendChild(row);
  }
}

/** Tables wider than their card are shown stacked (one "header: value" line per cell)
 * rather than with columns hidden behind a sideways scroll (a phone, a narrow card). */
export function fitTables() {
  for (const box of document.querySelectorAll(".scroll")) {
    const table = box.querySelector("table");
    if (!table || !box.offsetParent) continue;
    table.classList.remove("stacked");
    if (box.scrollWidth > box.clientWidth + 1) table.classList.add("stacked");
  }
}

export const int = (n) => (n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US"));
export const pct = (r) => (r === null || r === undefined ? "–" : `${(100 * r).toFixed(1)} %`);
export const bytes = (n) => {
  if (n === null || n === undefined) return "–";
  if (n === 0) return "none";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) { v /= 1024; u += 1; }
  return `${v.toFixed(u ? 1 : 0)} ${units[u]}`;
};
export const ago = (s) => {
  if (s === null || s === undefined) return "–";
  if (s < 120) return `${Math.round(s)} s ago`;
  if (s < 7200) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
};
export const clock = (t) => (t ? new Date(t * 1000).toLocaleTimeString("en-GB") : "–");

/** Show ``text`` in the element named by data-metric and keep the exact value in data-value. */
export function setMetric(name, value, text = null, root = document) {
  const node = metric(name, root);
  if (!node) return;
  node.dataset.value = value === null || value === undefined ? "" : String(value);
  node.textContent = text !== null ? text : (value === null || value === undefined ? "–" : int(value));
}

/** A numeric table cell that carries its metric name and exact value. */
export function num(name, value, text = null, extra = {}) {
  return h("td", { class: "num", "data-metric": name, "data-value": value ?? "", ...extra },
    text !== null ? text : int(value));
}

export function stockTag(inStock, deleted = false) {
  if (deleted) return h("span", { class: "tag out" }, "deleted");
  if (inStock === null || inStock === undefined) return h("span", { class: "tag unknown" }, "not in catalog");
  return inStock ? h("span", { class: "tag" }, "in stock") : h("span", { class: "tag out" }, "out of stock");
}

export function itemCell(item) {
  return h("td", { class: "name" }, item.name || item.item_id, item.name ? h("div", { class: "id" }, item.item_id) : null);
}
