"""uvicorn's protocols, offering direct writes (:mod:`app.transports.flush`).

This module and the two protocols it names (:mod:`.uvicorn_ws`,
:mod:`.uvicorn_http`) depend on uvicorn's private classes and attributes, so they
are kept apart from the rest: nothing else in ``app`` imports uvicorn's internals,
and ``python -m app`` installs these protocols only for the uvicorn minors in
:data:`TESTED_MINORS` (otherwise it serves through uvicorn's stock protocols and
the adapters use plain ASGI sends). :data:`PRIVATE_SURFACE` names every private
class, method and attribute touched here; ``tests/test_uvicorn_canary.py`` checks
each against the installed uvicorn and fails loudly when one moved.

:class:`LastraWebSocketProtocol` is uvicorn's sans-I/O WebSocket protocol that
puts itself in the ASGI scope under ``extensions[DIRECT]``, shaped as
:class:`~app.transports.flush.DirectSocket`. :class:`LastraHttpProtocol` does
the same for ``GET`` requests with an :class:`HttpLink`
(:class:`~app.transports.flush.DirectStream`), through which the SSE stream
writes its chunks straight to the transport.
"""

from __future__ import annotations

from typing import Final

from .uvicorn_http import HttpLimits, HttpLink, LastraHttpProtocol
from .uvicorn_ws import UVICORN_STATE, LastraWebSocketProtocol

__all__ = [
    "PRIVATE_SURFACE",
    "TESTED_MINORS",
    "HttpLimits",
    "HttpLink",
    "LastraHttpProtocol",
    "LastraWebSocketProtocol",
]

#: uvicorn minors this module was tested on (pyproject.toml's range says the same)
TESTED_MINORS: Final = ("0.55",)

#: every private piece of uvicorn used here: (module, class, {name: shape}), where a
#: shape is a method's parameter list (a method called or overridden) or "attr"
#: (an instance attribute read or written)
PRIVATE_SURFACE: Final[tuple[tuple[str, str, dict[str, str]], ...]] = (
    (
        "uvicorn.protocols.websockets.websockets_sansio_impl",
        "WebSocketsSansIOProtocol",
        {
            "__init__": "(self, config, server_state, app_state, _loop)",
            "handle_connect": "(self, event)",
            "send_receive_event_to_app": "(self)",
            "handle_parser_exception": "(self)",
            "send": "(self, message)",
            "resume_writing": "(self)",
            "receive": "(self)",
            # all read or written, and all kept in slots of ours (uvicorn_ws.UVICORN_STATE)
            **dict.fromkeys(UVICORN_STATE, "attr"),
        },
    ),
    (
        "uvicorn.protocols.http.httptools_impl",
        "HttpToolsProtocol",
        {
            "connection_made": "(self, transport)",
            "data_received": "(self, data)",
            "on_header": "(self, name, value)",
            "on_headers_complete": "(self)",
            "on_body": "(self, body)",
            "on_message_complete": "(self)",
            "on_response_complete": "(self)",
            "resume_writing": "(self)",
            "connection_lost": "(self, exc)",
            "cycle": "attr",
            "scope": "attr",
            "transport": "attr",
            "parser": "attr",
            "loop": "attr",
        },
    ),
    (
        "uvicorn.protocols.http.httptools_impl",
        "RequestResponseCycle",
        {
            "scope": "attr",
            "disconnected": "attr",
            "response_started": "attr",
            "response_complete": "attr",
            "chunked_encoding": "attr",
            "flow": "attr",
        },
    ),
    ("uvicorn.protocols.http.flow_control", "FlowControl", {"write_paused": "attr"}),
)
