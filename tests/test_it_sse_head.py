"""The stream's response head and its refusals, on both ways of serving the app.

``GET /api/chat-stream`` may be served before FastAPI's middleware and routing
(``app.transports.sse.serve``: a stream lives for hours, the stack's frames would
be held per client). What the stack added must then still be there: the security
headers, once each, on the stream and on every refusal; the SSE headers and the
chunked framing; the error bodies. A query naming ``userId`` (maybe an SSE-era
tab) and any other method still go through the route.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from support.clients import (
    SERVE_PATHS,
    SseClient,
    aio,
    asession,
    async_http,
    served_by,
)
from support.server import Server


@pytest.fixture(scope="module", params=SERVE_PATHS)
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    yield from served_by(request.param, tmp_path_factory)


async def _security_names(srv: Server) -> list[str]:
    """The security headers every response gets (those of ``/healthz``)."""
    async with async_http() as http:
        resp = await http.get(f"{srv.http}/healthz")
    generic = {"date", "server", "content-length", "content-type"}
    names = [name for name in resp.headers if name not in generic]
    assert "content-security-policy" in names and "x-frame-options" in names, names
    return names


def _once_each(headers: httpx.Headers, names: list[str]) -> None:
    counts = {name: len(headers.get_list(name)) for name in names}
    assert counts == dict.fromkeys(names, 1), counts


@aio
async def test_the_stream_has_the_sse_and_security_headers_once_each(srv: Server) -> None:
    names = await _security_names(srv)
    client = await SseClient.open(srv, await asession(srv.http))
    try:
        headers = client.headers
        assert headers["content-type"] == "text/event-stream; charset=utf-8"
        assert headers["cache-control"] == "no-cache"
        assert headers["x-accel-buffering"] == "no"
        assert headers["transfer-encoding"] == "chunked"
        _once_each(headers, [*names, "content-type", "cache-control", "x-accel-buffering"])
        assert client.ready.get("userId"), client.ready
    finally:
        await client.close()


@aio
async def test_refusals_have_the_security_headers_and_the_error_body(srv: Server) -> None:
    names = await _security_names(srv)
    user = await asession(srv.http)
    no_token = await SseClient.connect(srv.http, None)
    assert no_token.status == 401 and no_token.body["code"] == "not_authenticated"
    _once_each(no_token.headers, names)
    foreign = await SseClient.connect(srv.http, user, headers={"Origin": "http://evil.example"})
    assert foreign.status == 403 and foreign.body["code"] == "forbidden", foreign.body
    _once_each(foreign.headers, names)
    for client in (no_token, foreign):
        await client.close()


@aio
async def test_a_query_naming_user_id_still_gets_the_stream(srv: Server) -> None:
    """Not an SSE-era tab (it has a token): the route serves today's stream."""
    user = await asession(srv.http)
    client = await SseClient.open(srv, user, params={"userId": user.userId})
    try:
        assert client.ready.get("userId") == user.userId
        _once_each(client.headers, await _security_names(srv))
    finally:
        await client.close()


@aio
async def test_other_methods_on_the_stream_path_open_no_stream(srv: Server) -> None:
    """They reach FastAPI as before: 405 for a POST, no route for a HEAD."""
    user = await asession(srv.http)
    async with async_http() as http:
        url = f"{srv.http}/api/chat-stream"
        posted = await http.post(url, headers=user.bearer)
        assert posted.status_code == 405 and posted.json()["code"] == "invalid", posted.text
        head = await http.head(url, headers=user.bearer)
        assert head.status_code in (404, 405), head.status_code
