// Small hand-written SVG charts for the dashboard: a time line chart (several series,
// gaps where a value is null) and a bar chart (the freshness histogram). No library: the
// page must work offline and load nothing but this API's own files. Every text goes in
// through textContent, never markup.

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 220;
const PAD = { left: 52, right: 12, top: 12, bottom: 28 };
export const PALETTE = ["#1f6feb", "#d9480f", "#2b8a3e", "#9c36b5", "#e67700", "#0b7285"];

function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function clear(svg) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
}

function empty(svg, message) {
  clear(svg);
  svg.appendChild(el("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "empty" },
    message));
}

/** Round numbers for an axis from 0 to at least ``max``: [step, top]. */
export function niceScale(max, ticks = 4) {
  if (!(max > 0)) return [1, ticks];
  const raw = max / ticks;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  return [step, step * Math.ceil(max / step)];
}

export function compact(value) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  const abs = Math.abs(value);
  if (abs >= 1e9) return `${+(value / 1e9).toFixed(1)}G`;
  if (abs >= 1e6) return `${+(value / 1e6).toFixed(1)}M`;
  if (abs >= 1e4) return `${+(value / 1e3).toFixed(1)}k`;
  if (abs >= 100 || Number.isInteger(value)) return String(Math.round(value));
  return String(+value.toFixed(2));
}

function yAxis(svg, top, step, format) {
  const plotH = H - PAD.top - PAD.bottom;
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = PAD.top + plotH - (v / top) * plotH;
    svg.appendChild(el("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid-line" }));
    svg.appendChild(el("text", { x: PAD.left - 6, y: y + 4, "text-anchor": "end" }, format(v)));
  }
}

function legend(svg, series) {
  const box = svg.parentNode && svg.parentNode.querySelector(".legend");
  const holder = box || document.createElement("div");
  holder.className = "legend";
  while (holder.firstChild) holder.removeChild(holder.firstChild);
  series.forEach((s, k) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = s.color || PALETTE[k % PALETTE.length];
    item.appendChild(swatch);
    item.appendChild(document.createTextNode(s.name));
    holder.appendChild(item);
  });
  if (!box && svg.parentNode) svg.parentNode.appendChild(holder);
}

/**
 * Lines over time. ``times``: epoch seconds; ``series``: [{name, values, color}] with one
 * value (or null) per time. The x axis is labelled in minutes before the last sample.
 */
export function lineChart(svg, times, series, { format = compact, emptyText = "waiting for data" } = {}) {
  const values = series.flatMap((s) => s.values).filter((v) => v !== null && v !== undefined);
  if (times.length < 2 || values.length === 0) {
    empty(svg, emptyText);
    legend(svg, series);
    return;
  }
  clear(svg);
  const [step, top] = niceScale(Math.max(...values));
  yAxis(svg, top, step, format);
  const t0 = times[0];
  const t1 = times[times.length - 1];
  const span = Math.max(1, t1 - t0);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const x = (t) => PAD.left + ((t - t0) / span) * plotW;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  svg.appendChild(el("line", { x1: PAD.left, x2: W - PAD.right, y1: PAD.top + plotH,
    y2: PAD.top + plotH, class: "axis" }));
  const minutes = span / 60;
  const every = minutes > 6 ? 2 : 1;
  for (let m = 0; m <= minutes; m += every) {
    const tx = x(t1 - m * 60);
    svg.appendChild(el("text", { x: tx, y: H - 8, "text-anchor": m === 0 ? "end" : "middle" },
      m === 0 ? "now" : `-${m}m`));
  }
  series.forEach((s, k) => {
    const color = s.color || PALETTE[k % PALETTE.length];
    let points = [];
    const flush = () => {
      if (points.length === 1) {
        const [px, py] = points[0].split(",");
        svg.appendChild(el("circle", { cx: px, cy: py, r: 2.5, fill: color }));
      } else if (points.length > 1) {
        svg.appendChild(el("polyline", { points: points.join(" "), class: "line", stroke: color }));
      }
      points = [];
    };
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) flush();
      else points.push(`${x(times[i]).toFixed(1)},${y(v).toFixed(1)}`);
    });
    flush();
    const last = [...s.values].reverse().find((v) => v !== null && v !== undefined);
    if (last !== undefined) {
      const title = el("title", {}, `${s.name}: ${format(last)}`);
      svg.lastChild.appendChild(title);
    }
  });
  legend(svg, series);
}

/** Bars with labels under them; ``highlightFrom``: index from which bars are drawn as slow. */
export function barChart(svg, labels, values, { highlightFrom = Infinity, emptyText = "no samples yet" } = {}) {
  const total = values.reduce((a, b) => a + b, 0);
  if (!values.length || total === 0) {
    empty(svg, emptyText);
    return;
  }
  clear(svg);
  const [step, top] = niceScale(Math.max(...values));
  yAxis(svg, top, step, compact);
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const slot = plotW / values.length;
  values.forEach((v, i) => {
    const h = (v / top) * plotH;
    const bar = el("rect", { x: PAD.left + i * slot + 2, y: PAD.top + plotH - h,
      width: Math.max(1, slot - 4), height: h, class: i >= highlightFrom ? "bar slow" : "bar" });
    bar.appendChild(el("title", {}, `${labels[i]} ms: ${v} (${((100 * v) / total).toFixed(1)} %)`));
    svg.appendChild(bar);
    if (values.length <= 8 || i % 2 === 0) {
      svg.appendChild(el("text", { x: PAD.left + i * slot + slot / 2, y: H - 8, "text-anchor": "middle" },
        labels[i]));
    }
  });
}
