"""``python -m app`` on a uvicorn it was not tested on: one warning, stock protocols, a chat.

The installed uvicorn is swapped, as far as the version check can tell, by a
distribution record for uvicorn 0.99.0 placed ahead of site-packages on
``PYTHONPATH`` (``importlib.metadata`` reads the first one it finds). The code
that runs is still the installed uvicorn, through its stock protocols: the
plain-ASGI adapters (WebSocket sends, sse-starlette's stream) carry the chat.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from support.clients import (
    SseClient,
    WsClient,
    aio,
    asession,
    free_port,
    server_env,
    uniq,
)
from support.server import Server

WARNING = "outside the tested minors"


def _shadow_uvicorn(root: Path, version: str) -> Path:
    dist = root / f"uvicorn-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: uvicorn\nVersion: {version}\n")
    return root


@aio
async def test_untested_uvicorn_warns_once_and_serves_both_transports(tmp_path: Path) -> None:
    shadow = _shadow_uvicorn(tmp_path / "shadow", "0.99.0")
    env = server_env(tmp_path, LOG_LEVEL="info", SSE_KEEPALIVE="0.5")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(shadow), env.get("PYTHONPATH")) if p)
    srv = Server(port=free_port(), env=env, data_dir=tmp_path)
    await asyncio.to_thread(srv.start)
    try:
        ws = await WsClient.open(srv, await asession(srv.http, uniq("Ws")))
        sse = await SseClient.open(srv, await asession(srv.http, uniq("Sse")))
        cid = uniq("c")
        assert (await ws.chat("from the WebSocket", cid)).ok
        await sse.expect("chat", lambda d: d.get("clientId") == cid)
        cid = uniq("c")
        assert (await sse.chat("from the stream", cid)).ok
        await ws.expect("chat", lambda d: d.get("clientId") == cid)
        seen = len(sse.comments)
        await sse.wait_until(lambda: len(sse.comments) > seen, "a keep-alive comment", 3)
        assert srv.log_path is not None
        lines = [ln for ln in srv.log_path.read_text().splitlines() if WARNING in ln]
        assert len(lines) == 1, lines
        entry = json.loads(lines[0])
        assert entry["level"] == "warning" and "uvicorn 0.99.0" in entry["msg"], entry
    finally:
        await asyncio.to_thread(srv.stop, timeout=10)


@aio
async def test_tested_uvicorn_serves_without_the_warning(tmp_path: Path) -> None:
    srv = Server(port=free_port(), env=server_env(tmp_path, LOG_LEVEL="info"), data_dir=tmp_path)
    await asyncio.to_thread(srv.start)
    try:
        ws = await WsClient.open(srv, await asession(srv.http))
        assert (await ws.chat("direct path")).ok
        assert srv.log_path is not None
        assert WARNING not in srv.log_path.read_text()
    finally:
        await asyncio.to_thread(srv.stop, timeout=10)
