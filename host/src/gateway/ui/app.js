// polymongo dashboard: polls the admin API once a second and renders it. No dependencies.
// Every value from the server goes into the page as text (textContent), never as HTML:
// database names and plugin errors are not trusted markup.
"use strict";

const TOKEN_KEY = "polymongo-admin-token";
const HISTORY = 120; // points in the chart (one a second)
const history = []; // { open, opens, evictions } per tick (opens/evictions: deltas)
let last = null; // previous summary, for deltas
let timer = null;
let ticks = 0;

const $ = (id) => document.getElementById(id);

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, path, body) {
  const headers = {};
  const t = token();
  if (t) headers["Authorization"] = "Bearer " + t;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method,
    headers,
    cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401) {
    const err = new Error("unauthorized");
    err.unauthorized = true;
    throw err;
  }
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || response.status + " " + response.statusText);
  return data;
}

function showLogin(message) {
  stop();
  $("app").hidden = true;
  $("login").hidden = false;
  $("signout").hidden = true;
  $("login-error").textContent = message || "";
  setLive("signed out", "");
  $("token").focus();
}

function setLive(text, cls) {
  const b = $("live");
  b.textContent = text;
  b.className = "badge " + cls;
}

function stop() {
  if (timer) clearInterval(timer);
  timer = null;
}

async function start() {
  try {
    await refreshStats();
  } catch (e) {
    if (e.unauthorized) {
      showLogin(token() ? "That token was refused." : "");
      return;
    }
    setLive("error: " + e.message, "down");
  }
  $("login").hidden = true;
  $("app").hidden = false;
  $("signout").hidden = !token();
  refreshPlugins();
  stop();
  timer = setInterval(tick, 1000);
}

async function tick() {
  ticks++;
  try {
    await refreshStats();
    if (ticks % 5 === 0) await refreshPlugins();
  } catch (e) {
    if (e.unauthorized) showLogin("The token was refused.");
    else setLive("error: " + e.message, "down");
  }
}

// ---- stats ----

async function refreshStats() {
  const data = await api("GET", "/admin/stats");
  renderSummary(data.summary);
  renderPools(data.pools);
  setLive("live · " + new Date().toLocaleTimeString(), "live");
}

function renderSummary(s) {
  $("policy").textContent = "policy: " + s.policy;
  $("c-open").textContent = s.open_pools + (s.max_connections != null ? " / " + s.max_connections : "");
  $("c-opens").textContent = s.opens;
  $("c-evictions").textContent = s.evictions;
  $("c-idle").textContent = s.idle_closes;
  const ops = s.hits + s.misses;
  $("c-hits").textContent = ops ? (100 * s.hits / ops).toFixed(1) + " %" : "–";
  $("c-inflight").textContent = s.in_flight;
  $("c-limit").textContent = s.limit_reached;
  const point = {
    open: s.open_pools,
    opens: last ? Math.max(0, s.opens - last.opens) : 0,
    evictions: last ? Math.max(0, s.evictions - last.evictions) : 0,
  };
  last = s;
  history.push(point);
  while (history.length > HISTORY) history.shift();
  drawChart();
}

function ms(v) {
  if (v == null) return "–";
  if (v < 1000) return Math.round(v) + " ms";
  if (v < 60000) return (v / 1000).toFixed(1) + " s";
  if (v < 3600000) return (v / 60000).toFixed(1) + " min";
  return (v / 3600000).toFixed(1) + " h";
}

const PROTECTION = {
  pinned: "priority -1: never evicted or idle-closed",
  watched: "a live change stream or keep-alive guard",
  busy: "operations in flight",
};

