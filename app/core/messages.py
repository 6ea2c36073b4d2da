"""Client → server messages (PROTOCOL §4) as small frozen dataclasses, and their parser.

The transports decode bytes into Python objects; :func:`parse` turns one decoded
envelope into exactly one of these messages or raises :class:`ClientError` with
the code a client author expects. Nothing here touches the network.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from .errors import ClientError
from .reports import CallOutcome, DeliveryReport, parse_call_outcome, parse_delivery_report

__all__ = [
    "MAX_PROMPT_CHARS",
    "MAX_REF_CHARS",
    "MAX_SDP_BYTES",
    "MAX_TEXT_CHARS",
    "AiRequest",
    "Auth",
    "BotToggle",
    "CallOutcome",
    "Chat",
    "Clear",
    "ClientMessage",
    "DeliveryReport",
    "MediaState",
    "Ping",
    "PresencePage",
    "Ready",
    "Signal",
    "Typing",
    "parse",
    "parse_data",
    "parse_ref",
]

MAX_TEXT_CHARS: Final = 4000
MAX_PROMPT_CHARS: Final = 4000
MAX_REF_CHARS: Final = 64
MAX_CLIENT_ID_CHARS: Final = 64
MAX_CURSOR_CHARS: Final = 256
MAX_SDP_BYTES: Final = 64 * 1024
MAX_CANDIDATE_CHARS: Final = 4096
SIGNAL_TYPES: Final = frozenset({"offer", "answer", "candidate", "bye"})
STREAMS: Final = frozenset({"camera", "screen"})


@dataclass(frozen=True, slots=True)
class Auth:
    type: ClassVar[str] = "auth"
    token: str
    last_seq: int | None = None
    epoch: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Chat:
    type: ClassVar[str] = "chat"
    text: str
    client_id: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Typing:
    type: ClassVar[str] = "typing"
    is_typing: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Signal:
    type: ClassVar[str] = "webrtc-signal"
    to: str
    signal: dict[str, Any]
    stream: str = "camera"
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class MediaState:
    type: ClassVar[str] = "media-state"
    camera: bool | None = None
    mic: bool | None = None
    screen: bool | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class BotToggle:
    type: ClassVar[str] = "bot-toggle"
    bot: str
    enabled: bool
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Clear:
    type: ClassVar[str] = "clear"
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class AiRequest:
    type: ClassVar[str] = "ai-request"
    prompt: str
    bot: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    type: ClassVar[str] = "ping"
    t: Any = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class Ready:
    type: ClassVar[str] = "ready"
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class PresencePage:
    """The next page of a large room's presence list, after ``cursor`` (None: from the start)."""

    type: ClassVar[str] = "presence-page"
    cursor: str | None = None
    ref: str | None = None


ClientMessage = (
    Auth
    | Chat
    | Typing
    | Signal
    | MediaState
    | BotToggle
    | Clear
    | AiRequest
    | Ping
    | Ready
    | PresencePage
    | CallOutcome
    | DeliveryReport
)


def parse_ref(obj: dict[str, Any]) -> str | None:
    """The ``ref`` of an envelope (WebSocket) or a POST body: the one rule for both."""
    ref = obj.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str) or len(ref) > MAX_REF_CHARS:
        raise ClientError("invalid", f"ref must be a string of at most {MAX_REF_CHARS} characters")
    return ref


def _field(
    data: dict[str, Any], name: str, kind: type, ref: str | None, *, required: bool = True
) -> Any:
    value = data.get(name)
    if value is None:
        if required:
            raise ClientError("invalid", f"data.{name} is required", ref)
        return None
    # bool is an int subclass: never accept True as a number or 1 as a bool.
    if (kind is int and isinstance(value, bool)) or not isinstance(value, kind):
        raise ClientError("invalid", f"data.{name} must be {kind.__name__}", ref)
    return value


def parse(obj: object) -> ClientMessage:
    """Parse one decoded envelope ``{"type", "data", "ref"?}``.

    Raises :class:`ClientError` (``invalid`` / ``unknown_type`` / ``too_large``)
    carrying the message's ``ref`` whenever it could be read.
    """
    if not isinstance(obj, dict):
        raise ClientError("bad_json", "a message must be a JSON object {type, data}")
    ref = parse_ref(obj)
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise ClientError("invalid", "type must be a string", ref)
    data = obj.get("data", {})
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ClientError("invalid", "data must be an object", ref)
    return parse_data(kind, data, ref)


def parse_data(kind: str, data: dict[str, Any], ref: str | None) -> ClientMessage:
    """Parse the ``data`` of a message whose type is already known (POST endpoints)."""
    parser = _PARSERS.get(kind)
    if parser is None:
        raise ClientError("unknown_type", f"unknown message type {kind[:40]!r}", ref)
    return parser(data, ref)


def _auth(data: dict[str, Any], ref: str | None) -> Auth:
    token = _field(data, "token", str, ref)
    last_seq = _field(data, "lastSeq", int, ref, required=False)
    epoch = _field(data, "epoch", str, ref, required=False)
    if last_seq is not None and last_seq < 0:
        raise ClientError("invalid", "data.lastSeq must be >= 0", ref)
    return Auth(token, last_seq, epoch, ref)


