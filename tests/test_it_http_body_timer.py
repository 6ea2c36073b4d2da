"""The body timeout measures silence, however the body's bytes are cut into reads.

``LastraHttpProtocol`` arms the body's timer once per read that leaves a body
unfinished (not per parser callback), so a request whose body came with its
head never arms it. What must hold: a body that keeps trickling is read to the
end however long it takes in all; a head whose body never comes gets 408.
"""

from __future__ import annotations

import contextlib
import socket
import time

from support.server import Server

SERVER_SETTINGS = {"HEADER_TIMEOUT": "1", "BODY_TIMEOUT": "1"}


def _connect(srv: Server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _status_line(sock: socket.socket) -> bytes:
    got = b""
    with contextlib.suppress(OSError):
        while b"\r\n" not in got and (chunk := sock.recv(4096)):
            got += chunk
    return got.split(b"\r\n", 1)[0]


def test_a_trickled_body_is_read_to_the_end(srv: Server) -> None:
    """Six pieces 0.4 s apart (2 s in all, twice the timeout): each gap is below it."""
    body = b'{"userName": "Slow but steady"}'
    pieces = [body[i : i + 6] for i in range(0, len(body), 6)]
    head = b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    with _connect(srv) as sock:
        sock.sendall(head + b"Content-Length: %d\r\n\r\n" % len(body))
        for piece in pieces:
            time.sleep(0.4)  # the client's pace is what is under test
            sock.sendall(piece)
        assert _status_line(sock) == b"HTTP/1.1 200 OK"


def test_a_head_whose_body_never_comes_gets_408(srv: Server) -> None:
    head = b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
    with _connect(srv) as sock:
        started = time.monotonic()
        sock.sendall(head)
        assert _status_line(sock) == b"HTTP/1.1 408 Request Timeout"
        assert time.monotonic() - started < 4


def test_a_body_that_stops_halfway_gets_408(srv: Server) -> None:
    head = b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n"
    with _connect(srv) as sock:
        sock.sendall(head + b'{"userName": ')
        time.sleep(0.5)
        sock.sendall(b'"Ad')  # a read that leaves the body unfinished re-arms the timer
        assert _status_line(sock) == b"HTTP/1.1 408 Request Timeout"
