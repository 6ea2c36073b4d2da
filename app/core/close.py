"""Close codes: every code the server sends or records, named once.

WebSocket close frames carry them; an SSE stream's closing comment names them
too (``: closed 4409 slow-consumer``), and metrics label closes by them.
``IntEnum``: a member is the integer on the wire.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["CloseCode"]


class CloseCode(IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    NO_STATUS = 1005  #: the client's close frame carried no code
    ABNORMAL = 1006  #: the connection dropped without a close frame
    PROTOCOL_ERROR = 1002  #: a frame broke RFC 6455 (reserved bits, opcodes, masking)
    INVALID_DATA = 1007  #: a text message that is not UTF-8
    INVALID = 1008  #: an ``auth`` frame with a token but a bad field (lastSeq, epoch)
    TOO_BIG = 1009
    INTERNAL = 1011
    RESTART = 1012  #: the server restarts (or history was reset): resume elsewhere
    TRY_LATER = 1013  #: full, or the store is unavailable: retry with backoff
    UNAUTHENTICATED = 4401
    FORBIDDEN = 4403  #: transport disabled for this user, origin or host not allowed
    HEARTBEAT = 4408  #: no frame within the heartbeat timeout
    SLOW = 4409  #: the outbound queue overflowed: a slow consumer resumes on reconnect
