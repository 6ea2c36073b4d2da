"""Fuzzing at volume (issue 14): generated inputs against a real ``python -m app``.

``make fuzz`` runs it for about ten minutes and requires at least 100,000 inputs;
``tests/test_fuzz_volume.py`` runs the same code for a few seconds inside the suite.

Inputs, from one seeded generator (a failure names its seed and input):

- WebSocket frames of every client message type with mutated fields (dropped,
  retyped, oversized, odd Unicode, extra keys, odd refs), sent whole, fragmented,
  or as binary frames;
- raw frames on hand-made connections: any opcode, reserved bits, unmasked,
  lengths that lie, control frames too long or fragmented, invalid UTF-8;
- every POST body on every endpoint (and ``/api/session``), with good, foreign,
  junk and missing tokens and odd content types;
- SSE query strings and headers (``lastSeq``, ``epoch``, ``Last-Event-ID``,
  tokens), and the legacy wire's tokenless requests (``LASTRA_LEGACY_WIRE``).

Requirements: no 5xx (a 503 ``ai_unavailable`` is a bot that is busy, by design,
and counted apart), no ``internal`` error anywhere, no error line in the server
log, every place given back (``/api/admin/stats`` counts no connection once the
fuzz clients are gone) and the server's RSS bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import struct
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: run as a script

from support.clients import build_server
from support.server import Server
from test_ops_support import mint
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ADMIN = "fuzz-admin-token-0123456789"
RSS_BOUND_MB = 250  # growth over the first sample that fails the run
POSTS = {
    "/api/chat-message": "chat",
    "/api/chat-typing": "typing",
    "/api/chat-signal": "webrtc-signal",
    "/api/screen-share-signal": "webrtc-signal",
    "/api/media-state": "media-state",
    "/api/bot-toggle": "bot-toggle",
    "/api/chat-clear": "clear",
    "/api/ai-request": "ai-request",
    "/api/chat-ready": "ready",
}
#: every client message type (PROTOCOL §5)
TYPES = (
    "chat",
    "typing",
    "webrtc-signal",
    "media-state",
    "bot-toggle",
    "clear",
    "ai-request",
    "ping",
    "ready",
    "auth",
)
ODD_STRINGS = [
    "",
    " ",
    "\u200b",
    "\u202eevil\u202c",
    "\u3164",
    "\ud7ff",
    "\ufeff",
    "\x00",
    "😀" * 50,
    "é" * 4000,
    "x" * 4001,
    "<script>alert(1)</script>",
    "@pip hi",
    "@sol @noor",
    "\u00b2",
    "9" * 5000,
    "%00",
    "../../etc/passwd",
]


def settings_for_fuzz() -> dict[str, str]:
    """Rate limits lifted (the fuzz must reach the handlers), admin stats on."""
    limits = {
        f"RATE_{kind}{suffix}": "1000000"
        for kind in ("CHAT", "SIGNAL", "OTHER")
        for suffix in ("", "_BURST")
    }
    return {
        **limits,
        "ADMIN_TOKEN": ADMIN,
        "AI_OFFLINE_DELAY": "0",
        "HISTORY_LIMIT": "50",
        "LEGACY_WIRE": "true",
        "MAX_USER_CONNECTIONS": "1000",
        "MAX_ADDRESS_CONNECTIONS": "10000",
        "LOG_LEVEL": os.environ.get("FUZZ_LOG_LEVEL", "warning"),
    }


# ------------------------------------------------------------------ generation


class Gen:
    """Mutated inputs from one seeded ``random.Random``."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def text(self, size: int = 40) -> str:
        r = self.r
        pick = r.random()
        if pick < 0.3:
            return r.choice(ODD_STRINGS)
        if pick < 0.6:
            return "".join(chr(r.randrange(32, 127)) for _ in range(r.randrange(size)))
        return "".join(
            chr(
                r.choice(
                    [
                        r.randrange(0x20, 0x7F),
                        r.randrange(0xA0, 0x2FFF),
                        r.randrange(0xE000, 0x10FFFF),
                    ]
                )
            )
            for _ in range(r.randrange(size))
        )

    def value(self, depth: int = 0) -> Any:
        r = self.r
        kind = r.randrange(10 if depth < 3 else 7)
        if kind == 0:
            return None
        if kind == 1:
            return r.random() < 0.5
        if kind == 2:
            return r.choice(
                [0, -1, 1, 2**31, 2**53 + 1, -(2**63), 2**64, r.randrange(-1000, 10**6)]
            )
        if kind == 3:
            return r.choice([0.5, -0.0, 1e308, -1e-308, 3.14])
        if kind in (4, 5, 6):
            return self.text()
        if kind in (7, 8):
            return [self.value(depth + 1) for _ in range(r.randrange(4))]
        return {self.text(8): self.value(depth + 1) for _ in range(r.randrange(4))}

    def plausible(self, kind: str, peers: list[str]) -> dict[str, Any]:
        r = self.r
        peer = r.choice(peers) if peers and r.random() < 0.8 else self.text(20)
        signal_type = r.choice(["offer", "answer", "candidate", "bye", "hello"])
        signal: dict[str, Any] = {"type": signal_type}
        if signal_type in ("offer", "answer"):
            signal["sdp"] = "v=0 " + "a" * r.choice([1, 100, 10_000, 66_000])
        elif signal_type == "candidate":
            signal["candidate"] = r.choice(
                [None, "candidate:1 1 udp 1 1.2.3.4 5 typ host", {"a": 1}]
            )
        return {
            "chat": {"text": self.text(60), "clientId": self.text(20)},
            "typing": {"isTyping": r.random() < 0.5},
            "webrtc-signal": {
                "to": peer,
                "signal": signal,
                "stream": r.choice(["camera", "screen", "tv"]),
            },
            "media-state": {"camera": r.random() < 0.5, "mic": r.random() < 0.5, "screen": False},
            "bot-toggle": {"bot": r.choice(["sol", "pip", "noor", "nobody", ""]), "enabled": True},
            "clear": {},
            "ai-request": {"prompt": self.text(30), "bot": r.choice(["sol", "pip", "noor", "x"])},
            "ping": {"t": r.choice([1, 1.5, "x", None])},
            "ready": {},
            "auth": {"token": self.text(20), "lastSeq": r.choice([0, -1, "1", 10**20])},
        }[kind]

    def mutate(self, data: dict[str, Any]) -> Any:
        """Drop, retype or add fields; sometimes replace the whole thing."""
        r = self.r
        if r.random() < 0.1:
            return self.value()
        out = dict(data)
        for key in list(out):
            roll = r.random()
            if roll < 0.15:
                del out[key]
            elif roll < 0.35:
                out[key] = self.value()
            elif roll < 0.45 and isinstance(out[key], dict):
                out[key] = self.mutate(out[key])
        if r.random() < 0.2:
            out[self.text(8)] = self.value()
        return out

    def envelope(self, peers: list[str]) -> dict[str, Any]:
        r = self.r
        kind = r.choice([*TYPES, self.text(10)])
        data = self.plausible(kind, peers) if kind in TYPES else {}
        env: dict[str, Any] = {
            "type": kind,
            "data": data if r.random() < 0.4 else self.mutate(data),
        }
        roll = r.random()
        if roll < 0.5:
            env["ref"] = (
                self.text(64) if r.random() < 0.9 else r.choice([self.text(80), 5, None, []])
            )
        if r.random() < 0.05:
            env.pop("type")
        if r.random() < 0.05:
            env["data"] = self.value()
        return env

    def body(self, kind: str, peers: list[str]) -> bytes:
        r = self.r
        roll = r.random()
        if roll < 0.6:
            data = self.plausible(kind, peers)
            obj = data if roll < 0.3 else self.mutate(data)
            if r.random() < 0.3 and isinstance(obj, dict):
                obj["ref"] = self.text(70)
            return json.dumps(obj).encode()
        if roll < 0.75:
            return json.dumps(self.value()).encode()
        if roll < 0.9:
            return bytes(r.randrange(256) for _ in range(r.randrange(200)))
        return r.choice([b"", b" ", b"{", b"null", b"[" * 3000, b'{"text": "\\ud800"}', b"{}" * 10])


