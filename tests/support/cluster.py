"""Helpers for the multi-process tests: several ``python -m app`` on one Redis database.

- :func:`redis_db` gives an empty Redis database for a whole module (the same
  rules as conftest's ``redis_url``: skipped loudly where no Redis answers,
  except under ``CI=true``, where that fails).
- :func:`cluster` starts N servers with ``BACKEND=redis`` on that database, in
  parallel, and stops them afterwards.
- :func:`redis_outage` stops the machine's shared Redis and always starts it
  again (``finally``), with the exact command it was started with.
- :class:`StreamRecorder` reads the Redis history stream beside the servers, so
  a test can check that every ``ack`` it got names a stored event.
- :class:`Talker` keeps one client chatting and records every reply.

Run as a script (``python tests/cluster.py --processes 1 2 3``), it measures what
one Redis spends per chat message and per peer for 1, 2, 3 … processes: the
figures in docs/deployment.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests/: run as a script

from support.clients import Reply, SseClient, WsClient, asession, uniq
from support.server import REDIS_URL, Server, free_port, server_env

__all__ = [
    "PROCESS_NAMES",
    "REDIS_CMD",
    "StreamRecorder",
    "Talker",
    "barrier",
    "close_info",
    "cluster",
    "durable_window",
    "redis_client",
    "redis_db",
    "redis_outage",
    "redis_ping",
    "restart_reason",
    "revive",
    "sibling_db_url",
    "wait_closed",
]

PROCESS_NAMES = "ABCDEFGH"

#: How the machine's shared Redis is started (and so restarted by the outage test).
REDIS_CMD = [
    "redis-server",
    "--daemonize",
    "yes",
    "--bind",
    "127.0.0.1",
    "-::1",
    "--port",
    "6379",
    "--save",
    "",
    "--appendonly",
    "no",
    "--dir",
    "/var/lib/redis",
    "--logfile",
    "/var/log/redis/ci.log",
]

# --------------------------------------------------------------------------- Redis


def redis_client(url: str = REDIS_URL, **kw: Any) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5, **kw)


def redis_ping(url: str = REDIS_URL) -> bool:
    import redis

    client = redis_client(url, retry=None)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail("CI=true needs this: " + reason)
    pytest.skip("SKIPPING REDIS CLUSTER TESTS: " + reason)


@contextlib.contextmanager
def redis_db(url: str = REDIS_URL) -> Iterator[str]:
    """An empty Redis database (``LASTRA_TEST_REDIS_URL``), flushed again afterwards."""
    if not redis_ping(url):
        _unavailable(f"Redis at {url} does not answer; set LASTRA_TEST_REDIS_URL")
    client = redis_client(url)
    try:
        client.flushdb()
        yield url
    finally:
        with contextlib.suppress(Exception):
            client.flushdb()
        client.close()


def sibling_db_url(url: str = REDIS_URL) -> str:
    """Another database number on the same Redis server (15 → 14, 0 → 1)."""
    parsed = urlparse(url)
    db = int(parsed.path.strip("/") or 0)
    return parsed._replace(path=f"/{db - 1 if db > 0 else 1}").geturl()


def restart_reason(url: str = REDIS_URL) -> str | None:
    """Why this test run cannot restart the Redis at ``url`` (None: it can)."""
    parsed = urlparse(url)
    if parsed.hostname not in ("127.0.0.1", "localhost") or (parsed.port or 6379) != 6379:
        return f"{url} is not the machine's Redis at 127.0.0.1:6379"
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return "redis-server / redis-cli are not installed"
    if not Path("/var/lib/redis").is_dir():
        return "/var/lib/redis does not exist"
    return None


def _wait(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout}s")
        time.sleep(0.05)


def stop_redis() -> None:
    subprocess.run(
        ["redis-cli", "-p", "6379", "shutdown", "nosave"],
        capture_output=True,
        timeout=10,
        check=False,
    )
    _wait(lambda: not redis_ping(), 10, "Redis did not stop")


def start_redis() -> None:
    """Start the shared Redis with its usual command; wait for PING."""
    for _ in range(3):
        if redis_ping():
            return
        subprocess.run(REDIS_CMD, capture_output=True, timeout=10, check=False)
        with contextlib.suppress(AssertionError):
            _wait(redis_ping, 5, "Redis did not answer PING")
            return
    raise AssertionError("could not restart Redis with: " + " ".join(REDIS_CMD))


@contextlib.contextmanager
def redis_outage() -> Iterator[None]:
    """Redis is down inside the block and ALWAYS up again after it, pass or fail.

    The body may call :func:`start_redis` itself to bring it back at a chosen
    moment; the ``finally`` only starts it when it is still down.
    """
    reason = restart_reason()
    if reason is not None:
        _unavailable("the Redis restart test " + reason)
    stop_redis()
    try:
        yield
    finally:
        start_redis()


# --------------------------------------------------------------------------- servers


def cluster_settings(url: str, **settings: str) -> dict[str, str]:
    return {"BACKEND": "redis", "REDIS_URL": url, **settings}


@contextlib.contextmanager
def cluster(tmp_path: Path, url: str, n: int = 3, **settings: str) -> Iterator[list[Server]]:
    """``n`` servers sharing the Redis database ``url`` (started in parallel)."""
    servers = []
    for i in range(n):
        data_dir = tmp_path / f"node-{PROCESS_NAMES[i]}"
        data_dir.mkdir(parents=True, exist_ok=True)
        env = server_env(data_dir, **cluster_settings(url, **settings))
        servers.append(Server(port=free_port(), env=env, data_dir=data_dir))
    try:
        # Server.start drops its log file handle (the child keeps its copy): keep
        # that one ResourceWarning from failing the test under filterwarnings=error.
        with warnings.catch_warnings(), ThreadPoolExecutor(n) as pool:
            warnings.simplefilter("ignore", ResourceWarning)
            for future in [pool.submit(s.start) for s in servers]:
                future.result()
        yield servers
    finally:
        with ThreadPoolExecutor(n) as pool:
            list(pool.map(lambda s: s.stop(timeout=5), servers))


def revive(servers: list[Server]) -> None:
    """Start again any server of the cluster that is not running (a killed one)."""
    dead = [s for s in servers if s.proc is None or s.proc.poll() is not None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        for srv in dead:
            srv.start()


# --------------------------------------------------------------------------- clients

Client = WsClient | SseClient


def close_info(client: Client) -> tuple[int | None, str | None]:
    """How the server ended this connection: (code, reason).

    WebSocket: the close frame. SSE: the ``: closed <code> <reason>`` comment the
    server writes last (``(None, None)`` when the stream just broke).
    """
    if isinstance(client, WsClient):
        return client.close_code, client.close_reason
    for comment in reversed(client.comments):
        parts = comment.lstrip(": ").split(" ", 2)
        if parts[0] == "closed" and len(parts) >= 2 and parts[1].isdigit():
            return int(parts[1]), parts[2] if len(parts) > 2 else ""
    return None, None


async def wait_closed(
    client: Client, timeout: float, why: str = ""
) -> tuple[int | None, str | None]:
    """Wait until the server ends this connection; return :func:`close_info`."""
    try:
        await asyncio.wait_for(client.closed.wait(), timeout)
    except TimeoutError:
        seqs = [e["seq"] for e in client.durable][-8:]
        raise AssertionError(
            f"{client.transport} client of {client.ready.get('userName')} still open after "
            f"{timeout}s{why}; epoch {client.ready.get('epoch')}, last seqs it got: {seqs}"
        ) from None
    return close_info(client)


async def barrier(sender: Client, clients: Iterable[Client], timeout: float = 5.0) -> int:
    """``sender`` chats once; wait until every client has that seq. Returns the seq."""
    reply = await sender.chat(uniq("barrier"))
    assert reply.ok, reply
    seq = int(reply.data["seq"])
    await asyncio.gather(*(c.wait_durable(seq, timeout) for c in clients))
    return seq


def durable_window(client: Client, lo: int, hi: int) -> list[tuple[int, str, str]]:
    """(seq, type, id) of every durable event the client received with lo < seq <= hi."""
    return [
        (int(e["seq"]), str(e["type"]), str(e["data"].get("id")))
        for e in client.durable
        if lo < int(e["seq"]) <= hi
    ]


@dataclass
class Sent:
    """One chat a :class:`Talker` sent: its clientId and what came back."""

    client_id: str
    at: float
    reply: Reply | None = None
    failure: str | None = None  # no reply at all (connection gone, timeout)


@dataclass
class Talker:
    """Keeps ``client`` chatting every ``every`` seconds until stopped."""

    client: Client
    name: str
    every: float = 0.1
    timeout: float = 15.0
    sent: list[Sent] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    def start(self) -> Talker:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            n += 1
            item = Sent(f"{self.name}-{n}-{uniq('c')}", time.monotonic())
            self.sent.append(item)
            try:
                item.reply = await self.client.request(
                    "chat", {"text": f"{self.name} #{n}", "clientId": item.client_id}, self.timeout
                )
            except Exception as exc:  # a closed socket, a refused POST, a timeout
                item.failure = f"{type(exc).__name__}: {exc}"[:200]
                if self.client.closed.is_set():
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), self.every)

    def halt(self) -> None:
        """Ask it to stop after the message in flight (without waiting)."""
        self._stop.set()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    @property
    def acked(self) -> list[Sent]:
        return [s for s in self.sent if s.reply is not None and s.reply.ok]

    def errors(self, since: float = 0.0, until: float = float("inf")) -> list[Sent]:
        return [
            s
            for s in self.sent
            if since <= s.at < until and (s.failure or (s.reply is not None and not s.reply.ok))
        ]


class StreamRecorder:
    """Reads the history stream directly (``XREAD``), across Redis restarts.

    ``entries`` maps each stored chat/clear id to its seq; when Redis comes back
    empty the recorder starts from the beginning of the new stream.
    """

    def __init__(self, url: str = REDIS_URL, key: str = "{lastra}:events") -> None:
        import redis.asyncio as aioredis

        self.key = key
        self.entries: dict[str, int] = {}
        self._r = aioredis.Redis.from_url(
            url, socket_connect_timeout=1, socket_timeout=3, retry=None
        )
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StreamRecorder:
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        from redis.exceptions import RedisError

        last = "0-0"
        while True:
            try:
                resp: Any = await self._r.xread({self.key: last}, block=200, count=1000)
            except (RedisError, OSError):
                last = "0-0"  # Redis went away; it comes back empty (no persistence)
                await asyncio.sleep(0.05)
                continue
            for _stream, entries in resp or []:
                for eid, fields in entries:
                    last = eid.decode()
                    data = orjson.loads(fields[b"d"])
                    self.entries[str(data.get("id"))] = int(data["seq"])

    async def close(self) -> None:
        """Stop reading (idempotent)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
            await self._r.aclose()