function cell(tr, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

function renderPools(pools) {
  const tbody = $("pools").querySelector("tbody");
  const rows = document.createDocumentFragment();
  for (const p of pools) {
    const tr = document.createElement("tr");
    tr.dataset.db = p.db_name;
    cell(tr, p.db_name, "db");
    cell(tr, p.priority, "num priority");
    cell(tr, p.use_count, "num");
    cell(tr, p.avg_interval ? ms(p.avg_interval) : "–", "num");
    cell(tr, ms(p.idle_time), "num");
    cell(tr, typeof p.score === "number" ? p.score.toFixed(2) : "–", "num");
    const prot = cell(tr, "", "");
    if (p.protected) {
      const tag = document.createElement("span");
      tag.className = "tag " + p.protected;
      let why = PROTECTION[p.protected] || p.protected;
      if (p.protected === "watched") why += " (" + p.watch_count + ")";
      if (p.protected === "busy") why += " (" + p.in_flight + ")";
      tag.textContent = p.protected;
      tag.title = why;
      prot.appendChild(tag);
      prot.appendChild(document.createTextNode(" " + why));
    }
    cell(tr, p.in_flight, "num");
    const action = cell(tr, "", "");
    const edit = document.createElement("button");
    edit.type = "button";
    edit.className = "link";
    edit.textContent = "set priority…";
    edit.addEventListener("click", () => {
      $("priority-db").value = p.db_name;
      $("priority-value").value = p.priority;
      $("priority-value").focus();
    });
    action.appendChild(edit);
    rows.appendChild(tr);
  }
  tbody.replaceChildren(rows);
  $("no-pools").hidden = pools.length > 0;
  $("pool-count").textContent = "(" + pools.length + ")";
}

// ---- chart ----

function drawChart() {
  const canvas = $("chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth || 600;
  const height = canvas.clientHeight || 180;
  if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
  if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, width, height);
  const left = 36, right = 8, top = 8, bottom = 18;
  const w = width - left - right, h = height - top - bottom;
  let max = 1;
  for (const p of history) max = Math.max(max, p.open, p.opens, p.evictions);
  max = Math.ceil((max * 1.1) / 4) * 4; // four grid steps of whole numbers
  // The window grows from 30 s to HISTORY s as points arrive.
  const span = Math.min(HISTORY, Math.max(30, history.length));
  const css = getComputedStyle(document.documentElement);
  // grid and axis labels
  g.strokeStyle = css.getPropertyValue("--line").trim() || "#ddd";
  g.fillStyle = css.getPropertyValue("--muted").trim() || "#666";
  g.font = "11px system-ui, sans-serif";
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const y = top + h - (h * i) / 4;
    g.beginPath();
    g.moveTo(left, y);
    g.lineTo(left + w, y);
    g.stroke();
    g.fillText(String(Math.round((max * i) / 4)), 4, y + 4);
  }
  g.fillText("-" + span + " s", left, height - 4);
  g.fillText("now", left + w - 22, height - 4);
  const x = (i) => left + w - ((history.length - 1 - i) * w) / (span - 1);
  const y = (v) => top + h - (v / max) * h;
  const series = [
    ["open", css.getPropertyValue("--open").trim() || "#2563eb"],
    ["opens", css.getPropertyValue("--opens").trim() || "#16a34a"],
    ["evictions", css.getPropertyValue("--evictions").trim() || "#dc2626"],
  ];
  for (const [key, color] of series) {
    if (!history.length) break;
    g.strokeStyle = color;
    g.lineWidth = key === "open" ? 2 : 1.5;
    g.beginPath();
    history.forEach((p, i) => (i ? g.lineTo(x(i), y(p[key])) : g.moveTo(x(i), y(p[key]))));
    g.stroke();
  }
}

// ---- plugins ----

async function refreshPlugins() {
  let data;
  try {
    data = await api("GET", "/admin/plugins");
  } catch (e) {
    if (e.unauthorized) throw e;
    return;
  }
  $("plugins-dir").textContent = data.dir ? "(" + data.dir + ")" : "";
  const tbody = $("plugins").querySelector("tbody");
  const rows = document.createDocumentFragment();
  for (const p of data.plugins) {
    const tr = document.createElement("tr");
    tr.dataset.plugin = p.name;
    cell(tr, p.name, "db");
    cell(tr, (p.kind || "–") + (p.active_scorer ? " (active)" : ""));
    const v = cell(tr, p.version ? p.version.slice(0, 12) : "–", "db");
    if (p.version) v.title = p.version;
    const st = cell(tr, "");
    const tag = document.createElement("span");
    tag.className = "tag status-" + p.status;
    tag.textContent = p.status;
    st.appendChild(tag);
    cell(tr, p.in_flight, "num");
    cell(tr, p.last_error || "", "error-text");
    rows.appendChild(tr);
  }
  tbody.replaceChildren(rows);
}

// ---- priority ----

async function setPriority(event) {
  event.preventDefault();
  const db = $("priority-db").value.trim();
  const priority = Number($("priority-value").value);
  const out = $("priority-result");
  out.className = "";
  out.textContent = "…";
  try {
    const r = await api("PUT", "/admin/priorities/" + encodeURIComponent(db), { priority });
    out.className = "ok";
    out.textContent = "priority of " + r.db + " set to " + r.priority;
    await refreshStats();
  } catch (e) {
    if (e.unauthorized) return showLogin("The token was refused.");
    out.className = "error";
    out.textContent = "failed: " + e.message;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("login-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value);
    $("token").value = "";
    start();
  });
  $("signout").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin("");
  });
  $("priority-form").addEventListener("submit", setPriority);
  window.addEventListener("resize", drawChart);
  start();
});
