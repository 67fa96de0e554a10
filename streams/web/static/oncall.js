// The on-call page: polls oncall/data and renders it with DOM calls only (alert keys and
// identifiers come from customer events, so nothing is ever inserted as HTML).
"use strict";

const REFRESH_MS = 5000;
const SVG = "http://www.w3.org/2000/svg";

function token() {
  // The bearer token travels in the URL fragment, which the browser never sends to a server.
  const m = /(?:^|[#&])token=([^&]+)/.exec(window.location.hash);
  return m ? decodeURIComponent(m[1]) : "";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  return node;
}

function svgEl(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  return node;
}

function fmt(x, digits = 1) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString("en");
  return x.toFixed(digits);
}

function shortTime(iso) {
  return iso ? iso.replace("T", " ").replace(/:00Z$|Z$/, "") : "–";
}

// A small line chart: each series is a list of [x, y]; x and y share the chart's scales.
function chart(series, width, height, title) {
  const svg = svgEl("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  svg.append(Object.assign(svgEl("title"), { textContent: title }));
  const pts = series.flatMap((s) => s.points);
  if (!pts.length) return svg;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(1, ...ys);
  const pad = 4;
  const sx = (x) => (x1 === x0 ? width / 2 : pad + ((x - x0) / (x1 - x0)) * (width - 2 * pad));
  const sy = (y) => height - pad - (y / y1) * (height - 2 * pad);
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    svg.append(svgEl("polyline", { class: s.cls, points: d, "data-series": s.name, "data-n": s.points.length }));
    if (s.dots) for (const p of s.points) svg.append(svgEl("circle", { class: s.cls, cx: sx(p[0]).toFixed(1), cy: sy(p[1]).toFixed(1), r: 2.5 }));
  }
  return svg;
}

function renderRates(data) {
  const rates = data.rates || [];
  const last = rates.length ? rates[rates.length - 1] : {};
  const cards = document.getElementById("rate-cards");
  const items = [
    ["in", "records in /s (all workers)"],
    ["dlq", "dead letters /s (all workers)"],
    ["local_applied", "applied /s (this worker)"],
    ["local_duplicate", "duplicates /s (this worker)"],
    ["local_dead_lettered", "dead-lettered /s (this worker)"],
    ["local_merges", "merges /s (this worker)"],
  ];
  cards.replaceChildren(...items.map(([name, label]) =>
    el("div", { class: "card", "data-rate": name, "data-value": last[name] === undefined ? "" : last[name] },
      el("div", { class: "label" }, label), el("div", { class: "value" }, fmt(last[name])))));
  const inPts = rates.filter((r) => r.in !== undefined).map((r) => [r.t, r.in]);
  const dlqPts = rates.filter((r) => r.dlq !== undefined).map((r) => [r.t, r.dlq]);
  document.getElementById("rate-chart").replaceChildren(chart([
    { name: "in", cls: "rate-in", points: inPts },
    { name: "dlq", cls: "rate-dlq", points: dlqPts },
  ], 640, 90, "records in and dead letters per second"));
}

function alertRow(a) {
  const ratio = a.expected ? a.observed / a.expected : null;
  const t = (p) => Date.parse(p.bucket_start);
  const observed = a.points.filter((p) => p.observed !== null).map((p) => [t(p), p.observed]);
  const expected = a.points.filter((p) => p.expected !== null).map((p) => [t(p), p.expected]);
  const svg = chart([
    { name: "observed", cls: "observed", points: observed, dots: true },
    { name: "expected", cls: "expected", points: expected, dots: true },
  ], 220, 48, `observed vs expected for ${a.key}`);
  return el("tr", { class: "alert", "data-key": a.key, "data-direction": a.direction, "data-state": a.state,
                    "data-observed": a.observed, "data-expected": a.expected, "data-points": a.points.length },
    el("td", { class: "key" }, a.key),
    el("td", { class: a.direction }, a.direction === "surge" ? "▲ surge" : "▼ collapse"),
    el("td", { class: "num" }, a.severity),
    el("td", {}, a.state),
    el("td", {}, shortTime(a.opened_at)),
    el("td", { class: "num observed" }, fmt(a.observed)),
    el("td", { class: "num expected" }, fmt(a.expected)),
    el("td", { class: "num" }, ratio === null ? "–" : `×${fmt(ratio)}`),
    el("td", { class: "spark" }, svg));
}

function renderAlerts(data) {
  const open = data.alerts_open || [];
  const section = document.getElementById("alerts");
  section.dataset.count = open.length;
  document.getElementById("alerts-count").textContent = open.length;
  document.getElementById("alerts-empty").hidden = open.length > 0;
  const table = document.getElementById("alerts-table");
  table.hidden = open.length === 0;
  table.tBodies[0].replaceChildren(...open.map(alertRow));
  const closed = data.alerts_closed || [];
  document.getElementById("closed").dataset.count = closed.length;
  document.getElementById("closed-table").tBodies[0].replaceChildren(...closed.map((a) =>
    el("tr", { class: "closed-alert", "data-key": a.key, "data-state": a.state },
      el("td", {}, a.key), el("td", { class: a.direction }, a.direction), el("td", {}, a.state),
      el("td", {}, shortTime(a.opened_at)), el("td", {}, shortTime(a.last_bucket)))));
}

function renderChanges(data) {
  const changes = data.changes || [];
  document.getElementById("identity").dataset.count = changes.length;
  const counts = data.change_counts || {};
  document.getElementById("change-counts").replaceChildren(...["merged", "quarantined"].map((k) =>
    el("div", { class: "card", "data-change": k, "data-value": counts[k] || 0 },
      el("div", { class: "label" }, `${k} (recent log)`), el("div", { class: "value" }, counts[k] || 0))));
  document.getElementById("changes-table").tBodies[0].replaceChildren(...changes.map((c) =>
    el("tr", { class: "change", "data-type": c.type },
      el("td", {}, c.ts_ms ? new Date(c.ts_ms).toISOString().replace("T", " ").slice(0, 19) : "–"),
      el("td", {}, c.type), el("td", {}, c.rule), el("td", {}, c.profile_id || "–"),
      el("td", {}, c.from_profile_id || "–"), el("td", {}, (c.identifiers || []).join(", ")))));
}

function render(data) {
  renderRates(data);
  renderAlerts(data);
  renderChanges(data);
  const status = document.getElementById("status");
  status.dataset.state = "ok";
  status.textContent = `namespace ${data.namespace} · worker ${data.worker} · ${data.feed && data.feed.caught_up ? "live" : "catching up"}`;
  document.getElementById("footer").textContent =
    `updated ${new Date(data.generated_at * 1000).toISOString()} · ${data.alert_records} alert records read`;
  document.body.dataset.loaded = "true";
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const headers = token() ? { Authorization: `Bearer ${token()}` } : {};
    const resp = await fetch("oncall/data", { headers, cache: "no-store" });
    if (!resp.ok) throw new Error(resp.status === 401 ? "unauthorised: open the page as /oncall#token=..." : `HTTP ${resp.status}`);
    render(await resp.json());
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = `cannot load data: ${err.message}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
