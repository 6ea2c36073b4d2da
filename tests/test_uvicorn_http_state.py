"""What an open SSE stream keeps of uvicorn's HTTP protocol (issue 18: KB per idle stream).

``LastraHttpProtocol`` keeps uvicorn's attributes in slots (``UVICORN_HTTP_STATE``),
so no connection carries a full instance dict, and ``HttpLink.bind`` swaps the
deque-backed objects a stream would hold for hours (two ``asyncio.Event``, the
pipeline deque) for light ones. Checked here against the installed uvicorn's
source, and over a real socket: a stream bound, written and ended through
uvicorn leaves nothing in the protocol's dict.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import uvicorn
from support.clients import aio
from support.source import assigned_on_self
from uvicorn.protocols.http import flow_control, httptools_impl
from uvicorn.server import ServerState

from app.transports.flush import DIRECT, LightEvent
from app.transports.uvicorn_http import (
    UVICORN_HTTP_STATE,
    HttpLimits,
    LastraHttpProtocol,
)


def test_every_attribute_uvicorn_assigns_has_a_slot() -> None:
    """A new one would bring the per-connection dict back; a gone one is a stale slot."""
    assigned = assigned_on_self(httptools_impl.HttpToolsProtocol)
    assert sorted(assigned - set(UVICORN_HTTP_STATE)) == [], "add these to UVICORN_HTTP_STATE"
    assert sorted(set(UVICORN_HTTP_STATE) - assigned) == [], "uvicorn no longer assigns these"


@pytest.mark.parametrize(
    ("cls", "name"),
    [
        (httptools_impl.RequestResponseCycle, "message_event"),
        (flow_control.FlowControl, "_is_writable_event"),
        (httptools_impl.HttpToolsProtocol, "pipeline"),
    ],
)
def test_what_bind_swaps_is_still_uvicorn_s(cls: type, name: str) -> None:
    assert name in assigned_on_self(cls), f"{cls.__name__}.{name} moved: HttpLink.bind swaps it"


@aio
async def test_a_stream_through_uvicorn_leaves_the_protocol_without_a_dict() -> None:
    protocols: list[LastraHttpProtocol] = []
    seen: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        link = scope["extensions"][DIRECT]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        ended = link.bind()
        seen["event"] = type(link.cycle.message_event).__name__
        assert link.write_raw([b"data: one\n\n"]) and link.write_raw([b"data: two\n\n"])
        link.end(1000, "done")
        await ended
        link.release()
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    config = uvicorn.Config(app, http=LastraHttpProtocol, log_config=None, lifespan="off")
    config.load()
    state = ServerState()
    kind = LastraHttpProtocol.with_limits(HttpLimits())

    def make() -> LastraHttpProtocol:
        protocol = kind(config=config, server_state=state, app_state={})
        protocols.append(protocol)
        return protocol

    server = await asyncio.get_running_loop().create_server(make, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        body = await asyncio.wait_for(reader.readuntil(b"0\r\n\r\n"), 5)
        assert b"transfer-encoding: chunked" in body and b"data: one" in body, body
        assert b"data: two" in body and b": closed 1000 done" in body, body
        assert seen["event"] == "LightEvent"
        assert len(protocols) == 1 and vars(protocols[0]) == {}, vars(protocols[0])
        writer.close()
        await writer.wait_closed()
    finally:
        server.close()
        await server.wait_closed()


@aio
async def test_the_light_event_behaves_as_asyncio_s() -> None:
    """What uvicorn does with it: a drain waits for resume_writing, receive for a body."""
    signal = LightEvent(True)
    assert await asyncio.wait_for(signal.wait(), 1)  # set: no wait
    signal.clear()
    waiters = [asyncio.ensure_future(signal.wait()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters) and not signal.is_set()
    signal.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), 1) == [True, True]
    signal.clear()
    cancelled = asyncio.ensure_future(signal.wait())
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    signal.set()  # a cancelled waiter is forgotten, not woken
    assert signal.is_set()
