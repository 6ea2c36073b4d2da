"""``python -m app`` / ``lastra``: serve Lastra Chat with uvicorn.

On the uvicorn minors that :mod:`app.transports.uvicorn_direct` was tested on,
the server runs its protocol subclasses (direct writes, no task per client);
on any other uvicorn it logs one warning and serves through uvicorn's stock
protocols, where the adapters use plain ASGI sends (the path ``uvicorn
app.main:app`` always takes).

SIGTERM/SIGINT first close every client connection with 1012 (SSE streams end
with a ``retry`` hint) so clients start resuming at once, then uvicorn stops
accepting, in-flight writes finish and the store closes; the whole shutdown is
bounded by ``timeout_graceful_shutdown`` plus the hub's own 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
from importlib.metadata import version
from types import FrameType
from typing import Any

import uvicorn

from app.hub import Hub
from app.main import create_app
from app.settings import Settings

__all__ = ["main", "protocols"]

log = logging.getLogger("lastra")

#: uvicorn's stock protocols, for a uvicorn the direct path was not tested on: h11,
#: whose ``h11_max_incomplete_event_size`` bounds a request head (httptools has no limit)
STOCK: dict[str, Any] = {"http": "h11", "ws": "auto"}


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self._hub = hub

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            loop = None
        if loop is not None:
            loop.call_soon_threadsafe(self._hub.begin_shutdown)
        super().handle_exit(sig, frame)


def protocols(settings: Settings | None = None) -> dict[str, Any]:
    """uvicorn's ``http``/``ws`` settings: our direct-write protocols where tested.

    Ours enforce every HTTP limit of ``settings`` (header size and count, header
    and body timeouts); the stock fallback only the header size, through h11.

    The version is read from the installed distribution's metadata; a uvicorn
    whose private classes fail to import is treated as untested too.
    """
    installed = version("uvicorn")
    try:
        from app.transports import uvicorn_direct
    except (ImportError, AttributeError) as exc:
        log.warning(
            "uvicorn %s: direct writes unavailable (%s); using stock protocols", installed, exc
        )
        return STOCK
    if ".".join(installed.split(".")[:2]) not in uvicorn_direct.TESTED_MINORS:
        log.warning(
            "uvicorn %s is outside the tested minors %s: serving through its stock "
            "protocols (plain ASGI sends, no direct writes)",
            installed,
            ", ".join(uvicorn_direct.TESTED_MINORS),
        )
        return STOCK
    settings = settings or Settings()
    limits = uvicorn_direct.HttpLimits(
        settings.max_header_bytes,
        settings.max_headers,
        settings.header_timeout,
        settings.body_timeout,
    )
    # httptools and websockets-sansio, plus direct writes (app.transports.flush)
    return {
        "http": uvicorn_direct.LastraHttpProtocol.with_limits(limits),
        "ws": uvicorn_direct.LastraWebSocketProtocol,
    }


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="lastra", description="Serve Lastra Chat.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        ws_max_size=settings.max_message_bytes,
        **protocols(settings),
        h11_max_incomplete_event_size=settings.max_header_bytes,  # the stock fallback's bound
        ws_ping_interval=None,  # the protocol has its own ping/pong and 4408 timeout
        # Declined: our direct writes never compress, so a browser's permessage-deflate
        # would only keep a zlib pair (~40 KB) per tab to inflate its small frames.
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        # X-Forwarded-For/-Proto only from the proxies the operator lists (uvicorn would
        # trust 127.0.0.1 by default: any local client could pick its address)
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        access_log=False,  # it would print SSE URLs with their ?token=; we log connections
        log_config=None,  # keep our JSON logging (app.logs)
    )
    # Full collections 10x rarer (gen-0 and gen-1 stay CPython's): a crowd connecting
    # grows the heap, and each 25 % of growth ran a full collection of every connection's
    # objects (~0.5 of 2.9 CPU-s for 5,000). Raising gen-0 instead stalled streaming rooms.
    gc.set_threshold(700, 10, 100)
    _Server(config, app.state.services.hub).run()


if __name__ == "__main__":
    main()
