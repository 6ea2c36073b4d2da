"""Parsing client messages (PROTOCOL §2, §4, §8): one decoded envelope → one message or an error."""

from __future__ import annotations

from typing import Any

import pytest

from app.core import ClientError, parse, parse_data
from app.core.errors import CODES, HTTP_STATUS
from app.core.messages import (
    MAX_SDP_BYTES,
    MAX_TEXT_CHARS,
    AiRequest,
    Auth,
    BotToggle,
    Chat,
    Clear,
    MediaState,
    Ping,
    Ready,
    Signal,
    Typing,
)


def env(type_: str, data: Any = None, ref: str | None = "r1") -> dict[str, Any]:
    obj: dict[str, Any] = {"type": type_, "data": {} if data is None else data}
    if ref is not None:
        obj["ref"] = ref
    return obj


def error_of(obj: object) -> ClientError:
    with pytest.raises(ClientError) as info:
        parse(obj)
    return info.value


# ------------------------------------------------------------------ the envelope


@pytest.mark.parametrize("obj", [None, 1, 1.5, True, "chat", [], [{"type": "ping"}]])
def test_a_non_object_is_bad_json(obj: object) -> None:
    err = error_of(obj)
    assert err.code == "bad_json"
    assert err.ref is None


def test_unknown_type_is_unknown_type_and_carries_ref() -> None:
    err = error_of(env("shout", {"text": "hi"}, ref="abc"))
    assert err.code == "unknown_type"
    assert err.ref == "abc"
    assert err.data() == {"code": "unknown_type", "message": err.message, "ref": "abc"}


def test_unknown_type_message_does_not_echo_a_huge_type() -> None:
    err = error_of(env("x" * 10_000))
    assert err.code == "unknown_type"
    assert len(err.message) < 100


@pytest.mark.parametrize("type_", [None, 1, True, ["chat"], {"t": "chat"}])
def test_type_that_is_not_a_string_is_invalid(type_: object) -> None:
    obj = {"type": type_, "data": {}, "ref": "r"}
    if type_ is None:
        del obj["type"]
    err = error_of(obj)
    assert err.code == "invalid"
    assert err.ref == "r"


@pytest.mark.parametrize("data", [[], "x", 3, True])
def test_data_that_is_not_an_object_is_invalid(data: object) -> None:
    err = error_of({"type": "ping", "data": data, "ref": "r"})
    assert err.code == "invalid"
    assert err.ref == "r"


@pytest.mark.parametrize("obj", [{"type": "ping"}, {"type": "ping", "data": None}])
def test_missing_or_null_data_means_empty(obj: dict[str, Any]) -> None:
    assert parse(obj) == Ping(None, None)


@pytest.mark.parametrize("ref", [5, True, ["r"], {"r": 1}, "r" * 65])
def test_bad_ref_is_invalid_without_ref(ref: object) -> None:
    err = error_of({"type": "ping", "data": {}, "ref": ref})
    assert err.code == "invalid"
    assert err.ref is None


def test_ref_of_64_chars_is_kept() -> None:
    assert parse(env("ping", ref="r" * 64)) == Ping(None, "r" * 64)


def test_every_code_has_an_http_status() -> None:
    assert set(HTTP_STATUS) == CODES
    assert HTTP_STATUS["invalid"] == 422
    assert HTTP_STATUS["too_large"] == 413
    assert HTTP_STATUS["rate_limited"] == 429


def test_client_error_data_without_ref_has_no_ref_key() -> None:
    assert ClientError("invalid", "nope").data() == {"code": "invalid", "message": "nope"}