# --------------------------------------------------------------------------- measuring
#
# ``python tests/cluster.py`` measures what one Redis spends per chat message and per
# connected peer with 1, 2, 3 … server processes (the figures in docs/deployment.md).


def _redis_figures(client: Any) -> dict[str, float]:
    info = client.info("all")
    figures = {
        "cpu": float(info["used_cpu_user"]) + float(info["used_cpu_sys"]),
        "commands": float(info["total_commands_processed"]),
        "net_in": float(info["total_net_input_bytes"]),
        "net_out": float(info["total_net_output_bytes"]),
    }
    for key, value in info.items():
        if key.startswith("cmdstat_") and isinstance(value, dict):
            figures[key[8:] + "_usec"] = float(value["usec"])
            figures[key[8:] + "_calls"] = float(value["calls"])
    return figures


def _proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure_one(
    servers: list[Server], url: str, clients: int, rate: float, seconds: float
) -> dict[str, float]:
    import httpx
    from websockets.asyncio.client import connect

    received = 0
    sockets = []

    async def reader(ws: Any) -> None:
        nonlocal received
        with contextlib.suppress(Exception):
            async for _ in ws:
                received += 1

    # the bots stay quiet: what is measured is the chat itself
    admin = await WsClient.open(servers[0], await asession(servers[0].http, uniq("admin")))
    for bot in admin.bots["bots"]:
        assert (await admin.request("bot-toggle", {"bot": bot["name"], "enabled": False})).ok
    await admin.close()

    async with httpx.AsyncClient(timeout=10, trust_env=False) as http:
        for srv in servers:
            for _ in range(clients):
                resp = await http.post(f"{srv.http}/api/session", json={"userName": uniq("m")})
                ws = await connect(srv.ws, proxy=None, ping_interval=None, max_size=None)
                await ws.send(
                    orjson.dumps({"type": "auth", "data": {"token": resp.json()["token"]}}).decode()
                )
                sockets.append(ws)
    readers = [asyncio.create_task(reader(ws)) for ws in sockets]
    r = redis_client(url)
    pids = [s.proc.pid for s in servers if s.proc is not None]
    out: dict[str, float] = {"peers": float(len(sockets))}
    try:
        await asyncio.sleep(3)  # joins settle, a heartbeat or two

        # idle: only heartbeats (and the peer registry) cost anything
        before = _redis_figures(r)
        await asyncio.sleep(seconds)
        after = _redis_figures(r)
        out["idle_cpu_pct"] = 100 * (after["cpu"] - before["cpu"]) / seconds
        out["idle_ops"] = (after["commands"] - before["commands"]) / seconds

        # chat at a fixed total rate, spread over every client
        before, cpu0, got0 = _redis_figures(r), [_proc_cpu(p) for p in pids], received
        sent, started = 0, time.monotonic()
        while (elapsed := time.monotonic() - started) < seconds:
            due = int(elapsed * rate) + 1
            while sent < due:
                ws = sockets[sent % len(sockets)]
                frame = {"type": "chat", "data": {"text": f"load {sent}", "clientId": uniq("l")}}
                await ws.send(orjson.dumps(frame).decode())
                sent += 1
            await asyncio.sleep(0.002)
        wall = time.monotonic() - started
        await asyncio.sleep(1)  # let deliveries drain
        after = _redis_figures(r)
        out["rate"] = sent / wall
        out["cpu_pct"] = 100 * (after["cpu"] - before["cpu"]) / wall
        idle_cpu = out["idle_cpu_pct"] / 100 * wall
        out["cpu_us_per_msg"] = 1e6 * (after["cpu"] - before["cpu"] - idle_cpu) / sent
        out["ops"] = (after["commands"] - before["commands"]) / wall
        out["net_out_kb"] = (after["net_out"] - before["net_out"]) / wall / 1024
        out["deliveries"] = (received - got0) / (wall + 1)
        out["server_cpu_pct"] = (
            100 * sum(_proc_cpu(p) - c for p, c in zip(pids, cpu0, strict=True)) / (wall + 1)
        )
        for cmd in ("evalsha", "xread", "publish", "hset", "hgetall", "set", "exists"):
            calls = after.get(cmd + "_calls", 0) - before.get(cmd + "_calls", 0)
            usec = after.get(cmd + "_usec", 0) - before.get(cmd + "_usec", 0)
            out[cmd + "_per_s"] = calls / wall
            out[cmd + "_us_per_msg"] = usec / sent
    finally:
        for ws in sockets:
            with contextlib.suppress(Exception):
                await ws.close()
        for task in readers:
            task.cancel()
        r.close()
    return out


