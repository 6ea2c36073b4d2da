"""Real-socket clients for the integration tests.

``WsClient`` speaks ``/api/chat.ws``; ``SseClient`` reads ``/api/chat-stream`` and
sends with ``POST``. Both keep every envelope they receive in ``received`` (in order)
and in ``pending`` (what no ``expect`` has taken yet), so a test waits for the event
it means with a timeout, never with a bare sleep.

Both offer ``request(type, data)``, which sends one client message with a ``ref``
(WebSocket) or to its ``POST`` endpoint (SSE) and returns the ``Reply``: the
``ack`` or ``error`` data. That is what lets one test body run on either transport.

Async tests are written as ``async def`` and decorated with ``@aio``, which runs
them under ``asyncio.run`` with an overall timeout and closes every client they
opened, pass or fail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import json
import sys
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.server import Server, free_port, server_env
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

__all__ = [
    "POST_ENDPOINTS",
    "SERVE_PATHS",
    "TIMEOUT",
    "Reply",
    "Session",
    "SseClient",
    "UvicornServer",
    "WsClient",
    "aio",
    "asession",
    "async_http",
    "build_server",
    "open_peer",
    "post",
    "room_users",
    "running_server",
    "served_by",
    "server_factory",
    "session",
    "shared_server",
    "start_all",
    "sync_http",
    "uniq",
    "user_entry",
]

TIMEOUT = 5.0
"""Default wait for one expected event (generous: CI shares two cores with a browser)."""

HTTPX = {"trust_env": False, "verify": False}
"""Plain http to 127.0.0.1: no proxies from the environment, and no CA bundle to load
(loading it costs ~50 ms per client, which adds up over hundreds of clients)."""


def sync_http(timeout: float = 5.0) -> httpx.Client:
    """A blocking client for setup steps."""
    return httpx.Client(timeout=timeout, **HTTPX)  # type: ignore[arg-type]


def async_http(base_url: str = "", timeout: float | httpx.Timeout = 5.0) -> httpx.AsyncClient:
    """An async client; close it (``async with``)."""
    return httpx.AsyncClient(base_url=base_url, timeout=timeout, **HTTPX)  # type: ignore[arg-type]


POST_ENDPOINTS = {
    "chat": "/api/chat-message",
    "typing": "/api/chat-typing",
    "webrtc-signal": "/api/chat-signal",
    "media-state": "/api/media-state",
    "bot-toggle": "/api/bot-toggle",
    "clear": "/api/chat-clear",
    "ai-request": "/api/ai-request",
    "ready": "/api/chat-ready",
    "call-outcome": "/api/call-outcome",
    "delivery-report": "/api/delivery-report",
    "presence-page": "/api/presence-page",
}

Envelope = dict[str, Any]
Where = Callable[[dict[str, Any]], bool] | None

_open_clients: list[_EventClient] = []


# --------------------------------------------------------------------------- servers


class UvicornServer(Server):
    """The same app started the other documented way: ``uvicorn app.main:app``."""

    def argv(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "app.main:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]


def start_all(servers: list[Server], timeout: float = 30.0) -> None:
    """Start several servers side by side (their imports overlap)."""
    for srv in servers:
        srv.launch()
    for srv in servers:
        srv.wait_healthy(timeout)


def build_server(data_dir: Path, settings: dict[str, str]) -> Server:
    return Server(port=free_port(), env=server_env(data_dir, **settings), data_dir=data_dir)


@contextlib.contextmanager
def running_server(tmp_path_factory: pytest.TempPathFactory, **settings: str) -> Iterator[Server]:
    """A server that lives as long as the ``with`` block (for module-scoped fixtures)."""
    srv = build_server(tmp_path_factory.mktemp("srv"), settings)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop(timeout=5)


SHARED_SETTINGS = {
    "TYPING_TIMEOUT": "1.0",
    "PRESENCE_GRACE": "1.0",
    "HISTORY_LIMIT": "20",
    "SSE_KEEPALIVE": "0.5",
    "AI_OFFLINE_DELAY": "0.002",
    "LOG_LEVEL": "info",
}
"""The one server most modules share: defaults, but short timers and a quick offline bot."""

_shared: list[Server] = []


def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Server:
    """The server with ``SHARED_SETTINGS``, started once per test run.

    Modules whose tests need no special settings use it, so the suite pays for one
    start instead of one per module. Every test uses fresh users, so they do not
    interfere. It is stopped when the test process exits.
    """
    if not _shared or _shared[0].proc is None or _shared[0].proc.poll() is not None:
        _shared[:] = [build_server(tmp_path_factory.mktemp("shared"), SHARED_SETTINGS)]
        _shared[0].start()
        atexit.register(_shared[0].stop, timeout=5)
    return _shared[0]


SERVE_PATHS = ["python-m-app", "uvicorn-app-main"]
"""The two documented ways to serve the app, as fixture params (see ``served_by``)."""


def served_by(path: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A module fixture's body: the shared ``python -m app`` server, or a
    ``uvicorn app.main:app`` with the same settings, stopped afterwards."""
    if path == "python-m-app":
        yield shared_server(tmp_path_factory)
        return
    data_dir = tmp_path_factory.mktemp("uvicorn")
    server = UvicornServer(
        port=free_port(), env=server_env(data_dir, **SHARED_SETTINGS), data_dir=data_dir
    )
    server.start()
    try:
        yield server
    finally:
        server.stop(timeout=5)


