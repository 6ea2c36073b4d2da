"""A small OpenAI-compatible HTTP server for the bot tests.

It speaks just enough HTTP/1.1 (plain asyncio, its own thread and event loop, so
it outlives each test's ``asyncio.run``) to serve ``POST /v1/chat/completions``
with ``stream: true`` in the real wire format: a chunked ``text/event-stream``
of ``data: {chat.completion.chunk}`` lines, then ``data: [DONE]``.

What each request gets is a :class:`Script`, taken from ``plan`` (first in,
first out) or else from ``respond(request)``:

- ``normal``: the chunks (with ``delay`` between them), a final chunk with
  ``finish_reason: stop``, then ``[DONE]``.
- ``500``: ``500 Internal Server Error`` with an OpenAI-style error body.
- ``stall``: the chunks, then nothing more until the client gives up.
- ``drop``: the chunks, then the connection is cut mid-body (no last chunk).

Every request is recorded as a :class:`FakeRequest`, including whether the
client closed it before the server was done (``closed``), which is how tests
see that a cancelled bot reply stopped its upstream request. Any other ``POST``
(an ntfy push, say) is answered ``200`` and kept in ``posts``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["FakeOpenAI", "FakeRequest", "Post", "Script"]

Mode = Literal["normal", "500", "stall", "drop"]


@dataclass
class Script:
    """How to answer one request."""

    mode: Mode = "normal"
    chunks: list[str] = field(default_factory=lambda: ["Hello", " from", " the", " fake."])
    delay: float = 0.0


@dataclass
class FakeRequest:
    """One ``/v1/chat/completions`` request as the fake saw it."""

    n: int
    body: dict[str, Any]
    headers: dict[str, str]
    script: Script
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    sent: int = 0  # content chunks written
    finished: bool = False  # the fake wrote its whole answer
    closed: bool = False  # the client closed the connection before that

    @property
    def model(self) -> str:
        return str(self.body.get("model"))

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", []))

    @property
    def system(self) -> str:
        first = self.messages[0] if self.messages else {}
        return str(first.get("content", "")) if first.get("role") == "system" else ""

    @property
    def last(self) -> str:
        return str(self.messages[-1].get("content", "")) if self.messages else ""

    @property
    def done(self) -> bool:
        return self.finished or self.closed


@dataclass
class Post:
    path: str
    headers: dict[str, str]
    body: bytes


class FakeOpenAI:
    """``with FakeOpenAI() as fake: ...``; ``fake.url`` is the ``OPENAI_BASE_URL``."""

    def __init__(self) -> None:
        self.respond: Callable[[FakeRequest], Script] = lambda request: Script()
        self.plan: deque[Script] = deque()
        self.requests: list[FakeRequest] = []
        self.posts: list[Post] = []
        self.port = 0
        self._cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="fake-openai", daemon=True)
        self._ready = threading.Event()
        self._handlers: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ lifecycle

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FakeOpenAI:
        self._thread.start()
        if not self._ready.wait(5):
            raise RuntimeError("the fake OpenAI server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(5)

    def reset(self) -> None:
        """Forget requests, posts and plans; answer ``normal`` again."""
        with self._cond:
            self.respond = lambda request: Script()
            self.plan.clear()
            self.requests.clear()
            self.posts.clear()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        async with self._server:
            await self._stop.wait()
            self._server.close()
            handlers = list(self._handlers)
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)

    # -------------------------------------------------------------- waiting

    async def wait(
        self, predicate: Callable[[FakeOpenAI], bool], timeout: float = 5.0, what: str = ""
    ) -> None:
        """Wait (without blocking the caller's loop) until ``predicate(self)`` holds."""

        def block() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: predicate(self), timeout)

        if not await asyncio.to_thread(block):
            raise AssertionError(
                f"fake OpenAI: still not {what or 'true'} after {timeout}s; "
                f"requests: {self.summary()}"
            )

    async def wait_requests(self, n: int, timeout: float = 5.0) -> list[FakeRequest]:
        await self.wait(lambda f: len(f.requests) >= n, timeout, f"{n} requests")
        return self.requests[:n]

    def summary(self) -> str:
        with self._cond:
            return ", ".join(
                f"#{r.n} {r.script.mode} sent={r.sent} finished={r.finished} closed={r.closed}"
                for r in self.requests
            )

    def _changed(self) -> None:
        with self._cond:
            self._cond.notify_all()

    # ------------------------------------------------------------------ HTTP

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    key, _, value = line.partition(":")
                    headers[key.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if method == "POST" and path.rstrip("/").endswith("/chat/completions"):
                await self._completions(reader, writer, headers, body)
            elif method == "POST":
                with self._cond:
                    self.posts.append(Post(path, headers, body))
                    self._cond.notify_all()
                await _write_json(writer, 200, {})
            else:
                await _write_json(writer, 404, {"error": {"message": "not here"}})
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _completions(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        headers: dict[str, str],
        raw: bytes,
    ) -> None:
        body = json.loads(raw)
        with self._cond:
            n = len(self.requests) + 1
            probe = FakeRequest(n, body, headers, Script())
            script = self.plan.popleft() if self.plan else self.respond(probe)
            probe.script = script
            self.requests.append(probe)
            self._cond.notify_all()
        request = probe
        gone = asyncio.create_task(_client_gone(reader))
        try:
            if script.mode == "500":
                await _write_json(
                    writer, 500, {"error": {"message": "the fake is down", "type": "server_error"}}
                )
                request.finished = True
                return
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            await writer.drain()
            model = request.model
            for i, text in enumerate(script.chunks):
                if i and script.delay:
                    await _sleep_unless(gone, script.delay)
                if gone.done():
                    break
                delta: dict[str, Any] = {"content": text}
                if i == 0:
                    delta["role"] = "assistant"
                await _event(writer, _chunk(n, model, delta, None))
                request.sent += 1
                self._changed()
            if gone.done():
                return
            if script.mode == "stall":
                await gone  # until the client gives up (or the fake stops)
                return
            if script.mode == "drop":
                writer.transport.abort()  # mid-body: no terminating chunk
                request.finished = True
                return
            await _event(writer, _chunk(n, model, {}, "stop"))
            await _event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            request.finished = True
        except ConnectionError:
            pass
        finally:
            if not request.finished:
                request.closed = True  # the client went away (or the fake is stopping)
            request.ended = time.monotonic()
            gone.cancel()
            self._changed()


async def _client_gone(reader: asyncio.StreamReader) -> None:
    """Returns when the client closed its side of the connection."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(1024):
            pass


async def _sleep_unless(gone: asyncio.Task[None], delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(gone), delay)


def _chunk(n: int, model: str, delta: dict[str, Any], finish: str | None) -> str:
    return json.dumps(
        {
            "id": f"chatcmpl-fake-{n}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


async def _event(writer: asyncio.StreamWriter, data: str) -> None:
    payload = f"data: {data}\n\n".encode()
    writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
    await writer.drain()


async def _write_json(writer: asyncio.StreamWriter, status: int, body: dict[str, Any]) -> None:
    reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}[status]
    payload = json.dumps(body).encode()
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()


# --------------------------------------------------------------------------- test helpers


def bot_of(request: FakeRequest) -> str:
    """Which bot a request is for, from the room line of its system prompt."""
    marker = " in a group chat."
    system = request.system
    end = system.find(marker)
    start = system.rfind("(@", 0, end)
    return system[start + 2 : end - 1] if start >= 0 and end >= 0 else "?"


def bot_yaml(
    name: str, *, shyness: float = 0.0, aliases: tuple[str, ...] = (), **extra: str
) -> str:
    """A minimal personality file (the offline voice is left to its default)."""
    lines = [
        f"name: {name}",
        f"display_name: {name.capitalize()}",
        f"role: test bot {name}",
        f"aliases: [{', '.join(aliases)}]",
        f"shyness: {shyness}",
        "prompts:",
        f"  reply: You are {name}, replying.",
        f"  interject: You are {name}, interjecting.",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"