def measure(processes: list[int], clients: int, rate: float, seconds: float) -> None:
    import tempfile

    print(
        f"# {clients} WebSocket clients per process, {rate:g} chat messages/s in total, "
        f"{seconds:g} s per phase, Redis at {REDIS_URL}"
    )
    print(
        "| processes | peers | idle: Redis CPU | idle: commands/s | chat msg/s | Redis CPU "
        "| Redis CPU µs/msg (above idle) | commands/s | EVALSHA/s | XREAD/s "
        "| EVALSHA µs/msg | XREAD µs/msg | Redis out KB/s | frames to clients/s | servers' CPU |"
    )
    print("|" + "---:|" * 15)
    for n in processes:
        with (
            tempfile.TemporaryDirectory() as tmp,
            redis_db() as url,
            cluster(
                Path(tmp),
                url,
                n,
                RATE_CHAT="100000",
                RATE_CHAT_BURST="100000",
                LOG_LEVEL="error",
                OUTBOUND_QUEUE="100000",
            ) as servers,
        ):
            m = asyncio.run(_measure_one(servers, url, clients, rate, seconds))
        print(
            f"| {n} | {m['peers']:.0f} | {m['idle_cpu_pct']:.2f} % | {m['idle_ops']:.0f} "
            f"| {m['rate']:.0f} | {m['cpu_pct']:.2f} % | {m['cpu_us_per_msg']:.0f} "
            f"| {m['ops']:.0f} | {m['evalsha_per_s']:.0f} | {m['xread_per_s']:.0f} "
            f"| {m['evalsha_us_per_msg']:.1f} | {m['xread_us_per_msg']:.1f} "
            f"| {m['net_out_kb']:.0f} | {m['deliveries']:.0f} | {m['server_cpu_pct']:.0f} % |",
            flush=True,
        )


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="What one Redis spends per process.")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--clients", type=int, default=20, help="per process")
    parser.add_argument("--rate", type=float, default=100, help="chat messages/s in total")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    measure(args.processes, args.clients, args.rate, args.seconds)
