"""A node cut off from PostgreSQL stops its runs and they move to a node that can reach it.

Node a reaches the database through a TCP relay in this test process (real sockets, the real
server); cutting the relay closes a's connections and refuses new ones, as a network partition
does. Node b reaches the database directly.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from tests.fleet.nodes import ServeNode, owner_of, sse_events

pytestmark = pytest.mark.docker

FAST = {"CORRAL_LEASE_TTL": "3", "CORRAL_DRAIN_GRACE": "0"}


class Relay:
    """Forwards 127.0.0.1:<port> to the database; `cut()` partitions, `heal()` reconnects."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def heal(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            for s in self._conns:
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()
            self._conns.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


@pytest.fixture
def relay(pg_url: str) -> Iterator[Relay]:
    url = make_url(pg_url)
    r = Relay((url.host or "127.0.0.1", url.port or 5432))
    r.heal()
    yield r
    r.cut()


def test_a_partitioned_node_loses_its_run_to_a_connected_one(
    start_node: Callable[..., ServeNode],
    scripted_agent: Callable[..., dict[str, Any]],
    pg_url: str,
    relay: Relay,
) -> None:
    via_relay = make_url(pg_url).set(host="127.0.0.1", port=relay.port)
    a = start_node(
        "a", {**FAST, "CORRAL_DATABASE_URL": via_relay.render_as_string(hide_password=False)}
    )
    b = start_node("b", FAST)
    spec = scripted_agent(
        "mover",
        "echo one > /workspace/out/one.txt",
        "echo cut-now; sleep 5; echo two > /workspace/out/two.txt",
        "cat /workspace/out/one.txt /workspace/out/two.txt > /workspace/out/both.txt",
    )
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        rid = ca.post(
            "/v1beta/interactions", json={"agent": "mover", "input": "go", "background": True}
        ).json()["id"]
    assert owner_of([a, b]) is a
    seen: list[dict[str, Any]] = []
    with (
        b.client() as cb,
        cb.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        cut = False
        for ev in sse_events(resp):
            seen.append(ev)
            if not cut and "cut-now" in str((ev.get("delta") or {}).get("result")):
                relay.cut()
                cut = True
        assert cut
        assert seen[-1]["interaction"]["status"] == "completed", seen[-1]
        assert cb.get(f"/v1beta/interactions/{rid}/artifacts/both.txt").text == "one\ntwo\n"
    resumed = [e for e in seen if e["event_type"] == "run.resumed"]
    assert [e["from_node"] for e in resumed] == [(a.home / "node_id").read_text().strip()]
    assert a.runs_active() == 0  # a stopped the run it could no longer renew

    # a reconnects (its first answer needs the database): it wrote nothing for the run.
    relay.heal()
    with (
        a.client() as ca,
        ca.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        after = list(sse_events(resp))
    assert [e["event_id"] for e in after] == [e["event_id"] for e in seen]
    ids = [int(e["event_id"]) for e in after]
    assert ids == list(range(1, len(ids) + 1))
    assert "fleet.heartbeat_failed" in a.logs()
