"""Shared fixtures: real servers on free ports, real clients.

Every integration test talks to ``python -m app`` started as a subprocess on
127.0.0.1, so what is tested is exactly what an operator runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

#: Debian's Chromium (never a browser download) and the flags it needs here: headless,
#: as root, and no background traffic to the closed network.
CHROMIUM = os.environ.get("LASTRA_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One running ``python -m app`` process."""

    port: int
    env: dict[str, str]
    data_dir: Path
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/chat.ws"

    def start(self, timeout: float = 20.0) -> None:
        assert self.proc is None or self.proc.poll() is not None
        self.log_path = self.data_dir / f"server-{self.port}.log"
        with open(self.log_path, "ab") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "app", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{self.log()}")
            try:
                if httpx.get(f"{self.http}/healthz", timeout=0.5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not come up:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        if self.log_path and self.log_path.exists():
            return self.log_path.read_text(errors="replace")[-4000:]
        return ""


def server_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """Environment for a test server: defaults that make tests fast, then overrides.

    Keys are setting names without the ``LASTRA_`` prefix.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("LASTRA_")}
    base = {
        "SECRET": "test-secret-not-for-production-0123456789",
        "BACKEND": "memory",
        "DATA_DIR": str(data_dir),
        "PRESENCE_BATCH": "0",
        "PRESENCE_GRACE": "0.5",
        "LOG_LEVEL": "warning",
        # every test client comes from 127.0.0.1: the per-IP session limit and the
        # per-address connection cap are tested on their own, with their own settings
        "SESSION_RATE": "1000",
        "SESSION_BURST": "100000",
        "MAX_ADDRESS_CONNECTIONS": "100000",
    }
    base.update(settings)
    env.update({f"LASTRA_{k}": str(v) for k, v in base.items()})
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator[object]:
    """Factory: ``make_server(TRANSPORT="sse", ...)`` starts a server and returns it."""
    servers: list[Server] = []

    def factory(start: bool = True, port: int | None = None, **settings: str) -> Server:
        data_dir = tmp_path / f"data-{len(servers)}"
        data_dir.mkdir(exist_ok=True)
        srv = Server(
            port=port or free_port(), env=server_env(data_dir, **settings), data_dir=data_dir
        )
        servers.append(srv)
        if start:
            srv.start()
        return srv

    yield factory
    for srv in servers:
        srv.stop(timeout=5)


@pytest.fixture
def server(make_server: object) -> Server:
    """A default server (memory backend, transport flag ``ws``)."""
    return make_server()  # type: ignore[operator, no-any-return]


REDIS_URL = os.environ.get("LASTRA_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A real, empty Redis database (``LASTRA_TEST_REDIS_URL``).

    Skipped with a loud reason where no Redis answers, except under ``CI=true``,
    where a missing Redis fails the run: CI must exercise the Redis paths.
    """
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        message = f"Redis at {REDIS_URL} does not answer ({exc}); set LASTRA_TEST_REDIS_URL"
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs Redis: " + message)
        pytest.skip("SKIPPING REDIS TESTS: " + message)
    client.flushdb()
    yield REDIS_URL
    client.flushdb()
    client.close()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests last, and ``tests/browser`` (one session-wide browser) very last.

    Playwright's sync API keeps an event loop running in the main thread while it
    lives: no ``asyncio.run`` test, and no other ``sync_playwright()``, may run
    while ``tests/browser``'s session-scoped browser is open.
    """

    def order(item: pytest.Item) -> tuple[bool, bool]:
        browser = item.get_closest_marker("browser") is not None
        return browser, "browser" in item.path.parent.name

    items.sort(key=order)
