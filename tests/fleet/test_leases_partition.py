"""A node cut off from PostgreSQL stops its runs and they move to a node that can reach it.

Node a reaches the database through a TCP relay in this test process (real sockets, the real
server). Two partitions:
- the relay cut: a's connections are closed and new ones refused (a reset);
- a network namespace: a runs in its own network namespace joined to the host by a veth pair,
  and iptables drops every packet on that link (a silent partition: queries hang rather than
  fail, and the database keeps a's sessions open until it gives up on them).
Node b reaches the database directly.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.fleet.nodes import ServeNode, fleet_metrics, owner_of, sse_events

pytestmark = pytest.mark.docker

FAST = {"CORRAL_LEASE_TTL": "3", "CORRAL_DRAIN_GRACE": "0"}


class Relay:
    """Forwards 127.0.0.1:<port> to the database; `cut()` partitions, `heal()` reconnects."""

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def heal(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
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
    # Each side counts its part in /metrics: a lost one lease, b took one run over.
    assert fleet_metrics(a)["corral_fleet_leases_lost_total"] == 1
    assert fleet_metrics(b)['corral_fleet_takeovers_total{lease="expired"}'] == 1
    assert fleet_metrics(b)["corral_fleet_leases_lost_total"] == 0


class Netns:
    """A network namespace joined to the host by a veth pair; `cut()` drops its packets."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:6]
        self.name = f"crl{tag}"
        self.host_if, self.ns_if = f"h-{tag}", f"n-{tag}"
        octet = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
        self._rules = [
            ["INPUT", "-i", self.host_if, "-j", "DROP"],
            ["OUTPUT", "-o", self.host_if, "-j", "DROP"],
        ]

    def up(self) -> None:
        for cmd in (
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if],
            ["ip", "link", "set", self.ns_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.host_ip}/30", "dev", self.host_if],
            ["ip", "link", "set", self.host_if, "up"],
            [*self.inside(), "ip", "addr", "add", f"{self.ns_ip}/30", "dev", self.ns_if],
            [*self.inside(), "ip", "link", "set", self.ns_if, "up"],
            [*self.inside(), "ip", "link", "set", "lo", "up"],
        ):
            subprocess.run(cmd, check=True, capture_output=True)

    def inside(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def cut(self) -> None:
        for rule in self._rules:
            subprocess.run(["iptables", "-I", *rule], check=True, capture_output=True)

    def heal(self) -> None:
        for rule in self._rules:
            while subprocess.run(["iptables", "-D", *rule], capture_output=True).returncode == 0:
                pass

    def down(self) -> None:
        self.heal()
        subprocess.run(["ip", "link", "del", self.host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


@pytest.fixture
def netns() -> Iterator[Netns]:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables"):
        pytest.skip("needs root with ip and iptables (network namespaces)")
    ns = Netns()
    try:
        ns.up()
    except subprocess.CalledProcessError as exc:
        ns.down()
        pytest.skip(f"cannot make a network namespace here: {exc.stderr!r}")
    yield ns
    ns.down()


class NsNode(ServeNode):
    """A `corral serve` inside the namespace, answering on the namespace's address."""

    def __init__(self, ns: Netns, home: Path, db_url: str, env: dict[str, str]) -> None:
        super().__init__(home, db_url, "ns", env)
        self.ns = ns
        self.url = f"http://{ns.ns_ip}:{self.port}"
        self.env["CORRAL_NODE_URL"] = self.url

    def start(self, timeout: float = 60) -> ServeNode:
        cmd = [sys.executable, "-m", "runtime.cli", "serve", "--host", "0.0.0.0"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [*self.ns.inside(), *cmd, "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node exited: {self.log.read_text()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            time.sleep(0.1)
        raise RuntimeError(f"node did not start: {self.log.read_text()[-3000:]}")


def test_a_node_whose_packets_are_dropped_loses_its_run(
    start_node: Callable[..., ServeNode],
    scripted_agent: Callable[..., dict[str, Any]],
    pg_url: str,
    netns: Netns,
    corral_home: Path,
) -> None:
    url = make_url(pg_url)
    relay = Relay((url.host or "127.0.0.1", url.port or 5432), host=netns.host_ip)
    relay.heal()
    through_link = url.set(host=netns.host_ip, port=relay.port)
    a = NsNode(
        netns,
        corral_home / "node-ns",
        through_link.render_as_string(hide_password=False),
        FAST,
    )
    try:
        a.start()
        b = start_node("b", FAST)
        spec = scripted_agent(
            "islander",
            "echo one > /workspace/out/one.txt",
            "echo drop-now; sleep 5; echo two > /workspace/out/two.txt",
            "cat /workspace/out/one.txt /workspace/out/two.txt > /workspace/out/both.txt",
        )
        with a.client() as ca:
            assert ca.post("/v1beta/agents", json=spec).status_code == 200
            rid = ca.post(
                "/v1beta/interactions",
                json={"agent": "islander", "input": "go", "background": True},
            ).json()["id"]
        seen: list[dict[str, Any]] = []
        with (
            b.client() as cb,
            cb.stream(
                "GET",
                f"/v1beta/interactions/{rid}",
                params={"stream": "true", "corral_events": "1"},
            ) as resp,
        ):
            dropped = False
            for ev in sse_events(resp):
                seen.append(ev)
                if not dropped and "drop-now" in str((ev.get("delta") or {}).get("result")):
                    netns.cut()
                    dropped = True
            assert dropped
            assert seen[-1]["interaction"]["status"] == "completed", seen[-1]
            assert cb.get(f"/v1beta/interactions/{rid}/artifacts/both.txt").text == "one\ntwo\n"
        [resumed] = [e for e in seen if e["event_type"] == "run.resumed"]
        assert resumed["from_node"] == (a.home / "node_id").read_text().strip()
        netns.heal()
        logs = a.logs()
        assert "fleet.heartbeat_failed" in logs and "run.lease_lost" in logs
        with a.client() as ca:
            assert ca.get("/healthz").status_code == 200
            assert a.runs_active() == 0
            with ca.stream(
                "GET",
                f"/v1beta/interactions/{rid}",
                params={"stream": "true", "corral_events": "1"},
            ) as resp:
                after = list(sse_events(resp))
        assert [e["event_id"] for e in after] == [e["event_id"] for e in seen]
    finally:
        netns.heal()
        a.stop()
        relay.cut()
