"""``/readyz`` follows Redis in redis mode (issue 9): 503 while it is down, 200 once it is back.

The test starts its own ``redis-server`` on a free port (no persistence), runs the app with
``BACKEND=redis`` against it, kills that one Redis by its PID, and starts it again on the
same port. ``/healthz`` (liveness) stays 200 throughout: the process is fine, only not ready.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from support.clients import server_factory
from test_ops_support import RedisProcess, no_stack_trace

pytestmark = pytest.mark.skipif(shutil.which("redis-server") is None, reason="no redis-server")


def wait_status(http: httpx.Client, url: str, status: int, timeout: float) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = http.get(url)
        if resp.status_code == status:
            return resp
        if time.monotonic() > deadline:
            raise AssertionError(f"{url} still {resp.status_code} {resp.text} after {timeout}s")
        time.sleep(0.05)  # another process's state: polling is the only way


def test_readyz_is_503_while_redis_is_down_and_200_when_it_is_back(tmp_path: Path) -> None:
    redis = RedisProcess(tmp_path)
    redis.start()
    try:
        with server_factory(tmp_path) as make, httpx.Client(timeout=5, trust_env=False) as http:
            srv = make(BACKEND="redis", REDIS_URL=redis.url)
            ready = http.get(f"{srv.http}/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["backend"] == "redis"

            redis.kill()
            down = wait_status(http, f"{srv.http}/readyz", 503, timeout=5)
            assert down.json()["status"] == "unavailable"
            assert no_stack_trace(down.text), down.text
            assert http.get(f"{srv.http}/healthz").status_code == 200  # alive, not ready

            redis.start()  # same port, empty
            back = wait_status(http, f"{srv.http}/readyz", 200, timeout=10)
            assert back.json()["status"] == "ready"
            # and it serves again: a new session and a message over POST
            session = http.post(f"{srv.http}/api/session", json={"userName": "Back"}).json()
            headers = {"Authorization": f"Bearer {session['token']}"}
            body = {"text": "redis is back", "clientId": "c-back"}
            deadline = time.monotonic() + 10
            while True:
                posted = http.post(f"{srv.http}/api/chat-message", json=body, headers=headers)
                if posted.status_code == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)  # the store reconnects on its own schedule
            assert posted.status_code == 200, posted.text
    finally:
        redis.kill()
