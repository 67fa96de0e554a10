// The demand page: pick a key and a measure, see recent demand, the normal baseline, the forecast
// with its bands, and the unusual changes (alerts) with how they ended. DOM calls only: keys come
// from customer events, so nothing is ever inserted as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const W = 1180, H = 360, PAD_L = 56, PAD_R = 12, PAD_T = 18, PAD_B = 34;

function param(name) {
  // Token, key, measure travel in the URL fragment (never sent to a server): #token=..&key=..
  const m = new RegExp("(?:^|[#&])" + name + "=([^&]+)").exec(window.location.hash);
  return m ? decodeURIComponent(m[1]) : "";
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(c === null || c === undefined ? "" : String(c)));
  return node;
}

function svgEl(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

async function get(path) {
  const t = param("token");
  const resp = await fetch(path, { headers: t ? { Authorization: "Bearer " + t } : {}, cache: "no-store" });
  const body = await resp.json().catch(() => ({}));
  if (!resp.ok) throw new Error(body.error || ("HTTP " + resp.status));
  return body;
}

function fmt(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return "–";
  if (Math.abs(x) >= 100) return Math.round(x).toLocaleString("en");
  return (Math.round(x * 10) / 10).toString();
}

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString("en-GB", { weekday: "short", day: "numeric", month: "short", hour: "2-digit", minute: "2-digit", timeZone: "UTC" }) + " UTC";
}

function ratioText(r) {
  if (r === null || r === undefined) return "–";
  if (r >= 1) return "×" + (Math.round(r * 10) / 10) + " normal";
  return Math.round((1 - r) * 100) + "% below normal";
}

function hoursText(h) {
  if (h < 1) return Math.round(h * 60) + " min";
  if (h < 48) return (Math.round(h * 10) / 10) + " h";
  return (Math.round(h / 2.4) / 10) + " days";
}

