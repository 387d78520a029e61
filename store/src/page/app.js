// The store's live page: latest quotes (polled from /v1/quotes/latest) and a candlestick chart
// of the chosen symbol (from /v1/bars). No build step, no library: plain DOM and SVG.
// URL parameters: symbol, timeframe, poll (milliseconds between refreshes, default 2000),
// bars (how many bars the chart shows, default 120).
"use strict";

const params = new URLSearchParams(location.search);
const POLL_MS = Math.max(100, Number(params.get("poll")) || 2000);
const BARS = Math.min(1000, Math.max(1, Number(params.get("bars")) || 120));
const WIDTH_MS = { "1Min": 60e3, "5Min": 300e3, "15Min": 900e3, "1Hour": 3600e3, "1Day": 86400e3 };
const $ = (id) => document.getElementById(id);
const previous = new Map(); // symbol -> last price shown
let lastChartKey = "";

function token() { return sessionStorage.getItem("quotestream-token") || ""; }

// GET a /v1 path as JSON; a 401 shows the token form.
async function api(path) {
  const headers = token() ? { Authorization: "Bearer " + token() } : {};
  const r = await fetch(path, { headers });
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) { $("auth").style.display = "block"; }
  if (!r.ok) {
    const e = body.error || {};
    throw new Error(`${path}: ${r.status} ${e.message || r.statusText}`);
  }
  return body;
}

function fmtTime(t) { return t.replace("T", " ").replace(/(\.\d+)?Z$/, ""); }

async function loadSymbols() {
  const { symbols } = await api("/v1/symbols");
  const select = $("symbol");
  const chosen = params.get("symbol") || select.value;
  select.replaceChildren(...symbols.map((s) => new Option(`${s.symbol} (${s.count})`, s.symbol)));
  if (symbols.some((s) => s.symbol === chosen)) select.value = chosen;
  return symbols;
}

function renderLatest(quotes) {
  const tbody = $("latest").tBodies[0];
  const rows = Object.entries(quotes).map(([symbol, q]) => {
    const tr = document.createElement("tr");
    tr.dataset.symbol = symbol;
    tr.dataset.t = q.t;
    if (symbol === $("symbol").value) tr.className = "selected";
    const before = previous.get(symbol);
    const change = before === undefined ? 0 : q.p - before;
    previous.set(symbol, q.p);
    const cells = [symbol, q.p.toFixed(2), change === 0 ? "" : (change > 0 ? "+" : "") + change.toFixed(2), fmtTime(q.t)];
    cells.forEach((text, i) => {
      const td = document.createElement("td");
      td.textContent = text;
      if (i === 2 && change !== 0) td.className = change > 0 ? "up" : "down";
      tr.appendChild(td);
    });
    tr.addEventListener("click", () => { $("symbol").value = symbol; refresh(true); });
    return tr;
  });
  tbody.replaceChildren(...rows);
  const table = $("latest");
  table.dataset.rows = String(rows.length);
  table.dataset.updates = String(Number(table.dataset.updates) + 1);
}

// Every page of bars of `symbol` in [start, end].
async function bars(symbol, timeframe, start, end) {
  let out = [];
  let token = null;
  do {
    const q = new URLSearchParams({ timeframe, start, end, limit: "1000" });
    if (token) q.set("page_token", token);
    const page = await api(`/v1/bars/${encodeURIComponent(symbol)}?${q}`);
    out = out.concat(page.bars);
    token = page.next_page_token;
  } while (token);
  return out;
}

const SVG = "http://www.w3.org/2000/svg";
function el(name, attrs) {
  const e = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  return e;
}

