"""Fleet benchmarks: 1, 2 and 3 `corral serve` nodes on one PostgreSQL, on this machine.

    CORRAL_TEST_POSTGRES_URL=postgresql+asyncpg://corral@127.0.0.1:55432/corral_test \\
        .venv/bin/python bench/fleet.py [--runs 24] [--concurrency 6] [--nodes 1,2,3]

(`bash .ci/postgres.sh` starts a throwaway PostgreSQL and prints that URL.) Each node count
gets a fresh database. Prints figures, never pass/fail:
- runs/s and create -> completed p50/p95 for background `agent=` runs (scripted model: one
  `exec true` in a real sandbox, then an answer). Runs are created round robin on the nodes,
  and each is followed over SSE from the *next* node, so the time includes the cross-node event
  fan-out (LISTEN/NOTIFY) that a client of a load-balanced fleet meets; the fan-out itself is
  measured too: each run is also followed on the node that created it, and the difference
  between the two arrivals of `interaction.completed` is printed as p50/p95;
- the raw LISTEN/NOTIFY hop between two connections (p50/p95), for comparison;
- sandbox calls direct and forwarded: a sandbox on one node, `exec true` round trip p50/p95
  and an 8 MiB upload and download (median of 3) through its node and through the other one;
- the takeover time after a node dies: a run executing on a node that is killed (-9) inside a
  3 s command; from the kill until the other node's `run.resumed` event reaches a client
  streaming from that node, and until the run completes there (the command runs again). It
  is bounded by the lease TTL (`CORRAL_LEASE_TTL`, 6 s here) plus one heartbeat (TTL/3).

All nodes share this machine's 2 cores and Docker engine, so more nodes add coordination, not
capacity, here: the figures show the fleet's overhead, not its scaling on several machines.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
KEY = "bench-key"
HEADERS = {"x-goog-api-key": KEY}


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextlib.asynccontextmanager
async def fresh_database(url: str) -> AsyncIterator[str]:
    name = f"corral_bench_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(dsn(url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        conn = await asyncpg.connect(dsn(url))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


class Node:
    def __init__(self, root: Path, db_url: str, name: str) -> None:
        self.home = root / name
        self.home.mkdir(parents=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "CORRAL_HOME": str(self.home),
            "CORRAL_DATABASE_URL": db_url,
            "CORRAL_API_KEYS": f"{KEY}:bench",
            "CORRAL_ALLOW_SCRIPTED": "1",
            "CORRAL_LOG_LEVEL": "warning",
            # Runs keep their sandbox for follow-ups: the default 10 per tenant would refuse.
            "CORRAL_TENANT_MAX_SANDBOXES": "1000",
            "CORRAL_LEASE_TTL": os.environ.get("CORRAL_LEASE_TTL", "6"),
        }
        self.log = (self.home / "serve.log").open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "serve", "--port", str(self.port)],
            env=env,
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def ready(self, http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"node exited: {(self.home / 'serve.log').read_text()[-2000:]}")
            with contextlib.suppress(httpx.TransportError):
                if (await http.get(f"{self.url}/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
        raise SystemExit("node did not start")

    async def active(self, http: httpx.AsyncClient) -> int:
        return int((await http.get(f"{self.url}/healthz")).json()["runs_active"])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@contextlib.asynccontextmanager
async def fleet(pg: str, n: int, root: Path) -> AsyncIterator[list[Node]]:
    async with fresh_database(pg) as db:
        nodes: list[Node] = []
        try:
            async with httpx.AsyncClient() as http:
                for i in range(n):  # one after the other: each applies (or finds) the schema
                    node = Node(root, db, f"n{n}-{i}")
                    nodes.append(node)
                    await node.ready(http)
            yield nodes
        finally:
            for node in nodes:
                await asyncio.to_thread(node.stop)
                await asyncio.to_thread(remove_containers, node.home)


def remove_containers(home: Path) -> None:
    """The sandboxes a node kept for follow-ups (and any a killed node left)."""
    label = f"label=corral.home={home}"
    found = subprocess.run(
        ["docker", "ps", "-aq", "--filter", label], capture_output=True, text=True, check=False
    ).stdout.split()
    if found:
        subprocess.run(["docker", "rm", "-f", "-v", *found], capture_output=True, check=False)


def agent(root: Path, name: str, command: str) -> dict[str, Any]:
    path = root / f"{name}.yaml"
    turns = [
        {"text": "working", "tool_calls": [{"name": "exec", "arguments": {"command": command}}]},
        {"text": "done"},
    ]
    path.write_text(yaml.safe_dump({"turns": turns}))
    return {
        "name": name,
        "model": f"scripted:{path}",
        "instructions": "Benchmark agent.",
        "tools": ["exec"],
        "limits": {"max_steps": 4, "timeout": 600},
    }


async def follow(http: httpx.AsyncClient, url: str, iid: str) -> dict[str, Any]:
    """The run's events over SSE until it ends; its final interaction."""
    params = {"stream": "true"}
    async with http.stream("GET", f"{url}/v1beta/interactions/{iid}", params=params) as resp:
        async for line in resp.aiter_lines():
            if line.startswith("data: "):
                ev = json.loads(line[6:])
                if ev["event_type"] == "interaction.completed":
                    return dict(ev["interaction"])
    raise RuntimeError(f"stream of {iid} ended without interaction.completed")


