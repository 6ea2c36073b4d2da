"""The sans-I/O chat core: plain Python, standard library only.

Inputs are parsed client messages, connections and the time; outputs are
``Output`` lists (:mod:`app.core.outputs`). Transports and backends import this
package; it imports none of them.
"""

from .chat import Bot, Chat, ChatConfig, Identity
from .close import CloseCode
from .errors import ClientError
from .facts import Fact, PeerCard
from .messages import ClientMessage, parse, parse_data
from .outputs import (
    Append,
    AskBot,
    Broadcast,
    Close,
    Draft,
    Event,
    Output,
    Publish,
    Reply,
    SaveBotState,
    Send,
    Tally,
)
from .presence import Peer
from .rollout import Assignment, Rollout

__all__ = [
    "Append",
    "AskBot",
    "Assignment",
    "Bot",
    "Broadcast",
    "Chat",
    "ChatConfig",
    "ClientError",
    "ClientMessage",
    "Close",
    "CloseCode",
    "Draft",
    "Event",
    "Fact",
    "Identity",
    "Output",
    "Peer",
    "PeerCard",
    "Publish",
    "Reply",
    "Rollout",
    "SaveBotState",
    "Send",
    "Tally",
    "parse",
    "parse_data",
]