# --------------------------------------------------------------- good messages


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (env("auth", {"token": "t"}), Auth("t", None, None, "r1")),
        (env("auth", {"token": "t", "lastSeq": 7, "epoch": "e"}), Auth("t", 7, "e", "r1")),
        (env("auth", {"token": "t", "lastSeq": 0}), Auth("t", 0, None, "r1")),
        (env("chat", {"text": "  hello  "}), Chat("hello", None, "r1")),
        (env("chat", {"text": "hi", "clientId": "c1"}), Chat("hi", "c1", "r1")),
        (env("typing", {"isTyping": True}), Typing(True, "r1")),
        (env("typing", {"isTyping": False}), Typing(False, "r1")),
        (
            env("webrtc-signal", {"to": "p2", "signal": {"type": "offer", "sdp": "v=0"}}),
            Signal("p2", {"type": "offer", "sdp": "v=0"}, "camera", "r1"),
        ),
        (
            env(
                "webrtc-signal",
                {"to": "p2", "signal": {"type": "answer", "sdp": "v=0"}, "stream": "screen"},
            ),
            Signal("p2", {"type": "answer", "sdp": "v=0"}, "screen", "r1"),
        ),
        (
            env(
                "webrtc-signal",
                {"to": "p2", "signal": {"type": "candidate", "candidate": {"candidate": "a"}}},
            ),
            Signal("p2", {"type": "candidate", "candidate": {"candidate": "a"}}, "camera", "r1"),
        ),
        (
            env("webrtc-signal", {"to": "p2", "signal": {"type": "candidate", "candidate": None}}),
            Signal("p2", {"type": "candidate", "candidate": None}, "camera", "r1"),
        ),
        (
            env("webrtc-signal", {"to": "p2", "signal": {"type": "bye"}, "stream": None}),
            Signal("p2", {"type": "bye"}, "camera", "r1"),
        ),
        (env("media-state", {"camera": True}), MediaState(True, None, None, "r1")),
        (
            env("media-state", {"camera": False, "mic": True, "screen": False}),
            MediaState(False, True, False, "r1"),
        ),
        (env("bot-toggle", {"bot": "sol", "enabled": False}), BotToggle("sol", False, "r1")),
        (env("clear"), Clear("r1")),
        (env("clear", {"anything": 1}), Clear("r1")),
        (env("ai-request", {"prompt": " why? "}), AiRequest("why?", None, "r1")),
        (env("ai-request", {"prompt": "why", "bot": "pip"}), AiRequest("why", "pip", "r1")),
        (env("ping"), Ping(None, "r1")),
        (env("ping", {"t": 12.5}), Ping(12.5, "r1")),
        (env("ping", {"t": 3}), Ping(3, "r1")),
        (env("ping", {"t": "abc"}), Ping("abc", "r1")),
        (env("ready"), Ready("r1")),
        (env("chat", {"text": "no ref"}, ref=None), Chat("no ref", None, None)),
    ],
)
def test_good_messages_parse(obj: dict[str, Any], expected: object) -> None:
    assert parse(obj) == expected


def test_every_message_knows_its_wire_type() -> None:
    samples = {
        "auth": {"token": "t"},
        "chat": {"text": "x"},
        "typing": {"isTyping": True},
        "webrtc-signal": {"to": "p", "signal": {"type": "bye"}},
        "media-state": {"mic": True},
        "bot-toggle": {"bot": "sol", "enabled": True},
        "clear": {},
        "ai-request": {"prompt": "p"},
        "ping": {},
        "ready": {},
    }
    for type_, data in samples.items():
        assert parse(env(type_, data)).type == type_


def test_signal_drops_unknown_keys_including_a_forged_from() -> None:
    msg = parse(
        env(
            "webrtc-signal",
            {
                "to": "p2",
                "from": "forged",
                "fromUser": {"userId": "u-eve"},
                "signal": {"type": "offer", "sdp": "v=0", "from": "forged", "extra": [1]},
            },
        )
    )
    assert isinstance(msg, Signal)
    assert msg.signal == {"type": "offer", "sdp": "v=0"}


def test_parse_data_is_parse_without_the_envelope() -> None:
    assert parse_data("chat", {"text": "hi", "clientId": "c"}, "r") == Chat("hi", "c", "r")
    with pytest.raises(ClientError) as info:
        parse_data("nope", {}, "r")
    assert (info.value.code, info.value.ref) == ("unknown_type", "r")


# -------------------------------------------------------------- field errors

STR_VALUES_THAT_ARE_NOT_STR = [1, 1.5, True, ["x"], {"x": 1}]
BOOL_VALUES_THAT_ARE_NOT_BOOL = [1, 0, "true", 1.0, [True], {"v": True}]