async def timed_follow(http: httpx.AsyncClient, url: str, iid: str) -> tuple[dict[str, Any], float]:
    final = await follow(http, url, iid)
    return final, time.perf_counter()


async def throughput(pg: str, n: int, runs: int, conc: int, root: Path) -> dict[str, Any]:
    async with fleet(pg, n, root) as nodes:
        timeout = httpx.Timeout(600, connect=10)
        async with httpx.AsyncClient(headers=HEADERS, timeout=timeout) as http:
            spec = agent(root, f"bench{n}", "true")
            assert (await http.post(f"{nodes[0].url}/v1beta/agents", json=spec)).status_code == 200
            gate = asyncio.Semaphore(conc)
            latencies: list[float] = []
            lags: list[float] = []
            statuses: dict[str, int] = {}

            async def one(i: int) -> None:
                async with gate:
                    creator, viewer = nodes[i % n], nodes[(i + 1) % n]
                    t0 = time.perf_counter()
                    r = await http.post(
                        f"{creator.url}/v1beta/interactions",
                        json={"agent": spec["name"], "input": "go", "background": True},
                    )
                    r.raise_for_status()
                    iid = r.json()["id"]
                    # Followed on its creator too: the difference is the cross-node fan-out.
                    timed = await asyncio.gather(
                        timed_follow(http, viewer.url, iid), timed_follow(http, creator.url, iid)
                    )
                    (final, t_viewer), (_, t_creator) = timed
                    latencies.append(t_viewer - t0)
                    if n > 1:
                        lags.append(t_viewer - t_creator)
                    statuses[final["status"]] = statuses.get(final["status"], 0) + 1

            # One warm-up run so the first sandbox create does not weigh on the figures.
            await one(0)
            latencies.clear()
            lags.clear()
            statuses.clear()
            t0 = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(runs)))
            wall = time.perf_counter() - t0
    return {
        "nodes": n,
        "runs": runs,
        "concurrency": conc,
        "runs_per_s": round(runs / wall, 2),
        "p50_ms": round(pct(latencies, 50) * 1000),
        "p95_ms": round(pct(latencies, 95) * 1000),
        "fanout_p50_ms": round(pct(lags, 50) * 1000, 1) if lags else None,
        "fanout_p95_ms": round(pct(lags, 95) * 1000, 1) if lags else None,
        "statuses": statuses,
    }


async def takeover(pg: str, root: Path) -> dict[str, Any]:
    """Kill -9 the node executing a run; when does another node carry it on?"""
    async with (
        fleet(pg, 2, root) as nodes,
        httpx.AsyncClient(headers=HEADERS, timeout=600) as http,
    ):
        spec = agent(root, "slow", "sleep 3; echo slept")
        assert (await http.post(f"{nodes[0].url}/v1beta/agents", json=spec)).status_code == 200
        r = await http.post(
            f"{nodes[0].url}/v1beta/interactions",
            json={"agent": "slow", "input": "go", "background": True},
        )
        iid = r.json()["id"]
        owner = None
        while owner is None:
            for node in nodes:
                if await node.active(http):
                    owner = node
            await asyncio.sleep(0.05)
        other = nodes[1] if owner is nodes[0] else nodes[0]
        arrivals: list[tuple[str, float]] = []  # (event type, when it reached `other`)

        async def watch() -> None:
            params = {"stream": "true", "corral_events": "1"}
            url = f"{other.url}/v1beta/interactions/{iid}"
            async with http.stream("GET", url, params=params) as resp:
                async for line in resp.aiter_lines():
                    if line.startswith("data: "):
                        kind = json.loads(line[6:])["event_type"]
                        arrivals.append((kind, time.perf_counter()))
                        if kind == "interaction.completed":
                            return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(1.0)  # mid-run: inside its `sleep 3`
        owner.proc.send_signal(signal.SIGKILL)
        killed = time.perf_counter()
        await asyncio.to_thread(owner.proc.wait)
        await asyncio.wait_for(watcher, 300)
        final = (await http.get(f"{other.url}/v1beta/interactions/{iid}")).json()

    def after(kind: str) -> float | None:
        return next((round(t - killed, 2) for k, t in arrivals if k == kind and t > killed), None)

    return {
        "status_after": final["status"],
        "resumed_after_kill_s": after("run.resumed"),
        "completed_after_kill_s": after("interaction.completed"),
        "lease_ttl_s": float(os.environ.get("CORRAL_LEASE_TTL", "6")),
    }


