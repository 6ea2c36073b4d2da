"""The legacy wire's switch and its identities: the mode, and tabs bound by a cookie.

A legacy ``userId`` must look like the old client's (``user-<digits>-<base36>``),
a namespace the server never issues, so a legacy tab can never pass as a signed
user; opening the stream binds that id to the browser with an HttpOnly,
SameSite=Strict cookie (an HMAC under the server secret, with an expiry).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from datetime import UTC, datetime

from fastapi import Response
from starlette.requests import HTTPConnection

from app.core import CloseCode
from app.core.config import LEGACY_TRANSPORT

from .deps import Services

__all__ = ["COOKIE_PREFIX", "USER_ID", "LegacyWire", "wire_of"]

log = logging.getLogger("lastra.legacy")

#: the old client's ids: ``user-<Date.now()>-<base36>``; never ``u_…``, ``ai…`` or ``system``
USER_ID = re.compile(r"user-[0-9A-Za-z-]{1,59}")
COOKIE_PREFIX = "lastra_legacy_"


class LegacyWire:
    """The mode's switch for one app: on, off, or past ``LASTRA_LEGACY_WIRE_UNTIL``.

    A migration ends: from the day after the date the mode is off, said once in
    the log, and the open legacy streams of this process end at their next idle tick.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self._expired = False

    def on(self) -> bool:
        settings = self.services.settings
        if not settings.legacy_wire:
            return False
        until = settings.legacy_wire_until
        if until is None or datetime.now(UTC).date() <= until:
            return True
        if not self._expired:
            self._expired = True
            log.warning("legacy wire turned itself off: LASTRA_LEGACY_WIRE_UNTIL=%s passed", until)
            for conn in list(self.services.hub.conns.values()):
                if conn.transport == LEGACY_TRANSPORT:
                    conn.close(CloseCode.NORMAL, "legacy-wire-off")
        return False

    # --------------------------------------------------------- cookie binding

    def cookie(self, user_id: str) -> str:
        exp = int(time.time() + self.services.tokens.ttl)
        return f"{exp}.{self._mac(user_id, exp)}"

    def bound(self, request: HTTPConnection, user_id: str) -> bool:
        """This browser opened the stream of ``user_id`` (its cookie is ours and fresh)."""
        value = request.cookies.get(COOKIE_PREFIX + user_id, "")
        exp, _, mac = value.partition(".")
        if not exp.isascii() or not exp.isdigit() or len(exp) > 12 or int(exp) <= time.time():
            return False
        return hmac.compare_digest(mac, self._mac(user_id, int(exp)))

    def any_bound(self, request: HTTPConnection) -> str | None:
        """The first legacy ``userId`` this browser holds a valid cookie for."""
        for name in request.cookies:
            user_id = name[len(COOKIE_PREFIX) :]
            if (
                name.startswith(COOKIE_PREFIX)
                and USER_ID.fullmatch(user_id)
                and self.bound(request, user_id)
            ):
                return user_id
        return None

    def set_cookie(self, request: HTTPConnection, response: Response, user_id: str) -> None:
        response.set_cookie(
            COOKIE_PREFIX + user_id,
            self.cookie(user_id),
            max_age=int(self.services.tokens.ttl),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path="/api",
        )

    def _mac(self, user_id: str, exp: int) -> str:
        return self.services.tokens.sign("legacy-cookie", f"{user_id}|{exp}")


def wire_of(request: HTTPConnection) -> LegacyWire:
    """The app's :class:`LegacyWire` (made on first use)."""
    state = request.app.state
    wire: LegacyWire | None = getattr(state, "legacy_wire", None)
    if wire is None:
        wire = state.legacy_wire = LegacyWire(state.services)
    return wire
