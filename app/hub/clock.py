"""Time as an input: call :meth:`Chat.tick` at :meth:`Chat.next_deadline`, not on a poll.

Any call into the core may bring its next deadline closer (a typing start, a
presence batch opening). Instead of asking after every message, the hub
:meth:`~Clock.poke`\\ s the clock; the clock looks once per event-loop turn and
moves its single timer earlier when needed. A timer that fires late is
harmless (the core expires whatever is due), one that fires early only ticks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from app.core import Chat, Output

__all__ = ["Clock"]

log = logging.getLogger("lastra.hub")

#: the shortest wait between ticks: a deadline that is already due does not spin
MIN_WAIT = 0.005


class Clock:
    """One timer handle at the core's next deadline; ``carry_out`` takes the tick's outputs."""

    def __init__(self, core: Chat, carry_out: Callable[[list[Output]], object]) -> None:
        self.core = core
        self.carry_out = carry_out
        self._handle: asyncio.TimerHandle | None = None
        self._when: float | None = None
        self._poked = False
        self._stopped = False

    def poke(self) -> None:
        """The core was called: look at its deadline again when this loop turn ends."""
        if not self._poked and not self._stopped:
            self._poked = True
            asyncio.get_running_loop().call_soon(self._look)

    def _look(self) -> None:
        self._poked = False
        self.arm()

    def arm(self) -> None:
        """Schedule the tick at the core's next deadline, if sooner than the one set."""
        deadline = self.core.next_deadline()
        if deadline is None or self._stopped:
            return
        if self._when is not None and self._when <= deadline:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._when = deadline
        wait = max(MIN_WAIT, deadline - time.monotonic())
        self._handle = asyncio.get_running_loop().call_later(wait, self._fire)

    def _fire(self) -> None:
        self._handle = self._when = None
        try:
            self.carry_out(self.core.tick(time.monotonic()))
        except Exception:
            log.exception("timer tick failed")
        self.arm()

    def stop(self) -> None:
        self._stopped = True
        if self._handle is not None:
            self._handle.cancel()
            self._handle = self._when = None
