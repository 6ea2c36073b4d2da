"""The text/event-stream framing of the legacy transport (PROTOCOL §3).

The contract runs on both write paths: ``python -m app`` (chunks written straight
to uvicorn's transport) and ``uvicorn app.main:app`` (sse-starlette's
``EventSourceResponse``): ids, ``retry``, resume by ``Last-Event-ID``,
keep-alive comments and the closing lines on shutdown.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import (
    SERVE_PATHS,
    SHARED_SETTINGS,
    SseClient,
    UvicornServer,
    WsClient,
    aio,
    asession,
    served_by,
    uniq,
)
from support.server import Server, free_port, server_env

KEEPALIVE = float(SHARED_SETTINGS["SSE_KEEPALIVE"])


@pytest.fixture(scope="module", params=SERVE_PATHS)
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from served_by(request.param, tmp_path_factory)


def _server(path: str, data_dir: Path) -> Server:
    kind = Server if path == "python-m-app" else UvicornServer
    return kind(port=free_port(), env=server_env(data_dir, **SHARED_SETTINGS), data_dir=data_dir)


@aio
async def test_stream_starts_with_a_retry_hint(srv: Server) -> None:
    client = await SseClient.open(srv, await asession(srv.http))
    assert client.retries[:1] == ["2000"], client.retries


@aio
async def test_resume_by_last_event_id_replays_exactly_what_was_missed(srv: Server) -> None:
    reader = await asession(srv.http, uniq("Rea"))
    first = await SseClient.open(srv, reader)
    writer = await WsClient.open(srv, await asession(srv.http, uniq("Wri")))
    seen = uniq()
    assert (await writer.chat("before", seen)).ok
    await first.expect("chat", lambda d: d.get("clientId") == seen)
    resume_at = first.last_event_id
    assert resume_at is not None
    await first.close()
    missed = [uniq() for _ in range(3)]
    for cid in missed:
        assert (await writer.chat("while away", cid)).ok
    again = await SseClient.open(srv, reader, last_event_id=resume_at)
    assert again.ready.get("recovered") is True, again.ready
    replayed = [e["data"].get("clientId") for e in again.backlog if e["type"] == "chat"]
    assert seen not in replayed, "the last seen message came again"
    assert [c for c in replayed if c in missed] == missed, replayed


@pytest.mark.parametrize("path", SERVE_PATHS)
@aio
async def test_shutdown_ends_every_stream_with_the_closing_lines(path: str, tmp_path: Path) -> None:
    server = _server(path, tmp_path)
    await asyncio.to_thread(server.start)
    try:
        client = await SseClient.open(server, await asession(server.http))
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(client.closed.wait(), 10)
        assert ": closed 1012 server-restart" in client.comments, client.comments
        assert client.retries[-1] == "1000", client.retries
        assert client.comments.count(": closed 1012 server-restart") == 1
    finally:
        await asyncio.to_thread(server.stop, timeout=10)


@aio
async def test_stream_headers(srv: Server) -> None:
    client = await SseClient.open(srv, await asession(srv.http))
    assert client.headers["content-type"].startswith("text/event-stream")
    assert "no-cache" in client.headers["cache-control"].lower()
    assert client.headers["x-accel-buffering"].lower() == "no"


@aio
async def test_events_are_framed_with_event_data_and_id_for_durable_ones(srv: Server) -> None:
    client = await SseClient.open(srv, await asession(srv.http))
    epoch = client.ready["epoch"]
    cid = uniq()
    assert (await client.chat("framed", cid)).ok
    assert (await client.request("typing", {"isTyping": True})).ok
    await client.expect("chat", lambda d: d.get("clientId") == cid)
    await client.expect("typing", lambda d: d["userId"] == client.user.userId)
    assert client.frames, "no frames parsed"
    for frame in client.frames:
        env = json.loads(frame.data)
        assert set(env) <= {"type", "data", "seq", "ref"}, env
        assert frame.event == env["type"], "event: names the envelope type"
        if "seq" in env:
            assert frame.id == f"{epoch}:{env['seq']}", (frame, env)
        else:
            assert frame.id is None, f"non-durable {env['type']} has an id: {frame.id}"
    types = [f.event for f in client.frames]
    assert {"ready", "history", "presence", "bot-state", "chat", "typing"} <= set(types)
    chat = next(f for f in client.frames if f.event == "chat" and cid in f.data)
    assert chat.id is not None and chat.id.startswith(f"{epoch}:")


@aio
async def test_sse_and_ws_envelopes_are_the_same_json(srv: Server) -> None:
    sse = await SseClient.open(srv, await asession(srv.http))
    ws = await WsClient.open(srv, await asession(srv.http))
    cid = uniq()
    assert (await ws.chat("same on both", cid)).ok
    a = await ws.expect("chat", lambda d: d.get("clientId") == cid)
    b = await sse.expect("chat", lambda d: d.get("clientId") == cid)
    assert a == b


@aio
async def test_keep_alive_comments_on_an_idle_stream(srv: Server) -> None:
    client = await SseClient.open(srv, await asession(srv.http))
    seen = len(client.comments)
    await client.wait_until(
        lambda: len(client.comments) >= seen + 2, "two keep-alive comments", KEEPALIVE * 4 + 1
    )
    assert not client.closed.is_set()


@pytest.mark.parametrize("how", ["cookie", "query"])
@aio
async def test_token_by_cookie_or_query(srv: Server, how: str) -> None:
    user = await asession(srv.http)
    if how == "cookie":
        assert user.cookies.get("lastra_token") == user.token
        client = await SseClient.connect(
            srv.http, user, bearer=False, cookies={"lastra_token": user.token}
        )
    else:
        client = await SseClient.connect(srv.http, user, bearer=False, params={"token": user.token})
    assert client.status == 200, client.body
    assert client.ready["userId"] == user.userId


@aio
async def test_query_token_is_redacted_from_the_server_log(srv: Server) -> None:
    assert srv.env["LASTRA_LOG_LEVEL"] == "info", "requests and connections are logged"
    user = await asession(srv.http)
    client = await SseClient.connect(srv.http, user, bearer=False, params={"token": user.token})
    assert client.status == 200
    assert (await client.chat("logged?")).ok
    await client.close()
    assert srv.log_path is not None
    log = srv.log_path.read_text(errors="replace")
    assert log.strip(), "the server logged nothing at all: nothing to check"
    assert user.token not in log


@aio
async def test_query_token_is_redacted_under_uvicorn_too(tmp_path: Path) -> None:
    """PROTOCOL §9: ``uvicorn app.main:app`` is the other way to serve it, same logs rule."""
    srv = UvicornServer(
        port=free_port(), env=server_env(tmp_path, LOG_LEVEL="info"), data_dir=tmp_path
    )
    await asyncio.to_thread(srv.start)
    try:
        user = await asession(srv.http)
        client = await SseClient.connect(srv.http, user, bearer=False, params={"token": user.token})
        assert client.status == 200
        await client.close()
        assert srv.log_path is not None
        assert user.token not in srv.log_path.read_text(errors="replace")
    finally:
        await asyncio.to_thread(srv.stop, timeout=5)
