// The rollout console: polls /api/admin/stats with the admin token and renders it.
const $ = (id) => document.getElementById(id);
let timer = null;

function row(cells) {
  const tr = document.createElement("tr");
  for (const c of cells) {
    const td = document.createElement("td");
    td.textContent = String(c);
    tr.append(td);
  }
  return tr;
}

function pairs(dl, entries) {
  dl.replaceChildren();
  for (const [k, v] of entries) {
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = String(v);
    dl.append(dt, dd);
  }
}

function verdict(win) {
  const ws = win.byTransport.ws, sse = win.byTransport.sse;
  const el = $("verdict");
  if (!ws || !ws.in) { el.textContent = "No WebSocket traffic yet in this window."; el.className = ""; return; }
  const wsRate = ws.errorRate, sseRate = sse && sse.in ? sse.errorRate : 0;
  if (wsRate <= Math.max(0.01, sseRate * 1.5)) {
    el.textContent = `WebSocket error rate ${(wsRate * 100).toFixed(2)}% vs SSE ${(sseRate * 100).toFixed(2)}%: safe to widen the rollout.`;
    el.className = "ok";
  } else {
    el.textContent = `WebSocket error rate ${(wsRate * 100).toFixed(2)}% vs SSE ${(sseRate * 100).toFixed(2)}%: hold, or roll back (see migrations_notes.md).`;
    el.className = "warn";
  }
}

async function refresh() {
  const token = sessionStorage.getItem("lastra-admin-token") || "";
  const minutes = $("minutes").value;
  const res = await fetch(`/api/admin/stats?minutes=${minutes}`, { headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    $("problem").textContent = `Refused: ${body.message || res.status}`;
    $("problem").hidden = false;
    $("panel").hidden = true;
    return;
  }
  const s = await res.json();
  $("problem").hidden = true;
  $("panel").hidden = false;
  const f = s.flag;
  pairs($("flag"), [["LASTRA_TRANSPORT", f.transport], ["LASTRA_WS_ROLLOUT_PERCENT", f.wsRolloutPercent],
    ["forced to WS (users)", f.wsUsers], ["forced to SSE (users)", f.sseUsers], ["SSE enabled", f.sseEnabled]]);
  const conns = $("connections").tBodies[0];
  conns.replaceChildren();
  // ws and sse always; others (sse-legacy: SSE-era tabs) while they have connections or traffic
  const extra = [...new Set([...Object.keys(s.connections), ...Object.keys(s.window.byTransport)])]
    .filter((t) => t !== "ws" && t !== "sse");
  const transports = ["ws", "sse", ...extra];
  for (const t of transports) conns.append(row([t, s.connections[t] || 0, s.users[t] || 0]));
  $("online").textContent = `${s.onlineUsers} users online (all processes).`;
  const win = $("window").tBodies[0];
  win.replaceChildren();
  for (const t of transports) {
    const r = s.window.byTransport[t] || { in: 0, err: 0, errorRate: 0, conn: 0 };
    win.append(row([t, r.in, r.err, `${(r.errorRate * 100).toFixed(2)}%`, r.conn]));
  }
  verdict(s.window);
  rollout(s);
  pairs($("server"), [["backend", s.backend], ["process", s.node], ["epoch", s.epoch], ["last seq", s.lastSeq],
    ["outbound queued (max / total)", `${s.outboundQueued.max} / ${s.outboundQueued.total}`]]);
}

// ---- the five success metrics and the guard (app/scorecard.py, app/guard.py)

function figure(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "object") return String(v);
  return Object.entries(v).map(([k, x]) => `${k} ${x === null ? "—" : x}`).join(", ");
}

function rollout(s) {
  const body = $("scorecard").tBodies[0];
  body.replaceChildren();
  for (const r of s.scorecard || []) {
    const tr = row([r.metric, figure(r.ws), figure(r.sse), r.verdict]);
    tr.dataset.status = r.status;
    tr.className = r.status;
    body.append(tr);
  }
  const calls = $("pairs").tBodies[0];
  calls.replaceChildren();
  for (const [pair, c] of Object.entries(s.callPairs || {})) {
    calls.append(row([pair, c.connected, c.failed, c.relayed, c.iceRestarts, c.connectP50Ms === null ? "—" : `≤ ${c.connectP50Ms} ms`]));
  }
  const g = s.guard, el = $("guard");
  const reasons = $("guard-reasons");
  reasons.replaceChildren();
  if (!g) { el.textContent = "No rollout guard on this server."; return; }
  el.dataset.tripped = String(Boolean(g.tripped));
  $("guard-clear").hidden = !g.tripped;
  if (g.tripped) {
    el.textContent = `TRIPPED ${new Date(g.at * 1000).toLocaleString()}: every new and reconnecting user gets SSE until you clear it.`;
    el.className = "warn";
    for (const r of g.reasons || []) { const li = document.createElement("li"); li.textContent = r; reasons.append(li); }
  } else {
    const t = g.thresholds;
    el.textContent = g.enabled
      ? `Armed: trips when WebSocket is worse than SSE over ${g.windowSeconds / 60} min by more than +${t.abnormal_closes * 100}% abnormal closes, +${t.failed_resumes * 100}% failed resumes, +${t.call_failures * 100}% call failures or +${t.delivery_p99_ms} ms delivery p99 (after ${t.min_samples} WebSocket events).`
      : "Off (LASTRA_ROLLOUT_GUARD=false): nothing rolls back by itself.";
    el.className = "ok";
  }
}

$("guard-clear").addEventListener("click", async () => {
  const token = sessionStorage.getItem("lastra-admin-token") || "";
  const res = await fetch("/api/admin/guard/clear", { method: "POST", headers: { Authorization: `Bearer ${token}` } });
  if (!res.ok) { $("problem").textContent = `Clearing refused (${res.status})`; $("problem").hidden = false; }
  refresh();
});
$("minutes").addEventListener("change", () => refresh());

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("lastra-admin-token", $("token").value);
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 2000);
});
if (sessionStorage.getItem("lastra-admin-token")) { refresh(); timer = setInterval(refresh, 2000); }
