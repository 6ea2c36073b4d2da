"""``python -m app`` / ``lastra``: serve Lastra Chat with uvicorn.

SIGTERM/SIGINT first close every client connection with 1012 (SSE streams end
with a ``retry`` hint) so clients start resuming at once, then uvicorn stops
accepting, in-flight writes finish and the store closes; the whole shutdown is
bounded by ``timeout_graceful_shutdown`` plus the hub's own 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
from types import FrameType

import uvicorn

from app.hub import Hub
from app.main import create_app
from app.settings import Settings
from app.transports.direct import LastraHttpProtocol, LastraWebSocketProtocol

__all__ = ["main"]


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
        # httptools and websockets-sansio, plus direct writes (app.transports.direct)
        http=LastraHttpProtocol,
        ws=LastraWebSocketProtocol,
        ws_ping_interval=None,  # the protocol has its own ping/pong and 4408 timeout
        timeout_graceful_shutdown=5,
        proxy_headers=True,
        access_log=False,  # it would print SSE URLs with their ?token=; we log connections
        log_config=None,  # keep our JSON logging (app.logs)
    )
    _Server(config, app.state.services.hub).run()


if __name__ == "__main__":
    main()
