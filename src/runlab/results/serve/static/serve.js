// runlab serve: fills the runs table and the curves from the JSON endpoints, every second.
// Every value from a run is inserted as text (textContent), never as HTML.
"use strict";

const POLL_MS = 1000;
const params = new URLSearchParams(location.search);
if (params.has("token")) {  // the cookie carries it now: out of the address bar and history
  params.delete("token");
  history.replaceState(null, "", location.pathname + (params.toString() ? "?" + params : ""));
}
const state = {where: params.get("where") || "", metric: params.get("metric") || "",
               sort: null, desc: false, polls: 0, busy: false};
window.runlab = state;  // for the tests: state.polls counts the answers received

function el(tag, text, cls) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toPrecision(6).replace(/\.?0+$/, "");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function duration(s) {
  if (s === null || s === undefined) return "";
  if (s < 120) return s.toFixed(1) + " s";
  if (s < 7200) return (s / 60).toFixed(1) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function showError(text) {
  const box = document.getElementById("error");
  box.textContent = text || "";
  box.hidden = !text;
}

async function fetchJson(url) {
  const reply = await fetch(url, {credentials: "same-origin", cache: "no-store"});
  const data = await reply.json().catch(() => ({error: "the server answered " + reply.status}));
  if (!reply.ok) throw new Error(data.error || ("the server answered " + reply.status));
  return data;
}

function query(extra) {
  const q = new URLSearchParams();
  if (state.where) q.set("where", state.where);
  for (const [k, v] of Object.entries(extra || {})) if (v) q.set(k, v);
  return q.toString();
}

function setupFilter(onChange) {
  const form = document.getElementById("filter");
  const input = document.getElementById("where");
  const select = document.getElementById("metric");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    state.where = input.value.trim();
    const q = new URLSearchParams();
    if (state.where) q.set("where", state.where);
    history.replaceState(null, "", location.pathname + (q.toString() ? "?" + q : ""));
    onChange();
  });
  select.addEventListener("change", () => { state.metric = select.value; onChange(); });
}

function fillMetrics(metrics, chosen) {
  const select = document.getElementById("metric");
  const have = [...select.options].map((o) => o.value).join("\n");
  if (have !== metrics.join("\n")) {
    select.replaceChildren(...metrics.map((m) => { const o = el("option", m); o.value = m; return o; }));
  }
  if (chosen) select.value = chosen;
}

// ------------------------------------------------------------------ the runs page
function sortRows(rows) {
  if (!state.sort) return rows;
  const key = state.sort;
  const get = (r) => key === "value" ? r.value : key === "run_id" ? r.run_id
    : key === "duration" ? r.duration_s : key === "status" ? r.status : r.config[key];
  const sorted = [...rows].sort((a, b) => {
    const x = get(a), y = get(b);
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (state.desc ? -1 : 1);
  });
  return sorted;
}

function header(data) {
  const cols = [["run_id", "run"], ["status", "status"], ["duration", "duration"],
    ...data.keys.map((k) => [k, k]), ["value", data.metric ? data.metric + " (last)" : "metric"]];
  const tr = el("tr");
  for (const [key, label] of cols) {
    const th = el("th", label + (state.sort === key ? (state.desc ? " \u25bc" : " \u25b2") : ""));
    th.dataset.key = key;
    th.addEventListener("click", () => {
      state.desc = state.sort === key ? !state.desc : key === "value";
      state.sort = key;
      pollRuns();
    });
    tr.append(th);
  }
  return tr;
}

function runRow(run, keys) {
  const tr = el("tr");
  tr.dataset.run = run.run_id;
  const link = el("a", run.run_id);
  link.href = "/run/" + encodeURIComponent(run.run_id);
  const first = el("td"); first.append(link); tr.append(first);
  const status = el("td", run.status, "status");
  status.style.color = run.colour;
  if (run.error) status.title = run.error;
  tr.append(status, el("td", duration(run.duration_s), "num"));
  for (const key of keys) tr.append(el("td", fmt(run.config[key])));
  tr.append(el("td", fmt(run.value), "num"));
  return tr;
}

