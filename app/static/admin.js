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
  const res = await fetch("/api/admin/stats", { headers: { Authorization: `Bearer ${token}` } });
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
  pairs($("server"), [["backend", s.backend], ["process", s.node], ["epoch", s.epoch], ["last seq", s.lastSeq],
    ["outbound queued (max / total)", `${s.outboundQueued.max} / ${s.outboundQueued.total}`]]);
}

$("login").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("lastra-admin-token", $("token").value);
  refresh();
  clearInterval(timer);
  timer = setInterval(refresh, 2000);
});
if (sessionStorage.getItem("lastra-admin-token")) { refresh(); timer = setInterval(refresh, 2000); }
