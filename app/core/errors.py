"""Errors split by blame, as h11 does.

``ClientError`` is the client's fault: it becomes an ``error`` event with one of
the protocol's codes (PROTOCOL §8) and the connection stays open. Anything else
raised inside the core is ours: the I/O layer logs it with a trace id and sends
``internal``, never a stack trace.

    Exception
    └── ClientError(code, message, ref)
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["CODES", "HTTP_STATUS", "ClientError", "ErrorCode"]

ErrorCode = Literal[
    "bad_json",
    "unknown_type",
    "invalid",
    "too_large",
    "rate_limited",
    "not_authenticated",
    "forbidden",
    "not_found",
    "ai_unavailable",
    "internal",
]

CODES: Final[frozenset[str]] = frozenset(get_args(ErrorCode))

#: The HTTP status a POST endpoint answers with for each code.
HTTP_STATUS: Final[dict[str, int]] = {
    "bad_json": 400,
    "unknown_type": 400,
    "invalid": 422,
    "too_large": 413,
    "rate_limited": 429,
    "not_authenticated": 401,
    "forbidden": 403,
    "not_found": 404,
    "ai_unavailable": 503,
    "internal": 500,
}


class ClientError(Exception):
    """A message the client got wrong; answered with ``error {code, message, ref}``."""

    def __init__(self, code: ErrorCode, message: str, ref: str | None = None) -> None:
        super().__init__(message)
        self.code: ErrorCode = code
        self.message = message
        self.ref = ref

    def data(self) -> dict[str, object]:
        """The ``error`` event's data (and a POST's error body)."""
        out: dict[str, object] = {"code": self.code, "message": self.message}
        if self.ref is not None:
            out["ref"] = self.ref
        return out