// Candles: a wick from low to high, a body from open to close, green up, red down.
function drawCandles(svg, data, timeframe) {
  const w = svg.clientWidth || 800, h = svg.clientHeight || 420;
  const pad = { l: 8, r: 64, t: 10, b: 22 };
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const shapes = [];
  if (data.length) {
    const lo = Math.min(...data.map((b) => b.l)), hi = Math.max(...data.map((b) => b.h));
    const span = hi - lo || 1;
    const y = (p) => pad.t + (hi - p) / span * (h - pad.t - pad.b);
    const step = (w - pad.l - pad.r) / data.length;
    const body = Math.max(1, step * 0.7);
    data.forEach((b, i) => {
      const x = pad.l + i * step + step / 2;
      const cls = b.c >= b.o ? "up" : "down";
      const g = el("g", { class: "candle " + cls, "data-t": b.t });
      g.appendChild(el("line", { x1: x, x2: x, y1: y(b.h), y2: y(b.l), "stroke-width": 1 }));
      const top = y(Math.max(b.o, b.c));
      g.appendChild(el("rect", { x: x - body / 2, y: top, width: body, height: Math.max(1, y(Math.min(b.o, b.c)) - top) }));
      const title = el("title", {});
      title.textContent = `${fmtTime(b.t)}  o ${b.o} h ${b.h} l ${b.l} c ${b.c}  v ${b.v}  n ${b.n}`;
      g.appendChild(title);
      shapes.push(g);
    });
    for (const p of [hi, (hi + lo) / 2, lo]) {
      const label = el("text", { x: w - pad.r + 6, y: y(p) + 4 });
      label.textContent = p.toFixed(2);
      shapes.push(label);
    }
    const first = el("text", { x: pad.l, y: h - 6 });
    first.textContent = fmtTime(data[0].t);
    const last = el("text", { x: w - pad.r, y: h - 6, "text-anchor": "end" });
    last.textContent = fmtTime(data[data.length - 1].t);
    shapes.push(first, last);
  }
  svg.replaceChildren(...shapes);
  svg.dataset.candles = String(data.length);
  svg.dataset.timeframe = timeframe;
}

// The chart: the last BARS bars up to the symbol's latest quote.
async function drawChart(symbol, lastT) {
  const timeframe = $("timeframe").value;
  const endMs = Date.parse(lastT);
  const width = WIDTH_MS[timeframe];
  const startMs = Math.floor(endMs / width) * width - (BARS - 1) * width;
  const start = new Date(startMs).toISOString(), end = new Date(endMs).toISOString();
  const data = await bars(symbol, timeframe, start, end);
  const svg = $("chart");
  drawCandles(svg, data, timeframe);
  svg.dataset.symbol = symbol;
  svg.dataset.end = lastT;
  $("range").textContent = `${data.length} bars, ${fmtTime(start)} – ${fmtTime(end)} UTC`;
}

async function refresh(forceChart) {
  try {
    const { quotes } = await api("/v1/quotes/latest");
    if (!$("symbol").value || !(($("symbol").value) in quotes) || $("symbol").options.length !== Object.keys(quotes).length) {
      await loadSymbols();
    }
    renderLatest(quotes);
    const symbol = $("symbol").value;
    const latest = quotes[symbol];
    const key = latest ? `${symbol} ${$("timeframe").value} ${latest.t}` : "";
    if (latest && (forceChart || key !== lastChartKey)) {
      lastChartKey = key;
      await drawChart(symbol, latest.t);
    }
    $("status").textContent = `${Object.keys(quotes).length} symbols, updated ${new Date().toISOString().slice(11, 19)} UTC`;
    $("error").textContent = "";
  } catch (e) {
    $("error").textContent = String(e.message || e);
  }
}

async function loop() {
  await refresh(false);
  setTimeout(loop, POLL_MS);
}

$("auth").addEventListener("submit", (ev) => {
  ev.preventDefault();
  sessionStorage.setItem("quotestream-token", $("token").value.trim());
  $("auth").style.display = "none";
  refresh(true);
});
$("symbol").addEventListener("change", () => refresh(true));
$("timeframe").addEventListener("change", () => refresh(true));
if (params.get("timeframe") && WIDTH_MS[params.get("timeframe")]) $("timeframe").value = params.get("timeframe");
loop();