# ------------------------------------------------------------------ the run


@dataclass
class Tally:
    inputs: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    closes: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    busy_503: int = 0
    rss_kib: list[int] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.inputs.values())

    def fail(self, what: str) -> None:
        if len(self.failures) < 50:
            self.failures.append(what[:600])

    def response(self, status: int, text: str, what: object) -> None:
        self.statuses[status] += 1
        code = None
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            code = json.loads(text).get("code")
        if code:
            self.codes[str(code)] += 1
        if status >= 500:
            if status == 503 and code in ("ai_unavailable", "rate_limited"):
                self.busy_503 += 1
            else:
                self.fail(f"{status} for {what!r:.300}: {text[:200]}")
        if code == "internal":
            self.fail(f"internal error for {what!r:.300}: {text[:200]}")

    def event(self, env: Any, what: object) -> None:
        if isinstance(env, dict) and env.get("type") == "error":
            code = str((env.get("data") or {}).get("code"))
            self.codes[code] += 1
            if code == "internal":
                self.fail(f"internal error event for {what!r:.300}: {env}")


class Fuzz:
    def __init__(self, srv: Server, seed: int, deadline: float, tally: Tally) -> None:
        self.srv = srv
        self.seed = seed
        self.deadline = deadline
        self.tally = tally
        self.peers: list[str] = []
        self.tokens = [mint(f"u_fuzz{i:04d}", f"Fuzz{i}") for i in range(8)]

    def running(self) -> bool:
        return time.monotonic() < self.deadline and len(self.tally.failures) < 50

    # --------------------------------------------------------- WebSocket

    async def ws_worker(self, n: int) -> None:
        gen = Gen(self.seed * 1000 + n)
        while self.running():
            with contextlib.suppress(ConnectionClosed, OSError, TimeoutError):
                await self._ws_session(gen, n)

    async def _ws_session(self, gen: Gen, n: int) -> None:
        async with connect(
            self.srv.ws, proxy=None, max_size=None, ping_interval=None, close_timeout=1
        ) as ws:
            await ws.send(json.dumps({"type": "auth", "data": {"token": self.tokens[n % 8]}}))
            pongs: dict[str, asyncio.Future[None]] = {}
            last: list[object] = [None]
            reader = asyncio.create_task(self._ws_read(ws, pongs, last))
            oversized = False  # over 64 KiB: the server closes 1009 (the client may see 1006)
            try:
                while self.running():
                    for _ in range(20):
                        frame = self._ws_frame(gen)
                        last[0] = frame
                        size = sum(map(len, frame)) if isinstance(frame, list) else len(frame)
                        oversized = oversized or size > 60_000
                        self.tally.inputs["ws-frame"] += 1
                        await ws.send(frame)  # type: ignore[arg-type]
                    ref = f"probe-{n}-{self.tally.total}"
                    pong = pongs[ref] = asyncio.get_running_loop().create_future()
                    await ws.send(json.dumps({"type": "ping", "data": {}, "ref": ref}))
                    try:
                        await asyncio.wait_for(pong, 10)
                    finally:
                        pongs.pop(ref, None)
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
                code = ws.close_code
                if code is not None:
                    self.tally.closes[code] += 1
                    if (code == 1011 or (code == 1006 and not oversized)) and self.running():
                        self.tally.fail(f"WebSocket closed {code} after {last[0]!r:.300}")

    def _ws_frame(self, gen: Gen) -> str | bytes | list[str]:
        r = gen.r
        roll = r.random()
        if roll < 0.8:
            text = json.dumps(gen.envelope(self.peers))
        elif roll < 0.9:
            text = r.choice(
                [
                    '{"type": "ping", "data": {"t": 1e999}}',
                    "{",
                    "[" * 1000 + "]" * 1000,
                    gen.text(50),
                ]
            )
        else:
            return bytes(r.randrange(256) for _ in range(r.randrange(100)))
        if r.random() < 0.15 and len(text) > 2:  # fragmented: a message in pieces
            cut = sorted(r.sample(range(1, len(text)), min(3, len(text) - 1)))
            return [text[a:b] for a, b in zip([0, *cut], [*cut, len(text)], strict=True)]
        return text

    async def _ws_read(
        self, ws: ClientConnection, pongs: dict[str, asyncio.Future[None]], last: list[object]
    ) -> None:
        async for raw in ws:
            env = json.loads(raw)
            if os.environ.get("FUZZ_DEBUG"):
                print("<", str(raw)[:150])
            kind = env.get("type")
            if kind == "pong":
                fut = pongs.get(str((env.get("data") or {}).get("ref")))
                if fut is not None and not fut.done():
                    fut.set_result(None)
            elif kind == "ready":
                peer = env["data"]["peerId"]
                self.peers = [*self.peers[-15:], peer]
            else:
                self.tally.event(env, last[0])

    # --------------------------------------------------------- raw frames

    async def raw_worker(self, n: int) -> None:
        gen = Gen(self.seed * 1000 + 500 + n)
        while self.running():
            frames = self._raw_frames(gen)
            self.tally.inputs["raw-frame"] += 1
            with contextlib.suppress(TimeoutError, OSError):
                await asyncio.wait_for(self._raw_session(frames), 1.5)

    def _raw_frames(self, gen: Gen) -> list[bytes]:
        r = gen.r
        out = []
        for _ in range(r.randrange(1, 4)):
            opcode = r.choice([0, 1, 2, 8, 9, 10, 3, 7, 11, 15])
            fin = r.random() < 0.7
            rsv = r.choice([0, 0, 0, 0x40, 0x20, 0x10])
            payload = r.choice(
                [
                    b'{"type":"ping","data":{}}',
                    bytes(r.randrange(256) for _ in range(r.randrange(200))),
                    b"\xff\xfe\xfd",
                    b"\xc3\x28",
                    b"x" * r.choice([0, 125, 126, 200, 70000]),
                    struct.pack("!H", r.randrange(65536)) + b"why",
                ]
            )
            masked = r.random() < 0.9
            length = len(payload) if r.random() < 0.85 else r.randrange(0, 2**16)
            out.append(frame_bytes(fin, rsv, opcode, payload, masked, length))
        return out

    async def _raw_session(self, frames: list[bytes]) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.srv.port)
        try:
            key = base64.b64encode(os.urandom(16))
            writer.write(
                b"GET /api/chat.ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
                + key
                + b"\r\n\r\n"
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                self.tally.fail(f"raw handshake answered {head[:40]!r}")
                return
            auth = json.dumps({"type": "auth", "data": {"token": self.tokens[0]}}).encode()
            writer.write(frame_bytes(True, 0, 1, auth, True, len(auth)))
            for frame in frames:
                writer.write(frame)
            probe = b'{"type":"ping","data":{},"ref":"raw-probe"}'
            writer.write(frame_bytes(True, 0, 1, probe, True, len(probe)))
            await writer.drain()
            seen = b""
            while b"raw-probe" not in seen:  # until our pong, or the server closes
                chunk = await reader.read(65536)
                if not chunk:
                    break
                seen = seen[-200:] + chunk
                if b'"internal"' in chunk:
                    self.tally.fail(f"internal error after raw frames {frames!r:.300}")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    # --------------------------------------------------------- HTTP

    async def post_worker(self, n: int, http: httpx.AsyncClient) -> None:
        gen = Gen(self.seed * 1000 + 700 + n)
        r = gen.r
        paths = list(POSTS)
        while self.running():
            roll = r.random()
            if roll < 0.12:
                await self._session(gen, http)
                continue
            path = r.choice(paths)
            body = gen.body(POSTS[path], self.peers)
            headers = {}
            token = r.choice([*self.tokens[:2], "junk.token.x", mint("u_fuzzexp", ttl=-10), None])
            legacy = token is None and r.random() < 0.5
            if token:
                headers["Authorization"] = f"Bearer {token}"
            if r.random() < 0.5:
                headers["X-Lastra-Peer"] = (
                    r.choice([*self.peers[-3:], gen.text(70)]) if self.peers else "p_x"
                )
            ctype = r.choice(
                ["application/json", "text/plain", None, "application/x-www-form-urlencoded"]
            )
            if ctype:
                headers["Content-Type"] = ctype
            if legacy:  # the SSE-era tab names itself in the body
                obj = {"userId": f"user-{r.randrange(10**12)}-abc", "userName": gen.text(10)}
                with contextlib.suppress(ValueError, RecursionError):
                    extra = json.loads(body)
                    if isinstance(extra, dict):
                        obj.update(extra)
                body = json.dumps(obj).encode()
            self.tally.inputs["post"] += 1
            try:
                resp = await http.post(path, content=body, headers=_latin1(headers))
            except httpx.HTTPError as exc:
                self.tally.fail(f"POST {path} failed: {exc!r} for {body!r:.200}")
                continue
            self.tally.response(resp.status_code, resp.text, (path, body))

    async def _session(self, gen: Gen, http: httpx.AsyncClient) -> None:
        r = gen.r
        roll = r.random()
        if roll < 0.5:
            obj: Any = gen.mutate({"userName": gen.text(70)})
            body = json.dumps(obj).encode()
        elif roll < 0.8:
            body = json.dumps(gen.value()).encode()
        else:
            body = bytes(r.randrange(256) for _ in range(r.randrange(100)))
        headers = {"Authorization": f"Bearer {self.tokens[1]}"} if r.random() < 0.3 else {}
        self.tally.inputs["session"] += 1
        http.cookies.clear()
        resp = await http.post("/api/session", content=body, headers=headers)
        http.cookies.clear()
        self.tally.response(resp.status_code, resp.text, ("/api/session", body))

    async def sse_worker(self, n: int, http: httpx.AsyncClient) -> None:
        gen = Gen(self.seed * 1000 + 900 + n)
        r = gen.r
        while self.running():
            params: dict[str, str] = {}
            headers: dict[str, str] = {}
            for name in ("lastSeq", "epoch", "token", "userId", "userName", "peerId"):
                if r.random() < 0.3:
                    params[name] = gen.text(30) if r.random() < 0.6 else str(r.randrange(-5, 10**6))
            if r.random() < 0.5:
                headers["Last-Event-ID"] = r.choice(
                    ["", ":", "e:1", f"{gen.text(10)}:{gen.text(8)}", "x:" + "9" * 5000]
                )
            if r.random() < 0.6:
                headers["Authorization"] = f"Bearer {r.choice(self.tokens)}"
            if r.random() < 0.2:
                params["userId"] = f"user-{r.randrange(10**12)}-abc"
            if r.random() < 0.95:  # each legacy stream binds its userId with a cookie: the
                http.cookies.clear()  # jar would pass LASTRA_MAX_HEADER_BYTES (431) in minutes
            self.tally.inputs["sse"] += 1
            what = ("sse", params, headers)
            try:
                async with http.stream(
                    "GET", "/api/chat-stream", params=params, headers=_latin1(headers)
                ) as resp:
                    if resp.status_code != 200:
                        await resp.aread()
                        self.tally.response(resp.status_code, resp.text, what)
                        continue
                    self.tally.statuses[200] += 1
                    async for chunk in resp.aiter_bytes():
                        if b'"internal"' in chunk:
                            self.tally.fail(f"internal error on the stream for {what!r:.300}")
                        if r.random() < 0.5:
                            break
            except httpx.HTTPError as exc:
                self.tally.fail(f"SSE {what!r:.300} failed: {exc!r}")


def _latin1(headers: dict[str, str]) -> dict[str, bytes]:
    """Header values as UTF-8 bytes, odd characters included, minus what no HTTP client
    can send (controls, and spaces at either end)."""
    out = {}
    for key, value in headers.items():
        raw = value.encode("utf-8", "replace")[:8000]
        out[key] = bytes(b for b in raw if b >= 0x20 and b != 0x7F).strip(b" \t")
    return out


def frame_bytes(
    fin: bool, rsv: int, opcode: int, payload: bytes, masked: bool, length: int
) -> bytes:
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if masked else 0
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 65536:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if masked:
        mask = os.urandom(4)
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        head += mask
    return head + payload


def whole_log(srv: Server) -> str:
    """The server's whole log (``Server.log`` keeps only its tail)."""
    if srv.log_path and srv.log_path.exists():
        return srv.log_path.read_text(errors="replace")
    return ""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def _sample_rss(srv: Server, tally: Tally, stop: asyncio.Event) -> None:
    assert srv.proc is not None
    while not stop.is_set():
        tally.rss_kib.append(rss_kib(srv.proc.pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)


async def _held(srv: Server, timeout: float = 10.0) -> dict[str, int]:
    """The admin stats' connections, waited on until none is held (or ``timeout``)."""
    async with httpx.AsyncClient(base_url=srv.http, timeout=5, trust_env=False) as http:
        deadline = time.monotonic() + timeout
        while True:
            resp = await http.get("/api/admin/stats", headers={"Authorization": f"Bearer {ADMIN}"})
            held: dict[str, int] = resp.json()["connections"]
            if not held or time.monotonic() > deadline:
                return held
            await asyncio.sleep(0.1)


async def fuzz(srv: Server, budget: float, seed: int, workers: int = 2) -> Tally:
    """Fuzz ``srv`` for ``budget`` seconds; the tally says what was sent and found."""
    tally = Tally()
    fz = Fuzz(srv, seed, time.monotonic() + budget, tally)
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=16)
    async with (
        httpx.AsyncClient(base_url=srv.http, timeout=15, trust_env=False, limits=limits) as http,
        httpx.AsyncClient(
            base_url=srv.http, timeout=15, trust_env=False, limits=limits
        ) as sse_http,
    ):
        sampler = asyncio.create_task(_sample_rss(srv, tally, stop))
        jobs = [fz.ws_worker(i) for i in range(workers * 2)]
        jobs += [fz.post_worker(i, http) for i in range(workers * 2)]
        jobs += [fz.sse_worker(i, sse_http) for i in range(workers)]
        jobs += [fz.raw_worker(i) for i in range(workers)]
        await asyncio.gather(*jobs)
        stop.set()
        await sampler
    held = await _held(srv)
    if held:
        tally.fail(f"places still held after the run: {held}")
    log = whole_log(srv)
    for marker in ('"level":"error"', "Traceback", "internal error"):
        if marker in log:
            tally.fail(f"the server log has {marker!r}: ...{log[log.index(marker) - 300 :][:900]}")
            break
    if tally.rss_kib and max(tally.rss_kib) - tally.rss_kib[0] > RSS_BOUND_MB * 1024:
        tally.fail(f"RSS grew {(max(tally.rss_kib) - tally.rss_kib[0]) / 1024:.0f} MB")
    return tally


def report(tally: Tally, took: float) -> str:
    rss = tally.rss_kib or [0]
    return "\n".join(
        [
            f"inputs: {tally.total} in {took:.0f} s ({tally.total / max(took, 1e-9):.0f}/s): "
            + ", ".join(f"{k} {v}" for k, v in sorted(tally.inputs.items())),
            "HTTP statuses: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.statuses.items())),
            f"5xx: {sum(v for k, v in tally.statuses.items() if k >= 500) - tally.busy_503}"
            f" (plus {tally.busy_503} 503 ai_unavailable/rate_limited by design)",
            f"internal errors: {tally.codes.get('internal', 0)}",
            "error codes: " + ", ".join(f"{k}: {v}" for k, v in tally.codes.most_common()),
            "WebSocket closes: " + ", ".join(f"{k}: {v}" for k, v in sorted(tally.closes.items())),
            f"server RSS: start {rss[0] / 1024:.0f} MB, peak {max(rss) / 1024:.0f} MB,"
            f" end {rss[-1] / 1024:.0f} MB",
            f"failures: {len(tally.failures)}",
            *(f"  - {f}" for f in tally.failures[:10]),
        ]
    )


def start_server(data_dir: Path) -> Server:
    srv = build_server(data_dir, settings_for_fuzz())
    srv.start()
    return srv


def main() -> int:
    parser = argparse.ArgumentParser(description="Fuzz a real Lastra server (issue 14).")
    parser.add_argument("--budget", type=float, default=600.0, help="seconds of fuzzing")
    parser.add_argument("--min-inputs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="lastra-fuzz-") as tmp:
        srv = start_server(Path(tmp))
        try:
            started = time.monotonic()
            tally = asyncio.run(fuzz(srv, args.budget, args.seed, args.workers))
            took = time.monotonic() - started
        finally:
            srv.stop(timeout=10)
    print(f"seed {args.seed}")
    print(report(tally, took))
    if tally.total < args.min_inputs:
        print(f"FAIL: only {tally.total} inputs (< {args.min_inputs})")
        return 1
    if tally.failures:
        print("FAIL")
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
