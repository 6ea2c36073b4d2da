"""Property-based fuzz of everything a client can send (issue 9), with hypothesis.

One server, rate limits lifted so the fuzz reaches the handlers. Targets:

- every client message type over WebSocket: envelopes whose fields are sometimes right,
  sometimes any JSON at all, plus extra keys, odd refs and odd ``data``;
- the first frame (``auth``) of a fresh WebSocket;
- raw garbage frames: bytes (binary frames), text, JSON that is not an envelope;
- every ``POST`` body of every endpoint (the nine message endpoints and ``/api/session``),
  with good, missing and bad tokens and own, foreign and unknown ``X-Lastra-Peer``;
- the SSE stream's resume inputs (``Last-Event-ID``, ``lastSeq``, ``epoch``).

Properties: never a 5xx, never an ``internal`` error, every error code is one of the
protocol's, a WebSocket stays open after any frame under the size limit (each frame is
followed by a ``ping`` whose ``pong`` proves the connection alive and the frame handled),
and at the end the server is still healthy, ready, and chatting, with no error in its log.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.clients import POST_ENDPOINTS, running_server, session
from support.server import Server
from test_ops_support import CODES, mint, no_stack_trace, scrape, value
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

FUZZ = settings(
    max_examples=200,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
FEW = settings(FUZZ, max_examples=50)

BOTS = ["sol", "pip", "noor", "nobody", ""]
SELF, OTHER = "<self-peer>", "<other-peer>"  # replaced by real peer ids when sent

# ------------------------------------------------------------------ strategies

TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)
JSON: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: beyond 64 bits is not JSON the server can read
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(TEXT, kids, max_size=3),
    max_leaves=8,
)


def either(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a plausible value, sometimes any JSON at all."""
    return st.one_of(valid, valid, JSON)


LONG_TEXT = st.sampled_from(
    ["x" * 4000, "y" * 4001, "€" * 4000, "   ", "\u200b", "@pip hi", "@sol"]
)
PEER = st.sampled_from([SELF, OTHER, "p_nobody", "", "x" * 65])
FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "chat": {"text": TEXT | LONG_TEXT, "clientId": st.text(max_size=70)},
    "typing": {"isTyping": st.booleans()},
    "webrtc-signal": {
        "to": PEER,
        "signal": st.fixed_dictionaries(
            {"type": either(st.sampled_from(["offer", "answer", "candidate", "bye", "hello"]))},
            optional={
                "sdp": either(st.text(max_size=100)),
                "candidate": either(st.text(max_size=50) | st.dictionaries(TEXT, JSON, max_size=2)),
                "from": PEER,
            },
        ),
        "stream": st.sampled_from(["camera", "screen", "tv"]),
        "from": PEER,
    },
    "media-state": {"camera": st.booleans(), "mic": st.booleans(), "screen": st.booleans()},
    "bot-toggle": {"bot": st.sampled_from(BOTS), "enabled": st.booleans()},
    "clear": {},
    "ai-request": {"prompt": TEXT | LONG_TEXT, "bot": st.sampled_from(BOTS)},
    "ping": {"t": st.integers(-(2**53), 2**53) | st.floats(allow_nan=False) | st.text(max_size=70)},
    "ready": {},
    "presence-page": {"cursor": st.text(max_size=300)},
    "call-outcome": {
        "peerId": PEER,
        "stream": st.sampled_from(["camera", "screen", "tv"]),
        "outcome": st.sampled_from(["connected", "failed", "meh"]),
        "connectMs": either(st.integers(-5, 700_000)),
        "route": st.sampled_from(["direct", "relayed", "unknown", "pigeon"]),
        "iceRestarts": either(st.integers(-1, 1001)),
        "remoteTransport": st.sampled_from(["ws", "sse", "smoke"]),
    },
    "delivery-report": {
        "sendToAckMs": either(st.lists(st.integers(-1, 700_000) | st.floats(), max_size=70)),
        "commitToReceiveMs": either(st.lists(st.integers(0, 600_000), max_size=3)),
        "resumes": either(
            st.lists(
                st.fixed_dictionaries(
                    {"recovered": either(st.booleans())},
                    optional={"replayed": either(st.integers(-1, 10**6)), "gaps": JSON},
                ),
                max_size=18,
            )
        ),
    },
    "auth": {"token": st.sampled_from(["good", "junk"]), "lastSeq": st.integers(-1, 10**6)},
}
TYPES = [t for t in FIELDS if t != "auth"] + ["auth"]


def data_for(kind: str) -> st.SearchStrategy[Any]:
    fields = FIELDS[kind]
    base = st.fixed_dictionaries({}, optional={k: either(v) for k, v in fields.items()})
    extra = st.dictionaries(st.text(max_size=8), JSON, max_size=2)
    return st.tuples(base, extra).map(lambda t: {**t[1], **t[0]})