@contextlib.contextmanager
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Like conftest's ``make_server``: ``factory(**settings)`` starts one more server."""
    servers: list[Server] = []

    def factory(start: bool = True, **settings: str) -> Server:
        data_dir = tmp_path / f"data-{len(servers)}"
        data_dir.mkdir(exist_ok=True)
        srv = build_server(data_dir, settings)
        servers.append(srv)
        if start:
            srv.start()
        return srv

    try:
        yield factory
    finally:
        for srv in servers:
            srv.stop(timeout=5)


# --------------------------------------------------------------------------- running


def aio(
    fn: Callable[..., Coroutine[Any, Any, None]], *, timeout: float = 45.0
) -> Callable[..., None]:
    """Run an ``async def`` test under ``asyncio.run``; close its clients afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        async def main() -> None:
            try:
                await asyncio.wait_for(fn(*args, **kwargs), timeout)
            finally:
                clients = list(_open_clients)
                _open_clients.clear()
                for client in clients:
                    with contextlib.suppress(Exception):
                        await client.close()

        asyncio.run(main())

    return wrapper


def uniq(prefix: str = "user") -> str:
    """A user name nobody else in this test run has."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------- sessions


@dataclass
class Session:
    """What ``POST /api/session`` gave us."""

    userId: str
    userName: str
    token: str
    transport: str
    raw: dict[str, Any]
    cookies: dict[str, str] = field(default_factory=dict)

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    @property
    def user(self) -> dict[str, str]:
        return {"userId": self.userId, "userName": self.userName}


def _session_from(resp: httpx.Response) -> Session:
    assert resp.status_code == 200, f"POST /api/session -> {resp.status_code} {resp.text}"
    body = resp.json()
    return Session(
        userId=body["userId"],
        userName=body["userName"],
        token=body["token"],
        transport=body["transport"],
        raw=body,
        cookies=dict(resp.cookies),
    )


def session(http_url: str, name: str | None = None, *, http: httpx.Client | None = None) -> Session:
    """``POST /api/session`` (blocking; use before the event loop or for setup)."""
    if http is None:
        with sync_http() as client:
            return session(http_url, name, http=client)
    resp = http.post(f"{http_url}/api/session", json={"userName": name or uniq()})
    return _session_from(resp)


async def asession(http_url: str, name: str | None = None) -> Session:
    """``POST /api/session`` without blocking the event loop."""
    async with async_http() as http:
        resp = await http.post(f"{http_url}/api/session", json={"userName": name or uniq()})
    return _session_from(resp)


# --------------------------------------------------------------------------- replies


@dataclass
class Reply:
    """The server's answer to one client message: ``ack`` data or ``error`` data."""

    ok: bool
    data: dict[str, Any]
    status: int | None = None  # HTTP status for SSE+POST, None on WebSocket

    @property
    def code(self) -> str | None:
        return None if self.ok else self.data.get("code")

    def __repr__(self) -> str:
        kind = "ack" if self.ok else "error"
        return f"Reply({kind}, status={self.status}, {self.data})"


def _summary(envs: list[Envelope], limit: int = 12) -> str:
    tail = envs[-limit:]
    return ", ".join(f"{e.get('type')}:{json.dumps(e.get('data'))[:120]}" for e in tail)


# --------------------------------------------------------------------------- base


