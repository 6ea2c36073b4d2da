"""``python -m app`` / ``lastra``: serve Lastra Chat with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from app.main import create_app
from app.settings import Settings


def main(argv: list[str] | None = None) -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="lastra", description="Serve Lastra Chat.")
    parser.add_argument("--host", default=settings.host)
    parser.add_argument("--port", type=int, default=settings.port)
    args = parser.parse_args(argv)
    app = create_app(settings)
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=settings.log_level.lower(),
        ws_max_size=settings.max_message_bytes,
        ws_ping_interval=None,  # the protocol has its own ping/pong and 4408 timeout
        timeout_graceful_shutdown=5,
        proxy_headers=True,
    )


if __name__ == "__main__":
    main()