async function pollRuns() {
  if (state.busy) return;
  state.busy = true;
  try {
    const data = await fetchJson("/api/runs?" + query({metric: state.metric}));
    showError("");
    fillMetrics(data.metrics, data.metric);
    state.metric = data.metric || "";
    const table = document.getElementById("runs");
    table.tHead.replaceChildren(header(data));
    table.tBodies[0].replaceChildren(...sortRows(data.runs).map((r) => runRow(r, data.keys)));
    const counts = Object.entries(data.counts).map(([s, n]) => s + " " + n).join(", ");
    document.getElementById("counts").textContent = data.runs.length + " run(s)" + (counts ? ": " + counts : "");
    live(true);
  } catch (err) {
    showError(err.message);
    live(false);
  } finally {
    state.polls += 1;
    state.busy = false;
  }
}

function live(ok) {
  const mark = document.getElementById("live");
  mark.textContent = ok ? "live: refreshed " + new Date().toLocaleTimeString() : "not refreshed";
}

// ------------------------------------------------------------------ the curves page
const curves = {since: {}, panels: {}};

function esc(text) {  // Plotly reads a few HTML tags in names: show them as text
  return String(text).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function panel(metric) {
  let p = curves.panels[metric];
  if (p) return p;
  const box = el("section", null, "panel");
  box.append(el("h2", metric, "panel-title"));
  const plot = el("div", null, "runlab-plot");
  plot.dataset.metric = metric;
  box.append(plot);
  document.getElementById("panels").append(box);
  Plotly.newPlot(plot, [], {margin: {l: 60, r: 20, t: 32, b: 40}, height: 340,
    xaxis: {title: {text: "step"}}, showlegend: true, legend: {font: {size: 11}}},
    {displaylogo: false, responsive: true});
  p = curves.panels[metric] = {plot: plot, traces: {}};
  return p;
}

function trace(p, rid, run) {
  if (p.traces[rid] !== undefined) return p.traces[rid];
  Plotly.addTraces(p.plot, {x: [], y: [], mode: "lines", type: "scatter",
    name: esc("run " + rid + " \u00b7 " + run.label), legendgroup: String(run.group),
    line: {color: run.colour}, meta: {run: Number(rid), group: run.group}});
  p.traces[rid] = p.plot.data.length - 1;
  return p.traces[rid];
}

function addRows(rid, run) {
  for (const [file, got] of Object.entries(run.files)) {
    curves.since[rid] = curves.since[rid] || {};
    curves.since[rid][file] = [got.offset, got.ino];
    for (const [key, values] of Object.entries(got.values)) {
      const p = panel(file + "." + key);
      const i = trace(p, rid, run);
      if (got.reset) Plotly.restyle(p.plot, {x: [[]], y: [[]]}, [i]);
      if (got.step.length) Plotly.extendTraces(p.plot, {x: [got.step], y: [values]}, [i]);
    }
  }
}

async function pollCurves() {
  if (state.busy) return;
  state.busy = true;
  try {
    const data = await fetchJson("/api/curves?" + query({since: JSON.stringify(curves.since)}));
    showError("");
    for (const [rid, run] of Object.entries(data.runs)) addRows(rid, run);
    live(true);
  } catch (err) {
    showError(err.message);
    live(false);
  } finally {
    state.polls += 1;
    state.busy = false;
  }
}

function restartCurves() {
  curves.since = {};
  curves.panels = {};
  document.getElementById("panels").replaceChildren();
  pollCurves();
}

// ------------------------------------------------------------------ start
const page = document.body.dataset.page;
if (page === "runs") {
  setupFilter(pollRuns);
  pollRuns();
  setInterval(pollRuns, POLL_MS);
} else if (page === "curves") {
  document.getElementById("metric").parentElement.hidden = true;
  setupFilter(restartCurves);
  pollCurves();
  setInterval(pollCurves, POLL_MS);
}