async def notify_latency(pg: str, count: int = 200) -> dict[str, Any]:
    """The raw LISTEN/NOTIFY hop: one node's `published()` until another node's callback."""
    from runtime.fleet.notify import PgFanout, asyncpg_dsn

    url = asyncpg_dsn(pg)
    assert url is not None
    sent: dict[str, float] = {}
    lat: list[float] = []

    def none(_iid: str = "") -> None:
        return None

    def got(iid: str) -> None:
        lat.append(time.perf_counter() - sent[iid])

    a = PgFanout(url, origin="a", on_events=none, on_cancel=none, on_reconnect=none)
    b = PgFanout(url, origin="b", on_events=got, on_cancel=none, on_reconnect=none)
    await a.start()
    await b.start()
    try:
        for i in range(count):
            sent[f"int_{i}"] = time.perf_counter()
            a.published(f"int_{i}", 1)
            await asyncio.sleep(0.01)
        await asyncio.sleep(1)
    finally:
        await a.aclose()
        await b.aclose()
    return {
        "notifications": count,
        "delivered": len(lat),
        "p50_ms": round(pct(lat, 50) * 1000, 2),
        "p95_ms": round(pct(lat, 95) * 1000, 2),
    }


async def forwarding(pg: str, root: Path, rounds: int = 60) -> dict[str, Any]:
    """A sandbox on one node, used directly and through the other node (forwarded)."""
    async with (
        fleet(pg, 2, root) as nodes,
        httpx.AsyncClient(headers=HEADERS, timeout=600) as http,
    ):
        owner, other = nodes
        r = await http.post(f"{owner.url}/v1beta/sandboxes", json={"network": "none"})
        r.raise_for_status()
        path = f"/v1beta/sandboxes/{r.json()['id']}"
        blob = os.urandom(8 << 20)
        out: dict[str, Any] = {}
        for label, node in (("direct", owner), ("forwarded", other)):
            times = []
            for _ in range(rounds):  # exec round trip of `true`
                t0 = time.perf_counter()
                e = await http.post(f"{node.url}{path}/exec", json={"command": ["true"]})
                times.append(time.perf_counter() - t0)
                assert e.status_code == 200, e.text
            up, down = [], []
            for _ in range(3):
                t0 = time.perf_counter()
                (
                    await http.put(f"{node.url}{path}/files/blob.bin", content=blob)
                ).raise_for_status()
                up.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                got = await http.get(f"{node.url}{path}/files/blob.bin")
                down.append(time.perf_counter() - t0)
                assert got.content == blob
            out[label] = {
                "exec_p50_ms": round(pct(times, 50) * 1000, 2),
                "exec_p95_ms": round(pct(times, 95) * 1000, 2),
                "upload_8MiB_ms": round(sorted(up)[1] * 1000),
                "download_8MiB_ms": round(sorted(down)[1] * 1000),
            }
        await http.delete(f"{owner.url}{path}")
    return out


def rows(results: list[dict[str, Any]]) -> Iterator[str]:
    yield "nodes  runs  conc  runs/s  p50 ms  p95 ms  fan-out p50/p95 ms  statuses"
    for r in results:
        fan = "-" if r["fanout_p50_ms"] is None else f"{r['fanout_p50_ms']}/{r['fanout_p95_ms']}"
        yield (
            f"{r['nodes']:>5}  {r['runs']:>4}  {r['concurrency']:>4}  {r['runs_per_s']:>6}  "
            f"{r['p50_ms']:>6}  {r['p95_ms']:>6}  {fan:>18}  {r['statuses']}"
        )


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=24)
    ap.add_argument("--concurrency", type=int, default=6)
    ap.add_argument("--nodes", default="1,2,3", help='node counts; "" for the takeover only')
    ap.add_argument("--forwarding", action=argparse.BooleanOptionalAction, default=True)
    ap.add_argument("--takeovers", type=int, default=3, help="node kills measured (0: none)")
    ap.add_argument("--pg", default=os.environ.get("CORRAL_TEST_POSTGRES_URL"))
    args = ap.parse_args()
    from runtime.logs import configure_logging

    configure_logging("console", "warning")
    if not args.pg:
        raise SystemExit("set CORRAL_TEST_POSTGRES_URL (bash .ci/postgres.sh prints one) or --pg")
    with tempfile.TemporaryDirectory(prefix="corral-bench-fleet-") as tmp:
        root = Path(tmp)
        print("notify:", json.dumps(await notify_latency(args.pg)), flush=True)
        results = []
        for n in (int(x) for x in args.nodes.split(",") if x.strip()):
            results.append(await throughput(args.pg, n, args.runs, args.concurrency, root))
            print(json.dumps(results[-1]), flush=True)
        if results:
            print("\n".join(rows(results)))
        if args.forwarding:
            print("forwarding:", json.dumps(await forwarding(args.pg, root / "fwd")), flush=True)
        for i in range(args.takeovers):
            print("takeover:", json.dumps(await takeover(args.pg, root / f"t{i}")), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
