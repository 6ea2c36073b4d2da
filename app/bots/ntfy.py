"""Optional push notifications of new chat messages to an ntfy-compatible server.

Off unless ``LASTRA_NTFY_URL`` is set. Each user or bot message is POSTed as
plain text to ``<url>/<topic>`` (or ``<url>`` without a topic) with a ``Title``
header, fire-and-forget: from a small thread pool with the stdlib ``urllib``,
bounded by ``timeout`` and by a few requests in flight (beyond that, pushes are
dropped, never queued), so a slow push server can never slow the chat.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["Notifier"]

log = logging.getLogger("lastra.ntfy")

MAX_IN_FLIGHT = 8


class Notifier:
    def __init__(self, url: str, topic: str | None = None, timeout: float = 5.0) -> None:
        base = url.rstrip("/")
        self.target = f"{base}/{topic.strip('/')}" if topic else base
        self.timeout = timeout
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="lastra-ntfy")
        self._in_flight: set[asyncio.Future[None]] = set()
        self._closed = False

    def push(self, data: dict[str, Any]) -> None:
        """Notify about one committed chat message (user and bot messages only)."""
        if self._closed or data.get("kind") not in ("user", "bot"):
            return
        if len(self._in_flight) >= MAX_IN_FLIGHT:
            log.warning("ntfy: %d pushes in flight, dropping one", len(self._in_flight))
            return
        title = f"{data.get('userName') or 'Someone'} in Lastra Chat"
        body = str(data.get("text", ""))[:2000]
        loop = asyncio.get_running_loop()
        fut = loop.run_in_executor(self._pool, self._post, title, body)
        self._in_flight.add(fut)
        fut.add_done_callback(self._done)

    def _post(self, title: str, body: str) -> None:
        request = urllib.request.Request(
            self.target,
            data=body.encode("utf-8"),
            method="POST",
            headers={"Title": _header(title)},
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            response.read(1024)

    def _done(self, fut: asyncio.Future[None]) -> None:
        self._in_flight.discard(fut)
        if not fut.cancelled() and fut.exception() is not None:
            log.warning("ntfy push to %s failed: %s", self.target, fut.exception())

    def close(self) -> None:
        """Stop pushing; pushes in flight end by their own timeout."""
        self._closed = True
        self._pool.shutdown(wait=False, cancel_futures=True)


def _header(value: str) -> str:
    """ASCII as is; anything else RFC 2047-encoded (ntfy decodes it)."""
    if value.isascii():
        return value
    return "=?UTF-8?B?" + base64.b64encode(value.encode("utf-8")).decode("ascii") + "?="