# (type, valid data, field to spoil, wrong values)
FIELD_CASES: list[tuple[str, dict[str, Any], str, list[Any]]] = [
    ("auth", {"token": "t"}, "token", STR_VALUES_THAT_ARE_NOT_STR),
    ("auth", {"token": "t"}, "lastSeq", [True, False, 1.5, "3", [3], {"n": 3}]),
    ("auth", {"token": "t"}, "epoch", STR_VALUES_THAT_ARE_NOT_STR),
    ("chat", {"text": "hi"}, "text", STR_VALUES_THAT_ARE_NOT_STR),
    ("chat", {"text": "hi"}, "clientId", STR_VALUES_THAT_ARE_NOT_STR),
    ("typing", {"isTyping": True}, "isTyping", BOOL_VALUES_THAT_ARE_NOT_BOOL),
    ("webrtc-signal", {"to": "p", "signal": {"type": "bye"}}, "to", STR_VALUES_THAT_ARE_NOT_STR),
    ("webrtc-signal", {"to": "p", "signal": {"type": "bye"}}, "signal", [1, "bye", True, []]),
    ("webrtc-signal", {"to": "p", "signal": {"type": "bye"}}, "stream", ["video", "", 1, True]),
    ("media-state", {"camera": True}, "camera", BOOL_VALUES_THAT_ARE_NOT_BOOL),
    ("media-state", {"mic": True}, "mic", BOOL_VALUES_THAT_ARE_NOT_BOOL),
    ("media-state", {"screen": True}, "screen", BOOL_VALUES_THAT_ARE_NOT_BOOL),
    ("bot-toggle", {"bot": "sol", "enabled": True}, "bot", STR_VALUES_THAT_ARE_NOT_STR),
    ("bot-toggle", {"bot": "sol", "enabled": True}, "enabled", BOOL_VALUES_THAT_ARE_NOT_BOOL),
    ("ai-request", {"prompt": "p"}, "prompt", STR_VALUES_THAT_ARE_NOT_STR),
    ("ai-request", {"prompt": "p"}, "bot", STR_VALUES_THAT_ARE_NOT_STR),
    ("ping", {}, "t", [True, False, [1], {"t": 1}, "t" * 65]),
]


@pytest.mark.parametrize(
    ("type_", "data", "name", "value"),
    [
        pytest.param(t, d, n, v, id=f"{t}.{n}={v!r}"[:60])
        for t, d, n, values in FIELD_CASES
        for v in values
    ],
)
def test_wrong_field_type_is_invalid_with_ref(
    type_: str, data: dict[str, Any], name: str, value: Any
) -> None:
    parse(env(type_, data))  # the unspoilt message is fine
    err = error_of(env(type_, {**data, name: value}, ref="spoilt"))
    assert err.code == "invalid"
    assert err.ref == "spoilt"


@pytest.mark.parametrize(
    ("type_", "data"),
    [
        ("auth", {}),
        ("auth", {"token": None}),
        ("chat", {}),
        ("chat", {"clientId": "c"}),
        ("typing", {}),
        ("typing", {"isTyping": None}),
        ("webrtc-signal", {"signal": {"type": "bye"}}),
        ("webrtc-signal", {"to": "p"}),
        ("media-state", {}),
        ("media-state", {"camera": None, "mic": None}),
        ("bot-toggle", {"enabled": True}),
        ("bot-toggle", {"bot": "sol"}),
        ("ai-request", {}),
    ],
)
def test_missing_required_field_is_invalid_with_ref(type_: str, data: dict[str, Any]) -> None:
    err = error_of(env(type_, data, ref="missing"))
    assert (err.code, err.ref) == ("invalid", "missing")