def _chat(data: dict[str, Any], ref: str | None) -> Chat:
    text = _field(data, "text", str, ref).strip()
    if not text:
        raise ClientError("invalid", "data.text must not be empty", ref)
    if len(text) > MAX_TEXT_CHARS:
        raise ClientError("too_large", f"data.text is over {MAX_TEXT_CHARS} characters", ref)
    client_id = _field(data, "clientId", str, ref, required=False)
    if client_id is not None and not 0 < len(client_id) <= MAX_CLIENT_ID_CHARS:
        raise ClientError(
            "invalid", f"data.clientId must be 1-{MAX_CLIENT_ID_CHARS} characters", ref
        )
    return Chat(text, client_id, ref)


def _typing(data: dict[str, Any], ref: str | None) -> Typing:
    return Typing(_field(data, "isTyping", bool, ref), ref)


def _signal(data: dict[str, Any], ref: str | None) -> Signal:
    to = _field(data, "to", str, ref)
    if not 0 < len(to) <= 64:
        raise ClientError("invalid", "data.to must be a peerId", ref)
    signal = _field(data, "signal", dict, ref)
    stype = signal.get("type")
    if not isinstance(stype, str) or stype not in SIGNAL_TYPES:
        raise ClientError(
            "invalid", "data.signal.type must be offer, answer, candidate or bye", ref
        )
    clean: dict[str, Any] = {"type": stype}
    if stype in ("offer", "answer"):
        sdp = signal.get("sdp")
        if not isinstance(sdp, str) or not sdp:
            raise ClientError("invalid", "data.signal.sdp is required for offer/answer", ref)
        if len(sdp.encode()) > MAX_SDP_BYTES:
            raise ClientError("too_large", "data.signal.sdp is over 64 KiB", ref)
        clean["sdp"] = sdp
    elif stype == "candidate":
        if "candidate" not in signal:
            raise ClientError("invalid", "data.signal.candidate is required", ref)
        cand = signal["candidate"]
        if cand is not None and not isinstance(cand, str | dict):
            raise ClientError(
                "invalid", "data.signal.candidate must be an object, string or null", ref
            )
        if cand is not None and len(str(cand)) > MAX_CANDIDATE_CHARS:
            raise ClientError("too_large", "data.signal.candidate is too large", ref)
        clean["candidate"] = cand
    stream = data.get("stream", "camera")
    if stream is None:
        stream = "camera"
    if not isinstance(stream, str) or stream not in STREAMS:
        raise ClientError("invalid", "data.stream must be camera or screen", ref)
    return Signal(to, clean, stream, ref)


def _media(data: dict[str, Any], ref: str | None) -> MediaState:
    values = {k: _field(data, k, bool, ref, required=False) for k in ("camera", "mic", "screen")}
    if all(v is None for v in values.values()):
        raise ClientError("invalid", "data needs at least one of camera, mic, screen", ref)
    return MediaState(values["camera"], values["mic"], values["screen"], ref)


def _bot_toggle(data: dict[str, Any], ref: str | None) -> BotToggle:
    return BotToggle(_field(data, "bot", str, ref)[:64], _field(data, "enabled", bool, ref), ref)


def _clear(data: dict[str, Any], ref: str | None) -> Clear:
    return Clear(ref)


def _ai_request(data: dict[str, Any], ref: str | None) -> AiRequest:
    prompt = _field(data, "prompt", str, ref).strip()
    if not prompt:
        raise ClientError("invalid", "data.prompt must not be empty", ref)
    if len(prompt) > MAX_PROMPT_CHARS:
        raise ClientError("too_large", f"data.prompt is over {MAX_PROMPT_CHARS} characters", ref)
    bot = _field(data, "bot", str, ref, required=False)
    return AiRequest(prompt, bot, ref)


def _ping(data: dict[str, Any], ref: str | None) -> Ping:
    t = data.get("t")
    if t is not None and (isinstance(t, bool) or not isinstance(t, int | float | str)):
        raise ClientError("invalid", "data.t must be a number or string", ref)
    if isinstance(t, str) and len(t) > 64:
        raise ClientError("invalid", "data.t is too long", ref)
    return Ping(t, ref)


def _ready(data: dict[str, Any], ref: str | None) -> Ready:
    return Ready(ref)


def _presence_page(data: dict[str, Any], ref: str | None) -> PresencePage:
    cursor = _field(data, "cursor", str, ref, required=False)
    if cursor is not None and not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise ClientError("invalid", f"data.cursor must be 1-{MAX_CURSOR_CHARS} characters", ref)
    return PresencePage(cursor, ref)


_PARSERS: Final[dict[str, Callable[[dict[str, Any], str | None], ClientMessage]]] = {
    "auth": _auth,
    "chat": _chat,
    "typing": _typing,
    "webrtc-signal": _signal,
    "media-state": _media,
    "bot-toggle": _bot_toggle,
    "clear": _clear,
    "ai-request": _ai_request,
    "ping": _ping,
    "ready": _ready,
    "presence-page": _presence_page,
    "call-outcome": parse_call_outcome,
    "delivery-report": parse_delivery_report,
}