SHORT_REF = st.text(max_size=64)
REF = st.one_of(SHORT_REF, SHORT_REF, SHORT_REF, st.text(min_size=65, max_size=80), JSON)


def plausible(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Every field present with a plausible value: mostly messages the server accepts."""
    return st.fixed_dictionaries(dict(FIELDS[kind]))


def envelope(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    return st.one_of(
        st.fixed_dictionaries(
            {"type": st.just(kind), "data": plausible(kind)}, optional={"ref": SHORT_REF}
        ),
        st.fixed_dictionaries(
            {"type": st.just(kind)},
            optional={"data": st.one_of(data_for(kind), data_for(kind), JSON), "ref": REF},
        ),
    )


GARBAGE: st.SearchStrategy[str | bytes] = st.one_of(
    st.binary(max_size=300),
    TEXT,
    JSON.map(json.dumps),
    st.fixed_dictionaries({"type": TEXT | JSON}, optional={"data": JSON, "ref": REF}).map(
        json.dumps
    ),
    st.sampled_from(
        [
            "",
            "{",
            "[" * 2000 + "]" * 2000,
            '{"type": "chat", "data": {"text": "a"}, "type": "ping"}',
            '{"type": "ping", "data": {"t": 1e999}}',
            '{"type": "ping", "data": {"t": NaN}}',
            '{"type": "chat", "data": {"text": "\\ud800"}}',
            '{"type": "ping"}\x00',
            "\ufeff" + '{"type": "ping"}',
        ]
    ),
)

# ------------------------------------------------------------------ the rig


@dataclass
class Rig:
    srv: Server
    http: httpx.Client
    token: str  # the fuzzing user's
    other_token: str
    ws: ClientConnection
    peer: str  # the fuzzing user's WebSocket peer
    other_peer: str  # another user's WebSocket peer
    other_ws: ClientConnection
    probes: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # error code → times seen
    accepted: int = 0  # acks and 200s: the fuzz also reaches the success paths

    def fill(self, raw: str | bytes) -> str | bytes:
        if isinstance(raw, bytes):
            return raw
        return raw.replace(SELF, self.peer).replace(OTHER, self.other_peer)

    def exchange(self, frame: str | bytes) -> list[dict[str, Any]]:
        """Send ``frame``, then a ping; return everything received up to its pong."""
        self.probes += 1
        ref = f"probe-{self.probes}"
        try:
            self.ws.send(self.fill(frame))
            self.ws.send(json.dumps({"type": "ping", "data": {}, "ref": ref}))
            got = []
            while True:
                env = json.loads(self.ws.recv(timeout=10))
                got.append(env)
                if env.get("type") == "pong" and env.get("data", {}).get("ref") == ref:
                    return got
        except ConnectionClosed as exc:
            raise AssertionError(
                f"the server closed the WebSocket ({exc}) after {frame!r:.300}"
            ) from exc
        except TimeoutError:
            raise AssertionError(f"no pong within 10 s after {frame!r:.300}") from None

    def check_events(self, events: list[dict[str, Any]], what: object) -> None:
        for env in events:
            if env.get("type") == "error":
                code = env["data"].get("code")
                assert code in CODES, (code, what)
                assert code != "internal", f"internal error for {what!r:.300}: {env}"
                assert no_stack_trace(json.dumps(env)), env
                self.errors[code] = self.errors.get(code, 0) + 1
            elif env.get("type") == "ack":
                self.accepted += 1

    def check_response(self, resp: httpx.Response, what: object) -> None:
        assert resp.status_code < 500 or resp.status_code == 503, (
            resp.status_code,
            resp.text,
            what,
        )
        assert no_stack_trace(resp.text), resp.text
        body = resp.json()
        assert isinstance(body, dict), body
        if resp.status_code != 200:
            assert body.get("code") in CODES, (body, what)
            assert body["code"] != "internal", f"internal error for {what!r:.300}: {body}"
            if resp.status_code == 503:  # only a busy/unavailable bot or a refused stream
                assert body["code"] in ("ai_unavailable", "rate_limited"), body
            self.errors[body["code"]] = self.errors.get(body["code"], 0) + 1
        else:
            self.accepted += 1


def open_ws(stack: contextlib.ExitStack, srv: Server, token: str) -> tuple[ClientConnection, str]:
    ws = stack.enter_context(
        connect(
            srv.ws, proxy=None, ping_interval=None, compression=None, max_size=None, max_queue=None
        )
    )
    ws.send(json.dumps({"type": "auth", "data": {"token": token}}))
    peer = None
    while True:
        env = json.loads(ws.recv(timeout=5))
        if env["type"] == "ready":
            peer = env["data"]["peerId"]
        if env["type"] == "bot-state" and peer:
            return ws, peer


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    limits = {
        f"RATE_{kind}{suffix}": "1000000"
        for kind in ("CHAT", "SIGNAL", "OTHER")
        for suffix in ("", "_BURST")
    }
    with contextlib.ExitStack() as stack:
        srv = stack.enter_context(
            running_server(tmp_path_factory, AI_OFFLINE_DELAY="0", HISTORY_LIMIT="20", **limits)
        )
        http = stack.enter_context(httpx.Client(timeout=10, trust_env=False))
        me, other = session(srv.http, "Fuzzer", http=http), session(srv.http, "Other", http=http)
        ws, peer = open_ws(stack, srv, me.token)
        other_ws, other_peer = open_ws(stack, srv, other.token)
        yield Rig(srv, http, me.token, other.token, ws, peer, other_peer, other_ws)


def assert_alive(rig: Rig) -> None:
    assert rig.srv.proc is not None and rig.srv.proc.poll() is None, rig.srv.log()


# ------------------------------------------------------------------ WebSocket


@pytest.mark.parametrize("kind", TYPES)
def test_fuzz_every_message_type_over_websocket(rig: Rig, kind: str) -> None:
    @FUZZ
    @given(env=envelope(kind))
    def run(env: dict[str, Any]) -> None:
        events = rig.exchange(json.dumps(env))
        rig.check_events(events, env)

    run()
    assert_alive(rig)


@FUZZ
@given(frame=GARBAGE)
def test_fuzz_garbage_frames_over_websocket(rig: Rig, frame: str | bytes) -> None:
    rig.check_events(rig.exchange(frame), frame)


@FEW
@given(
    first=st.one_of(
        st.fixed_dictionaries(
            {"type": st.just("auth")},
            optional={
                "data": st.fixed_dictionaries(
                    {},
                    optional={
                        "token": either(st.sampled_from(["<good>", "<expired>", "<forged>", ""])),
                        "lastSeq": either(st.integers(-5, 10**12)),
                        "epoch": either(st.text(max_size=20)),
                    },
                )
                | JSON,
                "ref": REF,
            },
        ).map(json.dumps),
        GARBAGE,
    )
)
def test_fuzz_the_first_frame_of_a_websocket(rig: Rig, first: str | bytes) -> None:
    if isinstance(first, str):
        first = (
            first.replace("<good>", rig.token)
            .replace("<expired>", mint("u_fuzz", ttl=-10))
            .replace("<forged>", mint("u_fuzz", secret="not-the-secret-0123456789abcdef-fuzz"))
        )
    with connect(rig.srv.ws, proxy=None, ping_interval=None, compression=None, max_size=None) as ws:
        ws.send(first)
        try:
            env = json.loads(ws.recv(timeout=10))
        except ConnectionClosed:
            assert ws.close_code in (4401, 1008), (ws.close_code, first)
            return
        assert env["type"] == "ready", (env, first)


# ------------------------------------------------------------------ POST bodies


TOKENS = st.sampled_from(["<mine>", "<theirs>", "<none>", "<junk>", "<expired>"])
PEERS = st.one_of(
    st.sampled_from([SELF, OTHER, "p_nobody", "<none>"]), st.text("abcp_-0123456789", max_size=70)
)
CONTENT_TYPES = st.sampled_from(
    ["application/json", "text/plain", "<none>", "application/x-www-form-urlencoded"]
)


def post_body(kind: str) -> st.SearchStrategy[bytes]:
    as_dict = st.tuples(data_for(kind), REF | st.none()).map(
        lambda t: {**t[0], **({"ref": t[1]} if t[1] is not None else {})}
    )
    return st.one_of(
        plausible(kind).map(lambda d: json.dumps(d).encode()),
        as_dict.map(lambda d: json.dumps(d).encode()),
        as_dict.map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
        st.sampled_from([b"", b" ", b"{", b"null", b"[" * 3000, b'{"text": "\\ud800"}']),
    )


def headers_for(rig: Rig, token: str, peer: str, content_type: str) -> dict[str, str]:
    headers: dict[str, str] = {}
    tok = {
        "<mine>": rig.token,
        "<theirs>": rig.other_token,
        "<junk>": "a.b.c",
        "<expired>": mint("u_fuzz", ttl=-10),
    }.get(token)
    if tok:
        headers["Authorization"] = f"Bearer {tok}"
    if peer != "<none>":
        headers["X-Lastra-Peer"] = str(rig.fill(peer))
    if content_type != "<none>":
        headers["Content-Type"] = content_type
    return headers


ENDPOINTS = [*POST_ENDPOINTS.items(), ("webrtc-signal", "/api/screen-share-signal")]


@pytest.mark.parametrize(("kind", "endpoint"), ENDPOINTS, ids=[e for _, e in ENDPOINTS])
def test_fuzz_every_post_endpoint(rig: Rig, kind: str, endpoint: str) -> None:
    @FUZZ
    @given(body=post_body(kind), token=TOKENS, peer=PEERS, content_type=CONTENT_TYPES)
    def run(body: bytes, token: str, peer: str, content_type: str) -> None:
        headers = headers_for(rig, token, peer, content_type)
        resp = rig.http.post(
            f"{rig.srv.http}{endpoint}",
            content=rig.fill(body.decode("latin-1")).encode("latin-1") if body.isascii() else body,
            headers=headers,
        )
        rig.check_response(resp, (endpoint, body, headers))

    run()
    assert_alive(rig)


@FUZZ
@given(
    body=st.one_of(
        st.fixed_dictionaries(
            {}, optional={"userName": either(TEXT | st.text(min_size=60, max_size=70)), "ref": REF}
        ).map(lambda d: json.dumps(d).encode()),
        JSON.map(lambda v: json.dumps(v).encode()),
        st.binary(max_size=200),
    ),
    token=TOKENS,
)
def test_fuzz_session_bodies(rig: Rig, body: bytes, token: str) -> None:
    headers = headers_for(rig, token, "<none>", "application/json")
    rig.http.cookies.clear()  # the session cookie would authenticate the next request
    resp = rig.http.post(f"{rig.srv.http}/api/session", content=body, headers=headers)
    rig.http.cookies.clear()
    rig.check_response(resp, body)
    if resp.status_code == 200:
        assert set(resp.json()) >= {"userId", "userName", "token", "transport", "urls"}


@FEW
@given(
    last_event_id=st.one_of(st.none(), st.text("0123456789abcdef:-x", max_size=40)),
    last_seq=st.one_of(st.none(), st.text("0123456789-", max_size=25)),
    epoch=st.one_of(st.none(), st.text("0123456789abcdef", max_size=20)),
)
def test_fuzz_sse_resume_inputs(
    rig: Rig, last_event_id: str | None, last_seq: str | None, epoch: str | None
) -> None:
    headers = {"Authorization": f"Bearer {rig.token}", "Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    params = {k: v for k, v in (("lastSeq", last_seq), ("epoch", epoch)) if v is not None}
    with (
        httpx.Client(timeout=10, trust_env=False) as http,
        http.stream(
            "GET", f"{rig.srv.http}/api/chat-stream", headers=headers, params=params
        ) as resp,
    ):
        if resp.status_code != 200:
            resp.read()
            rig.check_response(resp, (last_event_id, params))
            return
        for line in resp.iter_lines():
            if line == "event: ready":
                return
            assert not line.startswith("event: error"), line
    raise AssertionError("the stream ended before ready")


# ------------------------------------------------------------------ afterwards


def test_the_server_is_healthy_after_the_fuzz(rig: Rig) -> None:
    assert_alive(rig)
    http = rig.http
    assert http.get(f"{rig.srv.http}/healthz").status_code == 200
    assert http.get(f"{rig.srv.http}/readyz").status_code == 200
    # chatting still works, over both transports, for both fuzz users
    text = f"after the fuzz {uuid.uuid4().hex[:6]}"
    events = rig.exchange(
        json.dumps({"type": "chat", "data": {"text": text, "clientId": uuid.uuid4().hex}})
    )
    rig.check_events(events, "final chat")
    resp = http.post(
        f"{rig.srv.http}/api/chat-message",
        json={"text": text + " (POST)", "clientId": uuid.uuid4().hex},
        headers={"Authorization": f"Bearer {rig.other_token}", "X-Lastra-Peer": rig.other_peer},
    )
    assert resp.status_code == 200, resp.text
    seen: set[str] = set()
    while not {text, text + " (POST)"} <= seen:
        env = json.loads(rig.other_ws.recv(timeout=10))
        if env["type"] == "chat":
            seen.add(env["data"]["text"])
    snap = scrape(rig.srv)
    for transport in ("ws", "sse"):
        assert value(snap, "lastra_errors_total", code="internal", transport=transport) == 0
    log = rig.srv.log()
    for line in log.splitlines():
        entry = json.loads(line)
        assert entry["level"] not in ("error", "critical"), entry
    # the fuzz reached the handlers: many kinds of error, not only bad_json
    print(f"fuzz: {rig.probes} WebSocket probes, {rig.accepted} accepted, errors {rig.errors}")
    assert {"invalid", "bad_json", "unknown_type", "not_found"} <= set(rig.errors), rig.errors
    assert rig.accepted >= 200, rig.accepted