function drawChart(data) {
  const box = document.getElementById("chart");
  box.replaceChildren();
  // The last week of history: enough to see the weekly pattern, and room for the forecast.
  const keep = Math.max(1, Math.round((7 * 86400) / data.step_s));
  const hist = data.history.slice(-keep).map((p) => [Date.parse(p[0]), p[1], p[2]]);
  const fc = data.forecast.map((p) => [Date.parse(p[0]), ...p.slice(1)]);
  const hold = (data.forecast_if_shift_holds || []).map((p) => [Date.parse(p[0]), p[1]]);
  const xs = hist.map((p) => p[0]).concat(fc.map((p) => p[0]));
  const svg = svgEl("svg", { width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: "img", id: "demand-chart" });
  svg.append(svgEl("title", {}, `${data.key} ${data.measure}: history, baseline and forecast`));
  box.append(svg);
  if (!xs.length) return 0;
  const ys = hist.flatMap((p) => [p[1], p[2] || 0]).concat(fc.map((p) => p[5]), hold.map((p) => p[1]));
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(1, ...ys) * 1.05;
  const sx = (x) => PAD_L + ((x - x0) / Math.max(1, x1 - x0)) * (W - PAD_L - PAD_R);
  const sy = (y) => H - PAD_B - (y / y1) * (H - PAD_T - PAD_B);
  // axes: three value ticks, one time tick per day
  for (const f of [0, 0.5, 1]) {
    const y = sy(f * y1 / 1.05);
    svg.append(svgEl("line", { class: "axis", x1: PAD_L, x2: W - PAD_R, y1: y, y2: y }));
    svg.append(svgEl("text", { x: PAD_L - 6, y: y + 4, "text-anchor": "end" }, fmt(f * y1 / 1.05)));
  }
  const day = 86400000;
  const span = x1 - x0, every = span > 10 * day ? 2 * day : day;
  for (let t = Math.ceil(x0 / every) * every; t <= x1; t += every) {
    svg.append(svgEl("text", { x: sx(t), y: H - 12, "text-anchor": "middle" },
      new Date(t).toLocaleDateString("en-GB", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" })));
  }
  // unusual changes (alerts) as shaded spans with a label
  const end = hist.length ? hist[hist.length - 1][0] : x1;
  for (const s of data.shifts || []) {
    const a = Math.max(x0, Date.parse(s.started)), b = s.ended ? Date.parse(s.ended) : end;
    if (b < x0) continue;
    const cls = s.direction === "collapse" ? "collapse" : "surge";
    svg.append(svgEl("rect", { class: "shift " + cls, x: sx(a), y: PAD_T, width: Math.max(2, sx(b) - sx(a)), height: H - PAD_T - PAD_B,
      "data-state": s.state, "data-direction": s.direction }));
    svg.append(svgEl("text", { class: "shift-label " + cls, x: sx(a) + 3, y: PAD_T - 4 },
      (cls === "surge" ? "rise " : "drop ") + ratioText(s.peak_ratio).replace(" normal", "")));
  }
  const poly = (pts, cls, extra) => svg.append(svgEl("polyline", { class: cls, points: pts.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" "), ...extra }));
  const band = (lo, hi, cls, name) => {
    if (!fc.length) return;
    const top = fc.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[hi]).toFixed(1)}`);
    const bottom = fc.slice().reverse().map((p) => `${sx(p[0]).toFixed(1)},${sy(p[lo]).toFixed(1)}`);
    svg.append(svgEl("polygon", { class: cls, points: top.concat(bottom).join(" "), "data-band": name, "data-n": fc.length }));
  };
  band(4, 5, "band95", "95");
  band(2, 3, "band80", "80");
  const base = hist.filter((p) => p[2] !== null && p[2] !== undefined).map((p) => [p[0], p[2]]);
  if (base.length) poly(base, "baseline", { "data-series": "baseline", "data-n": base.length });
  if (hist.length) poly(hist.map((p) => [p[0], p[1]]), "history", { "data-series": "history", "data-n": hist.length });
  if (fc.length) poly((hist.length ? [[hist[hist.length - 1][0], hist[hist.length - 1][1]]] : []).concat(fc.map((p) => [p[0], p[1]])), "forecast", { "data-series": "forecast", "data-n": fc.length });
  if (hold.length) poly(hold, "hold", { "data-series": "if-shift-holds", "data-n": hold.length });
  if (hist.length) {
    svg.append(svgEl("line", { class: "now", x1: sx(end), x2: sx(end), y1: PAD_T, y2: H - PAD_B }));
    svg.append(svgEl("text", { x: sx(end) + 4, y: H - PAD_B - 4 }, "now"));
  }
  return hist.length + fc.length;
}

function drawShifts(data) {
  const shifts = (data.shifts || []).slice().reverse();
  const section = document.getElementById("shifts");
  section.setAttribute("data-count", shifts.length);
  document.getElementById("shifts-empty").hidden = shifts.length > 0;
  const table = document.getElementById("shifts-table");
  table.hidden = shifts.length === 0;
  const body = table.querySelector("tbody");
  body.replaceChildren();
  const last = data.history.length ? Date.parse(data.history[data.history.length - 1][0]) + data.step_s * 1000 : Date.now();
  for (const s of shifts) {
    const cls = s.direction === "collapse" ? "collapse" : "surge";
    const open = s.state === "OPEN";
    const hours = open ? (last - Date.parse(s.started)) / 3600000 : s.hours;
    const outcome = open ? "still going" : s.state === "NEW_NORMAL" ? "became the new normal" : "back to normal";
    body.append(el("tr", { class: "shift", "data-state": s.state, "data-direction": s.direction },
      el("td", {}, when(s.started)),
      el("td", { class: cls }, cls === "surge" ? "demand rose unusually" : "demand dropped unusually"),
      el("td", {}, ratioText(s.peak_ratio)),
      el("td", {}, (open ? "so far " : "") + hoursText(Math.max(0, hours || 0))),
      el("td", {}, outcome)));
  }
}

function drawState(data) {
  const badge = document.getElementById("now-state");
  const hold = document.getElementById("hold");
  if (data.shift_open) {
    const cls = data.shift_open.direction;
    badge.className = "badge " + cls;
    badge.textContent = (cls === "surge" ? "unusual rise right now, " : "unusual drop right now, ") + ratioText(data.shift_open.ratio_so_far);
    hold.hidden = false;
    hold.textContent = "Dashed line: the forecast if the current " + (cls === "surge" ? "rise" : "drop") + " holds. Solid: if demand returns to its usual pattern.";
  } else {
    badge.className = "badge";
    badge.textContent = "normal right now";
    hold.hidden = true;
  }
}

let keys = [];

function fillPickers() {
  const keySel = document.getElementById("key"), measureSel = document.getElementById("measure");
  const names = [...new Set(keys.map((k) => k.key))];
  const want = param("key") || keySel.value || names[0];
  keySel.replaceChildren(...names.map((k) => el("option", { value: k }, k)));
  if (names.includes(want)) keySel.value = want;
  const measures = keys.filter((k) => k.key === keySel.value).map((k) => k.measure);
  const wantM = param("measure") || measureSel.value || measures[0];
  measureSel.replaceChildren(...measures.map((m) => el("option", { value: m }, m)));
  if (measures.includes(wantM)) measureSel.value = wantM;
}

async function show() {
  const status = document.getElementById("status");
  const key = document.getElementById("key").value, measure = document.getElementById("measure").value;
  const horizon = document.getElementById("horizon").value;
  if (!key) {
    status.dataset.state = "empty";
    status.textContent = "no demand seen yet";
    return;
  }
  try {
    const data = await get(`demand/forecast?key=${encodeURIComponent(key)}&measure=${encodeURIComponent(measure)}&horizon=${horizon}`);
    const n = drawChart(data);
    document.getElementById("chart-section").setAttribute("data-points", n);
    document.getElementById("chart-h").textContent = `${key} — ${measure}: recent demand and the next ${horizon} hours`;
    drawShifts(data);
    drawState(data);
    status.dataset.state = "ok";
    status.textContent = "updated " + new Date().toLocaleTimeString("en-GB");
    document.getElementById("footer").textContent = `${keys.length} keys and measures · forecast step ${data.step_s / 3600} h · bands from the model's own past errors`;
    document.body.dataset.loaded = "true";
  } catch (err) {
    status.dataset.state = "error";
    status.textContent = "could not load: " + err.message;
  }
}

async function start() {
  try {
    keys = (await get("demand/keys")).keys || [];
  } catch (err) {
    const status = document.getElementById("status");
    status.dataset.state = "error";
    status.textContent = "could not load keys: " + err.message;
    return;
  }
  fillPickers();
  document.getElementById("key").addEventListener("change", () => { fillPickers(); show(); });
  document.getElementById("measure").addEventListener("change", show);
  document.getElementById("horizon").addEventListener("change", show);
  await show();
  setInterval(show, 60000);
}

start();
