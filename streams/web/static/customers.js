// The customer page: fetches customers/data?id=... once and renders it with DOM calls only
// (every value comes from customer events, so nothing is ever inserted as HTML).
"use strict";

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

function when(iso) {
  return iso ? iso.replace("T", " ").replace(/\.\d+Z$|Z$/, "") : "–";
}

function show(value) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "number") return Number.isInteger(value) ? value.toLocaleString("en") : value.toFixed(2);
  return String(value);
}

function card(label, value, key) {
  return el("div", { class: "card", "data-card": key }, el("div", { class: "label" }, label), el("div", { class: "value" }, value));
}

function render(c) {
  document.getElementById("customer-id").textContent = c.profile_id;
  const revenue = Object.entries(c.orders.revenue).map(([cur, v]) => `${v.toFixed(2)} ${cur}`).join(", ") || "–";
  document.getElementById("cards").replaceChildren(
    card("orders", show(c.orders.count), "orders"), card("revenue", revenue, "revenue"),
    card("stage", c.funnel_stage.replace("_", " "), "funnel"), card("events", show(c.event_count), "events"),
    card("first seen", when(c.first_seen), "first_seen"), card("last seen", when(c.last_seen), "last_seen"));

  const aud = document.getElementById("audiences");
  aud.setAttribute("data-count", c.audiences.length);
  document.getElementById("audiences-empty").hidden = c.audiences.length > 0;
  document.getElementById("audience-list").replaceChildren(...c.audiences.map((a) =>
    el("li", { class: "audience", "data-audience": a.name, title: a.description || "" }, a.name.replaceAll("_", " "), " ",
       el("small", {}, a.purpose === "none" ? "(no consent needed)" : `(consent: ${a.purpose})`))));

  document.getElementById("trait-rows").replaceChildren(...c.computed_traits.map((t) =>
    el("tr", { class: "trait", "data-trait": t.name, "data-value": t.value === null ? "" : t.value },
       el("td", {}, t.name.replaceAll("_", " ")), el("td", { class: "num" }, show(t.value)), el("td", {}, t.description || t.kind))));

  const consent = Object.entries(c.consent);
  document.getElementById("consent-empty").hidden = consent.length > 0;
  document.getElementById("consent-list").replaceChildren(...consent.map(([flag, yes]) =>
    el("li", { class: yes ? "yes" : "no", "data-consent": flag, "data-given": yes }, `${flag}: ${yes ? "yes" : "no"}`)));

  const channels = Object.entries(c.channels);
  const top = Math.max(1, ...channels.map(([, n]) => n));
  document.getElementById("channel-bars").replaceChildren(...channels.map(([name, n]) =>
    el("div", { class: "bar", "data-channel": name, "data-count": n }, el("span", { class: "name" }, name),
       el("span", { class: "fill", style: `width:${Math.round((n / top) * 240)}px` }), el("span", {}, show(n)))));

  document.getElementById("identifier-rows").replaceChildren(...c.identifiers.map((i) =>
    el("tr", { class: "identifier", "data-type": i.type, "data-masked": i.masked },
       el("td", {}, i.type), el("td", { class: i.masked ? "masked" : "" }, i.value), el("td", {}, when(i.first_seen)), el("td", {}, when(i.last_seen)))));

  document.getElementById("timeline-rows").replaceChildren(...c.timeline.map((t) =>
    el("tr", { class: t.summary.startsWith("Order Completed") ? "event order" : "event" },
       el("td", {}, when(t.time)), el("td", {}, t.channel || "–"), el("td", {}, t.summary))));
}

async function load() {
  const status = document.getElementById("status");
  const id = new URLSearchParams(window.location.search).get("id");
  if (!id) {
    status.setAttribute("data-state", "error");
    status.textContent = "Add ?id=TYPE:VALUE to the address, e.g. ?id=user_id:u000042";
    return;
  }
  const headers = {};
  if (token()) headers.Authorization = `Bearer ${token()}`;
  try {
    const resp = await fetch(`customers/data?id=${encodeURIComponent(id)}`, { headers, cache: "no-store" });
    const body = await resp.json();
    if (!resp.ok) throw new Error(body.error || `HTTP ${resp.status}`);
    render(body);
    status.setAttribute("data-state", "ok");
    status.textContent = `as of ${when(new Date(body.generated_at).toISOString())} UTC`;
    document.body.setAttribute("data-loaded", "true");
  } catch (err) {
    status.setAttribute("data-state", "error");
    status.textContent = String(err.message || err);
  }
}

load();