@pytest.mark.parametrize(
    ("type_", "data", "code"),
    [
        ("auth", {"token": "t", "lastSeq": -1}, "invalid"),
        ("chat", {"text": ""}, "invalid"),
        ("chat", {"text": " \n\t "}, "invalid"),
        ("chat", {"text": "hi", "clientId": ""}, "invalid"),
        ("chat", {"text": "hi", "clientId": "c" * 65}, "invalid"),
        ("chat", {"text": "x" * (MAX_TEXT_CHARS + 1)}, "too_large"),
        ("chat", {"text": "é" * (MAX_TEXT_CHARS + 1)}, "too_large"),
        ("ai-request", {"prompt": "   "}, "invalid"),
        ("ai-request", {"prompt": "x" * 4001}, "too_large"),
        ("webrtc-signal", {"to": "", "signal": {"type": "bye"}}, "invalid"),
        ("webrtc-signal", {"to": "p" * 65, "signal": {"type": "bye"}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "hello"}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "offer"}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "offer", "sdp": ""}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "answer", "sdp": 5}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "candidate"}}, "invalid"),
        ("webrtc-signal", {"to": "p", "signal": {"type": "candidate", "candidate": 5}}, "invalid"),
        (
            "webrtc-signal",
            {"to": "p", "signal": {"type": "candidate", "candidate": "a" * 5000}},
            "too_large",
        ),
    ],
)
def test_bad_values_get_the_right_code_with_ref(
    type_: str, data: dict[str, Any], code: str
) -> None:
    err = error_of(env(type_, data, ref="bad"))
    assert (err.code, err.ref) == (code, "bad")


def test_text_limit_is_counted_after_trimming_in_characters() -> None:
    exact = "x" * MAX_TEXT_CHARS
    assert parse(env("chat", {"text": exact})) == Chat(exact, None, "r1")
    padded = "   " + exact + "\n\n"
    assert parse(env("chat", {"text": padded})) == Chat(exact, None, "r1")
    wide = "🙂" * MAX_TEXT_CHARS  # 4 UTF-8 bytes each, still 4000 characters
    assert parse(env("chat", {"text": wide})) == Chat(wide, None, "r1")


def test_client_id_of_64_chars_is_accepted() -> None:
    assert parse(env("chat", {"text": "hi", "clientId": "c" * 64})) == Chat("hi", "c" * 64, "r1")


@pytest.mark.parametrize("kind", ["offer", "answer"])
def test_sdp_over_64_kib_is_too_large(kind: str) -> None:
    ok = "a" * MAX_SDP_BYTES
    msg = parse(env("webrtc-signal", {"to": "p", "signal": {"type": kind, "sdp": ok}}))
    assert isinstance(msg, Signal)
    assert msg.signal["sdp"] == ok
    err = error_of(env("webrtc-signal", {"to": "p", "signal": {"type": kind, "sdp": ok + "a"}}))
    assert (err.code, err.ref) == ("too_large", "r1")


def test_sdp_limit_counts_utf8_bytes_not_characters() -> None:
    sdp = "é" * (MAX_SDP_BYTES // 2 + 1)  # fewer characters than the limit, more bytes
    err = error_of(env("webrtc-signal", {"to": "p", "signal": {"type": "offer", "sdp": sdp}}))
    assert err.code == "too_large"


@pytest.mark.parametrize(
    ("field_", "value"),
    [("to", True), ("to", 0)],
)
def test_signal_bool_or_int_peer_id_is_invalid(field_: str, value: object) -> None:
    err = error_of(env("webrtc-signal", {field_: value, "signal": {"type": "bye"}}))
    assert err.code == "invalid"


@pytest.mark.parametrize("stype", [[], {}, ["offer"]])
def test_unhashable_signal_type_is_invalid(stype: object) -> None:
    err = error_of(env("webrtc-signal", {"to": "p", "signal": {"type": stype}}))
    assert (err.code, err.ref) == ("invalid", "r1")


@pytest.mark.parametrize("stream", [[], {}, ["screen"]])
def test_unhashable_stream_is_invalid(stream: object) -> None:
    err = error_of(env("webrtc-signal", {"to": "p", "signal": {"type": "bye"}, "stream": stream}))
    assert (err.code, err.ref) == ("invalid", "r1")


def test_long_bot_name_is_cut_to_64() -> None:
    msg = parse(env("bot-toggle", {"bot": "b" * 500, "enabled": True}))
    assert isinstance(msg, BotToggle)
    assert msg.bot == "b" * 64
