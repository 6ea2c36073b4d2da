"""Helpers shared by the operator, security and fuzz tests (issue 9); no tests here.

- :func:`scrape` reads ``/metrics`` into a flat ``{(sample name, labels): value}`` map and
  :func:`value` / :func:`delta` pick one sample out of it, so a test compares a snapshot
  taken before some traffic with one taken after.
- :func:`wait_metric` polls ``/metrics`` until a condition holds: a counter in another
  process is not something we can await, so it is re-read every 50 ms up to a deadline.
- :func:`mint` signs a token with the test secret, as an operator's own auth service may
  (``docs/operations.md``): expired ones, or ones for users who never asked for a session.
- :class:`RedisProcess` is a private ``redis-server`` on a free port, ended by its PID.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
from prometheus_client.parser import text_string_to_metric_families
from support.server import Server, free_port

__all__ = [
    "CODES",
    "TEST_SECRET",
    "Labels",
    "RedisProcess",
    "Snapshot",
    "ascrape",
    "await_metric",
    "delta",
    "mint",
    "no_stack_trace",
    "scrape",
    "value",
    "wait_metric",
]

TEST_SECRET = "test-secret-not-for-production-0123456789"
"""conftest's ``LASTRA_SECRET`` for every test server."""

CODES = frozenset(
    {
        "bad_json",
        "unknown_type",
        "invalid",
        "too_large",
        "rate_limited",
        "not_authenticated",
        "forbidden",
        "not_found",
        "ai_unavailable",
        "internal",
    }
)
"""PROTOCOL §8: every ``error.code`` a client may see."""

Labels = frozenset[tuple[str, str]]
Snapshot = dict[tuple[str, Labels], float]


def parse_metrics(text: str) -> Snapshot:
    out: Snapshot = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = float(sample.value)
    return out


def scrape(srv: Server, http: httpx.Client | None = None) -> Snapshot:
    """``GET /metrics`` of ``srv``, parsed."""
    if http is None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            return scrape(srv, client)
    resp = http.get(f"{srv.http}/metrics")
    assert resp.status_code == 200, resp.text
    return parse_metrics(resp.text)


async def ascrape(srv: Server) -> Snapshot:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        resp = await http.get(f"{srv.http}/metrics")
    assert resp.status_code == 200, resp.text
    return parse_metrics(resp.text)


def value(snap: Snapshot, name: str, **labels: str) -> float:
    """One sample (0 when it does not exist yet: a labelled counter appears on first use)."""
    return snap.get((name, frozenset(labels.items())), 0.0)


def delta(before: Snapshot, after: Snapshot, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def wait_metric(
    srv: Server, cond: Callable[[Snapshot], bool], what: str, timeout: float = 5.0
) -> Snapshot:
    """Re-read ``/metrics`` until ``cond(snapshot)`` holds; fail with ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=5, trust_env=False) as http:
        while True:
            snap = scrape(srv, http)
            if cond(snap):
                return snap
            if time.monotonic() > deadline:
                relevant = {
                    f"{n}{dict(sorted(lbl))}": v
                    for (n, lbl), v in snap.items()
                    if n.startswith("lastra_") and not n.endswith("_created")
                }
                raise AssertionError(f"{what} within {timeout}s; /metrics: {relevant}")
            time.sleep(0.05)  # another process's counter: polling is the only way


async def await_metric(
    srv: Server, cond: Callable[[Snapshot], bool], what: str, timeout: float = 5.0
) -> Snapshot:
    """:func:`wait_metric` for ``async`` tests (does not block the event loop)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        snap = await ascrape(srv)
        if cond(snap):
            return snap
        if loop.time() > deadline:
            relevant = {
                f"{n}{dict(sorted(lbl))}": v
                for (n, lbl), v in snap.items()
                if n.startswith("lastra_") and not n.endswith("_created")
            }
            raise AssertionError(f"{what} within {timeout}s; /metrics: {relevant}")
        await asyncio.sleep(0.05)  # another process's counter: polling is the only way


def mint(
    user_id: str,
    name: str = "Minted",
    *,
    secret: str = TEST_SECRET,
    ttl: float = 3600,
    issued: float | None = None,
) -> str:
    """An HS256 token like the server's (``sub``, ``name``, ``iat``, ``exp``)."""
    now = int(time.time() if issued is None else issued)
    claims = {"sub": user_id, "name": name, "iat": now, "exp": now + int(ttl)}
    return jwt.encode(claims, secret, algorithm="HS256")


STACK_MARKERS = ("Traceback", 'File "', '.py", line', "site-packages", "/work/", "Exception:")


def no_stack_trace(text: str) -> bool:
    return not any(marker in text for marker in STACK_MARKERS)


class RedisProcess:
    """``redis-server`` on a free port, no persistence; stopped and restarted by its PID."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        import redis

        assert self.proc is None or self.proc.poll() is not None
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.ping():
                        return
                except redis.RedisError:
                    pass
                if self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer PING")
                time.sleep(0.05)  # a process starting: nothing to await
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL this one redis-server (by its PID) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> RedisProcess:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.kill()
