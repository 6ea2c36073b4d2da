"""The asyncio shell around the sans-I/O core, one module per job.

- :mod:`.connection`: one client's outbound queue and its states (:class:`ConnState`);
- :mod:`.admission`: the connection caps;
- :mod:`.greeting`: ready, replay or history, snapshots (and their shared caches);
- :mod:`.requests`: where an answer goes (a connection or a :class:`Waiter`);
- :mod:`.clock`: ``Chat.tick`` at ``Chat.next_deadline``;
- :mod:`.cluster`: the tail, listen and heartbeat tasks of a shared chat;
- :mod:`.hub`: :class:`Hub`, which carries out the core's outputs;
- :mod:`.session`: one live connection's attach / abort / finish / detach, for
  every transport.
"""

from .bots import BotService
from .connection import Connection, ConnState, InvalidTransition
from .hub import Hub
from .requests import Origin, Waiter
from .session import Session

__all__ = [
    "BotService",
    "ConnState",
    "Connection",
    "Hub",
    "InvalidTransition",
    "Origin",
    "Session",
    "Waiter",
]
