"""Shared fixtures: real servers on free ports, real clients.

Every integration test talks to ``python -m app`` started as a subprocess on
127.0.0.1, so what is tested is exactly what an operator runs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.clients import running_server, shared_server
from support.server import REDIS_URL, Server, free_port, server_env


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


@pytest.fixture(scope="module")
def srv(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The module's server: the shared one, or its own with the module's ``SERVER_SETTINGS``.

    A module that sets ``SERVER_SETTINGS`` (setting names without ``LASTRA_``) gets a
    server of its own for its tests; the others share one (``SHARED_SETTINGS``).
    """
    settings: dict[str, str] | None = getattr(request.module, "SERVER_SETTINGS", None)
    if settings is None:
        yield shared_server(tmp_path_factory)
        return
    with running_server(tmp_path_factory, **settings) as server:
        yield server


@pytest.fixture
def server(make_server: object) -> Server:
    """A default server (memory backend, transport flag ``ws``)."""
    return make_server()  # type: ignore[operator, no-any-return]


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
