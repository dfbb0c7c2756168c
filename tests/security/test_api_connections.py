"""Hostile client vs the server's sockets: connections that never finish their request head
are dropped after the header timeout, and normal requests keep being served meanwhile.

Real sockets against a real uvicorn server on 127.0.0.1, configured the way `corral serve`
configures it (`runtime.api.server.uvicorn_config`)."""

from __future__ import annotations

import selectors
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from runtime.api.config import ApiConfig
from runtime.api.server import ServerLimits
from tests.runtime.api.conftest import ServerThread, script, start_server

__all__ = ["script", "start_server"]  # fixtures shared with tests/runtime/api

HALF_OPEN = 300
WAIT = 60.0
"""Generous: how long we wait for the server to drop them (it should take ~header_timeout)."""


@pytest.fixture
def srv(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(ApiConfig(server=ServerLimits(header_timeout=2.0, keep_alive=2.0)))


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def connect(srv: ServerThread, sockets: list[socket.socket]) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    sockets.append(s)
    return s


def wait_all_closed(socks: list[socket.socket]) -> list[socket.socket]:
    """Read until every socket sees EOF (or a reset); returns those still open at WAIT."""
    sel = selectors.DefaultSelector()
    for s in socks:
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
    still = set(socks)
    deadline = time.monotonic() + WAIT
    while still and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=1.0):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:
                sel.unregister(sock)
                still.discard(sock)
    sel.close()
    return list(still)


def test_half_open_connections_are_dropped(srv: ServerThread, sockets: list[socket.socket]) -> None:
    for i in range(HALF_OPEN):
        s = connect(srv, sockets)
        if i % 3 == 1:
            s.sendall(b"GET /healthz HTTP/1.1\r\n")  # a request line, no headers
        elif i % 3 == 2:
            s.sendall(b"POST /v1beta/interactions HTTP/1.1\r\nHost: x\r\nX-A: ")  # cut short
        # i % 3 == 0: connect and say nothing
    # while they hang, a normal client is still served
    assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200
    assert wait_all_closed(sockets) == []
    assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200


def test_a_trickling_request_head_is_dropped(
    srv: ServerThread, sockets: list[socket.socket]
) -> None:
    """One byte at a time keeps an idle timer from firing; the head deadline does not reset."""
    s = connect(srv, sockets)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"a" * 200
    dropped = False
    for byte in head:  # bounded: at most len(head) sends, 0.25 s apart
        try:
            s.sendall(bytes([byte]))
        except OSError:
            dropped = True
            break
        s.settimeout(0.25)
        try:
            if s.recv(4096) == b"":
                dropped = True
                break
        except TimeoutError:
            continue
        except OSError:
            dropped = True
            break
    assert dropped
    assert httpx.get(f"{srv.url}/healthz", timeout=30).status_code == 200


def test_idle_keep_alive_connection_is_closed(
    srv: ServerThread, sockets: list[socket.socket]
) -> None:
    s = connect(srv, sockets)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    s.settimeout(30)
    assert s.recv(4096).startswith(b"HTTP/1.1 200")
    assert wait_all_closed([s]) == []


def test_whole_requests_on_one_connection_still_work(srv: ServerThread) -> None:
    with httpx.Client(timeout=30) as http:
        for _ in range(5):
            assert http.get(f"{srv.url}/healthz").status_code == 200
