"""Structured logs (issue 9): one JSON object per line, never a token or a message text at info.

The server runs at ``LOG_LEVEL=info`` (everything an operator ships). The test makes traffic
that puts tokens where a careless server would log them (the SSE ``?token=`` query, a
forged token, a refresh) and distinctive texts in every message type that carries text,
then reads the server's log file (its stderr) line by line.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from support.clients import SseClient, WsClient, aio, asession, async_http, uniq
from support.server import Server
from test_ops_support import mint

#: this module's own server (conftest's ``srv``)
SERVER_SETTINGS: dict[str, str] = {
    "LOG_LEVEL": "info",
    "AI_OFFLINE_DELAY": "0.001",
}


def log_entries(srv: Server) -> list[dict[str, Any]]:
    assert srv.log_path is not None
    entries = []
    for number, line in enumerate(srv.log_path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            raise AssertionError(f"log line {number} is not JSON: {line!r}") from None
        assert isinstance(entry, dict), line
        entries.append(entry)
    return entries


@aio
async def test_log_lines_are_json_with_ids_and_without_secrets(srv: Server) -> None:
    secret_text = uniq("chat-text-never-logged")
    secret_prompt = uniq("prompt-never-logged")
    secret_sse_text = uniq("sse-text-never-logged")

    ada = await asession(srv.http)
    bea = await asession(srv.http)
    ws = await WsClient.open(srv, ada)
    # the token in the query string, as EventSource clients without headers send it
    sse = await SseClient.open(srv, bea, bearer=False, params={"token": bea.token})
    assert (await ws.chat(secret_text)).ok
    await sse.expect("chat", lambda d: d["text"] == secret_text)
    assert (await sse.chat(secret_sse_text)).ok
    bot = ws.bots["bots"][0]["name"]
    assert (await ws.request("ai-request", {"prompt": secret_prompt, "bot": bot})).ok
    await ws.expect("ai-stream", lambda d: d.get("done") is True, timeout=10)
    # tokens that are refused, and a refresh
    forged = mint(ada.userId, secret="wrong-secret-wrong-secret-0123456789")
    bad = await WsClient.connect(srv.ws)
    await bad.auth(forged, settle=False)
    assert (await bad.wait_closed())[0] == 4401
    refused = await SseClient.connect(srv.http, None, params={"token": forged})
    assert refused.status == 401
    async with async_http(srv.http) as http:
        refreshed = await http.post("/api/session", json={"userName": "Ada"}, headers=ada.bearer)
        assert refreshed.status_code == 200
        new_token = refreshed.json()["token"]
    await ws.close()
    await sse.close()

    def disconnect_lines() -> list[dict[str, Any]]:
        return [e for e in log_entries(srv) if str(e.get("msg", "")).startswith("disconnected")]

    # the server logs a disconnect as it detaches: wait for both lines
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5
    users = (f"user={ada.userId}", f"user={bea.userId}")
    while len([e for e in disconnect_lines() if any(u in e["msg"] for u in users)]) < 2:
        assert loop.time() < deadline, "no disconnect lines for both connections"
        await asyncio.sleep(0.05)  # a line in another process's log file: polling

    entries = log_entries(srv)
    raw = srv.log_path.read_text() if srv.log_path else ""
    for entry in entries:
        for key in ("ts", "level", "logger", "msg"):
            assert key in entry, f"{key} missing: {entry}"
    for secret in (ada.token, bea.token, forged, new_token):
        assert secret not in raw, "a token reached the log"
        # not even its signature part (a redacted-but-partial token still leaks)
        assert secret.rsplit(".", 1)[-1] not in raw
    for text in (secret_text, secret_prompt, secret_sse_text):
        assert text not in raw, f"message text {text!r} reached the log at info level"

    # every connection is named: peer and user ids, transport, close code
    connected = [e for e in entries if str(e["msg"]).startswith("connected ")]
    for user, transport in ((ada, "ws"), (bea, "sse")):
        mine = [e for e in connected if f"user={user.userId}" in e["msg"]]
        assert mine, f"no connected line for {user.userId}"
        assert f"transport={transport}" in mine[0]["msg"] and "peer=p_" in mine[0]["msg"]
        gone = [e for e in disconnect_lines() if f"user={user.userId}" in e["msg"]]
        assert gone and "code=" in gone[0]["msg"]
    assert {e["level"] for e in entries} <= {"debug", "info", "warning", "error", "critical"}
