// The Node.js peer of the benchmark: a `ws` broadcast server with bare_ws.py's wire.
//
// First frame `auth` -> `ready`; every `chat` frame becomes Lastra's chat envelope,
// encoded once into a Buffer and sent to every open connection (the broadcast loop
// of the `ws` README). No token check, history or presence, like the other baselines.
// Usage: node ws_server.js --host 127.0.0.1 --port N
"use strict";
const crypto = require("node:crypto");
const { WebSocketServer, WebSocket } = require("ws");

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const host = opt("--host", "127.0.0.1");
const port = Number(opt("--port", "0"));

function identity(token) {
  try {
    const claims = JSON.parse(Buffer.from(String(token).split(".")[1], "base64url"));
    return [String(claims.sub), String(claims.name ?? claims.sub)];
  } catch {
    return ["anon", "anon"];
  }
}

let seq = 0;
const wss = new WebSocketServer({ host, port, backlog: 2048, perMessageDeflate: false, maxPayload: 65536 });

wss.on("connection", (ws) => {
  let user = null;
  ws.on("message", (raw, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(raw);
    } catch {
      return;
    }
    if (user === null) {
      if (msg?.type !== "auth") return ws.close(4401);
      user = identity(msg.data?.token);
      ws.send(JSON.stringify({ type: "ready", data: { userId: user[0], userName: user[1], lastSeq: seq } }));
      return;
    }
    if (msg?.type !== "chat") return;
    const data = msg.data && typeof msg.data === "object" ? msg.data : {};
    seq += 1;
    const chat = {
      id: crypto.randomUUID().replaceAll("-", ""),
      ts: Date.now(),
      kind: "user",
      userId: user[0],
      userName: user[1],
      text: String(data.text ?? ""),
    };
    if (typeof data.clientId === "string") chat.clientId = data.clientId;
    chat.seq = seq;
    const frame = Buffer.from(JSON.stringify({ type: "chat", seq, data: chat }));
    for (const client of wss.clients) {
      if (client.readyState === WebSocket.OPEN) client.send(frame, { binary: false });
    }
  });
});

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