class _EventClient:
    """What both transports share: an ordered inbox and waits on it."""

    transport = "?"

    def __init__(self, user: Session | None) -> None:
        self.user = user
        self.received: list[Envelope] = []
        self.pending: list[Envelope] = []
        self.ready: dict[str, Any] = {}
        self.presence: dict[str, Any] = {}
        self.bots: dict[str, Any] = {}
        self.backlog: list[Envelope] = []  # what came between ready and the snapshots
        self._arrived = asyncio.Event()
        self.closed = asyncio.Event()
        _open_clients.append(self)

    # -- inbox

    def _push(self, env: Envelope) -> None:
        self.received.append(env)
        self.pending.append(env)
        self._arrived.set()

    @property
    def peer_id(self) -> str:
        return str(self.ready["peerId"])

    @property
    def durable(self) -> list[Envelope]:
        """Every durable envelope received, in arrival order."""
        return [e for e in self.received if "seq" in e]

    @property
    def last_seq(self) -> int:
        seqs = [e["seq"] for e in self.durable]
        return max([int(self.ready.get("lastSeq", 0)), *seqs])

    @property
    def history(self) -> list[dict[str, Any]] | None:
        for env in self.backlog:
            if env.get("type") == "history":
                return list(env["data"]["messages"])
        return None

    @property
    def replayed(self) -> list[Envelope]:
        return [e for e in self.backlog if "seq" in e]

    def seen(self, type_: str, where: Where = None) -> list[Envelope]:
        """Every received envelope of that type (matching ``where``), consumed or not."""
        return [
            e
            for e in self.received
            if e.get("type") == type_ and (where is None or where(e["data"]))
        ]

    async def expect(self, type_: str, where: Where = None, timeout: float = TIMEOUT) -> Envelope:
        """Take the first not yet taken envelope of ``type_`` matching ``where``."""
        env = await self.expect_any((type_,), where, timeout)
        assert env is not None
        return env

    async def expect_any(
        self,
        types: tuple[str, ...],
        where: Where = None,
        timeout: float = TIMEOUT,
        *,
        or_closed: bool = False,
    ) -> Envelope | None:
        """Take the first pending envelope of any of ``types`` matching ``where``.

        With ``or_closed``, the connection closing also ends the wait (returns None).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for i, env in enumerate(self.pending):
                data = env.get("data")
                if env.get("type") in types and (where is None or where(data or {})):
                    del self.pending[i]
                    return env
            if or_closed and self.closed.is_set():
                return None
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed.is_set():
                why = "connection closed" if self.closed.is_set() else f"{timeout}s passed"
                raise AssertionError(
                    f"{self.transport} client: no {'/'.join(types)} ({why}); last received: "
                    f"{_summary(self.received)}{self._close_info()}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_until(
        self, cond: Callable[[], bool], what: str, timeout: float = TIMEOUT
    ) -> None:
        """Wait until ``cond()`` holds, re-checking whenever something arrives."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not cond():
            remaining = deadline - loop.time()
            if remaining <= 0 or self.closed.is_set():
                raise AssertionError(
                    f"{self.transport} client: {what} never happened; last received: "
                    f"{_summary(self.received)}{self._close_info()}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def wait_durable(self, seq: int, timeout: float = TIMEOUT) -> None:
        """Wait until a durable envelope with ``seq`` at least this has arrived."""
        await self.wait_until(
            lambda: any(e["seq"] >= seq for e in self.durable), f"seq {seq} arriving", timeout
        )

    def _close_info(self) -> str:
        return ""

    async def _settle(self, timeout: float) -> None:
        """Take ``ready``, the history/replay and the presence and bot-state snapshots."""
        ready = await self.expect("ready", timeout=timeout)
        self.ready = ready["data"]
        presence = await self.expect("presence", timeout=timeout)
        bots = await self.expect("bot-state", timeout=timeout)
        self.presence, self.bots = presence["data"], bots["data"]
        start = next(i for i, e in enumerate(self.received) if e is ready)
        end = next(i for i, e in enumerate(self.received) if e is presence)
        self.backlog = [e for e in self.received[start + 1 : end] if e.get("type") != "bot-state"]
        taken = {id(e) for e in self.backlog}
        self.pending = [e for e in self.pending if id(e) not in taken]

    async def request(self, type_: str, data: Any, timeout: float = TIMEOUT) -> Reply:
        raise NotImplementedError

    async def chat(self, text: str, client_id: str | None = None) -> Reply:
        reply = await self.request("chat", {"text": text, "clientId": client_id or uniq("c")})
        return reply

    async def close(self) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- WebSocket


class WsClient(_EventClient):
    """One WebSocket connection (one tab)."""

    transport = "ws"

    def __init__(self, ws: ClientConnection, user: Session | None) -> None:
        super().__init__(user)
        self.ws = ws
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, user: Session | None = None) -> WsClient:
        """Open the socket and start reading; does not authenticate."""
        ws = await connect(
            url,
            proxy=None,
            ping_interval=None,
            compression=None,
            open_timeout=5,
            close_timeout=2,
            max_size=None,
        )
        return cls(ws, user)

    @classmethod
    async def open(
        cls,
        server: Server,
        user: Session,
        *,
        last_seq: int | None = None,
        epoch: str | None = None,
        timeout: float = TIMEOUT,
    ) -> WsClient:
        """Connect, ``auth`` and take ``ready`` plus the snapshots."""
        client = await cls.connect(server.ws, user)
        await client.auth(user.token, last_seq=last_seq, epoch=epoch, timeout=timeout)
        return client

    async def auth(
        self,
        token: str,
        *,
        last_seq: int | None = None,
        epoch: str | None = None,
        settle: bool = True,
        timeout: float = TIMEOUT,
    ) -> None:
        data: dict[str, Any] = {"token": token}
        if last_seq is not None:
            data["lastSeq"] = last_seq
        if epoch is not None:
            data["epoch"] = epoch
        await self.send("auth", data)
        if settle:
            await self._settle(timeout)

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                try:
                    env = json.loads(message)
                except ValueError:
                    env = {"type": "<not json>", "data": {"raw": str(message)[:200]}}
                if not isinstance(env, dict):
                    env = {"type": "<not an object>", "data": {"raw": env}}
                self._push(env)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = self.ws.close_code
            self.close_reason = self.ws.close_reason
            self.closed.set()
            self._arrived.set()

    def _close_info(self) -> str:
        if self.closed.is_set():
            return f"; closed {self.close_code} {self.close_reason!r}"
        return ""

    async def send(self, type_: str, data: Any = None, **extra: Any) -> None:
        env: dict[str, Any] = {"type": type_, "data": {} if data is None else data, **extra}
        await self.ws.send(json.dumps(env))

    async def send_raw(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def request(self, type_: str, data: Any, timeout: float = TIMEOUT) -> Reply:
        """Send with a fresh ``ref``; return the ``ack`` or ``error`` that carries it."""
        ref = uniq("ref")
        await self.send(type_, data, ref=ref)
        env = await self.expect_any(("ack", "error"), lambda d: d.get("ref") == ref, timeout)
        assert env is not None
        return Reply(ok=env["type"] == "ack", data=env["data"])

    async def wait_closed(self, timeout: float = TIMEOUT) -> tuple[int | None, str | None]:
        """Wait for the server to close; return ``(code, reason)``."""
        try:
            await asyncio.wait_for(self.closed.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"ws still open after {timeout}s; received: {_summary(self.received)}"
            ) from None
        return self.close_code, self.close_reason

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self._reader.cancel()
        with contextlib.suppress(BaseException):
            await self._reader


# --------------------------------------------------------------------------- SSE + POST


@dataclass
class SseFrame:
    """One dispatched text/event-stream event, as written on the wire."""

    event: str | None
    id: str | None
    data: str


class _Default:
    pass


SELF: Any = _Default()


class SseClient(_EventClient):
    """One ``/api/chat-stream`` (one tab) plus its ``POST``s."""

    transport = "sse"

    def __init__(self, http_url: str, user: Session | None) -> None:
        super().__init__(user)
        self.http_url = http_url
        self.http = async_http(http_url, httpx.Timeout(5.0, read=None))
        self.response: httpx.Response | None = None
        self.status: int | None = None
        self.headers: httpx.Headers = httpx.Headers()
        self.body: Any = None
        self.frames: list[SseFrame] = []
        self.comments: list[str] = []
        self.retries: list[str] = []  # every ``retry:`` field, in order
        self.last_event_id: str | None = None
        self._reader: asyncio.Task[None] | None = None

    @classmethod
    async def connect(
        cls,
        http_url: str,
        user: Session | None,
        *,
        last_event_id: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        cookies: dict[str, str] | None = None,
        bearer: bool = True,
        settle: bool = True,
        timeout: float = TIMEOUT,
    ) -> SseClient:
        """Open the stream. If it is not ``200``, ``status``/``body`` say why, and no settle."""
        client = cls(http_url, user)
        hdrs = {"Accept": "text/event-stream"}
        if bearer and user is not None:
            hdrs.update(user.bearer)
        if last_event_id is not None:
            hdrs["Last-Event-ID"] = last_event_id
        hdrs.update(headers or {})
        if cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in cookies.items())
        request = client.http.build_request("GET", "/api/chat-stream", headers=hdrs, params=params)
        client.response = await client.http.send(request, stream=True)
        client.status = client.response.status_code
        client.headers = client.response.headers
        if client.status != 200:
            await client.response.aread()
            try:
                client.body = client.response.json()
            except ValueError:
                client.body = client.response.text
            client.closed.set()
            return client
        client._reader = asyncio.create_task(client._read())
        if settle:
            await client._settle(timeout)
        return client

    @classmethod
    async def open(
        cls, server: Server, user: Session, *, timeout: float = TIMEOUT, **kw: Any
    ) -> SseClient:
        client = await cls.connect(server.http, user, timeout=timeout, **kw)
        assert client.status == 200, f"SSE stream -> {client.status} {client.body}"
        return client

    async def _read(self) -> None:
        assert self.response is not None
        event: str | None = None
        event_id: str | None = None
        data: list[str] = []
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        text = "\n".join(data)
                        self.frames.append(SseFrame(event, event_id, text))
                        if event_id is not None:
                            self.last_event_id = event_id
                        try:
                            env = json.loads(text)
                        except ValueError:
                            env = {"type": "<not json>", "data": {"raw": text[:200]}}
                        self._push(env)
                    event, event_id, data = None, None, []
                elif line.startswith(":"):
                    self.comments.append(line)
                    self._arrived.set()
                else:
                    name, _, value = line.partition(":")
                    value = value.removeprefix(" ")
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
                    elif name == "retry":
                        self.retries.append(value)
        except httpx.HTTPError:
            pass
        finally:
            self.closed.set()
            self._arrived.set()

    async def post(
        self,
        endpoint: str,
        body: Any,
        peer_id: Any = SELF,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        """``POST`` to ``endpoint`` as this tab (header ``X-Lastra-Peer``)."""
        hdrs: dict[str, str] = {}
        tok = token if token is not None else (self.user.token if self.user else None)
        if tok:
            hdrs["Authorization"] = f"Bearer {tok}"
        if peer_id is SELF:
            peer_id = self.ready.get("peerId")
        if peer_id:
            hdrs["X-Lastra-Peer"] = str(peer_id)
        hdrs.update(headers or {})
        if isinstance(body, (str, bytes)):
            hdrs.setdefault("Content-Type", "application/json")
            return await self.http.post(endpoint, content=body, headers=hdrs)
        return await self.http.post(endpoint, json=body, headers=hdrs)

    async def request(self, type_: str, data: Any, timeout: float = TIMEOUT) -> Reply:
        """``POST`` to the endpoint of ``type_``; the body is the ack or error data."""
        body = dict(data or {})
        body.setdefault("ref", uniq("ref"))
        resp = await asyncio.wait_for(self.post(POST_ENDPOINTS[type_], body), timeout)
        try:
            payload = resp.json()
        except ValueError:
            payload = {"<not json>": resp.text}
        return Reply(ok=resp.status_code == 200, data=payload, status=resp.status_code)

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(BaseException):
                await self._reader
        if self.response is not None:
            with contextlib.suppress(Exception):
                await self.response.aclose()
        await self.http.aclose()
        self.closed.set()


async def post(
    http_url: str,
    endpoint: str,
    body: Any,
    *,
    token: str | None = None,
    peer_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """A ``POST`` from a user with no open stream (or none at all)."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    if peer_id:
        hdrs["X-Lastra-Peer"] = peer_id
    async with async_http(http_url) as http:
        if isinstance(body, (str, bytes)):
            hdrs.setdefault("Content-Type", "application/json")
            return await http.post(endpoint, content=body, headers=hdrs)
        return await http.post(endpoint, json=body, headers=hdrs)


async def open_peer(transport: str, server: Server, user: Session, **kw: Any) -> _EventClient:
    """One authenticated, settled tab of ``user`` on ``transport`` ("ws" or "sse")."""
    if transport == "ws":
        return await WsClient.open(server, user, **kw)
    return await SseClient.open(server, user, **kw)


def user_entry(presence_users: list[dict[str, Any]], user_id: str) -> dict[str, Any] | None:
    """The ``User`` entry of ``user_id`` in a presence list, if listed."""
    return next((u for u in presence_users if u.get("userId") == user_id), None)


def room_users(client: _EventClient) -> set[str]:
    """The user ids ``client`` sees online: its snapshot with every later diff applied."""
    users = {u["userId"] for u in client.presence["users"]}
    for env in client.seen("presence-diff"):
        users |= {u["userId"] for u in env["data"]["upsert"]}
        users -= set(env["data"]["remove"])
    return users
