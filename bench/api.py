"""HTTP API benchmarks against a real `corral serve`-style server in a subprocess.

    .venv/bin/python bench/api.py [--runs 20] [--models 200] [--subscribers 100]

Prints figures, never pass/fail:
- background create -> completed throughput: `model=` interactions (scripted model, no
  sandbox) and `agent=` runs (scripted model calling a trivial `exec true` in a real sandbox);
- SSE fan-out: N subscribers of one run; per event, the delay between the first and each
  other subscriber receiving it (p50/p99), and each subscriber's lag behind the run's end;
- the server's resident memory before, after and at its peak (VmHWM).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
SERVER = (
    "import sys, uvicorn; from runtime.api.app import create_app; "
    "from runtime.logs import configure_logging; configure_logging('auto', 'warning'); "
    "from runtime.settings import Settings; "
    "uvicorn.run(create_app(Settings.from_env()), host='127.0.0.1', port=int(sys.argv[1]), "
    "log_level='warning')"
)


def rss(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) // 1024
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def wait_all(http: httpx.AsyncClient, ids: list[str]) -> None:
    pending = set(ids)
    while pending:
        for iid in list(pending):
            r = await http.get(f"/v1beta/interactions/{iid}")
            if r.json()["status"] != "in_progress":
                pending.discard(iid)
        await asyncio.sleep(0.05)


async def throughput(http: httpx.AsyncClient, body: dict[str, Any], n: int, label: str) -> None:
    start = time.perf_counter()
    created = await asyncio.gather(
        *(http.post("/v1beta/interactions", json={**body, "background": True}) for _ in range(n))
    )
    ids = [r.json()["id"] for r in created]
    await wait_all(http, ids)
    elapsed = time.perf_counter() - start
    statuses = [(await http.get(f"/v1beta/interactions/{i}")).json()["status"] for i in ids]
    ok = statuses.count("completed")
    print(f"{label}: {n} runs in {elapsed:.2f}s = {n / elapsed:.1f}/s ({ok} completed)")
    for iid in ids:
        await http.delete(f"/v1beta/interactions/{iid}")


async def fanout(http: httpx.AsyncClient, model: str, subscribers: int) -> None:
    r = await http.post(
        "/v1beta/interactions", json={"model": model, "input": "go", "background": True}
    )
    iid = r.json()["id"]
    arrivals: list[dict[str, float]] = [{} for _ in range(subscribers)]

    async def follow(k: int) -> None:
        async with http.stream(
            "GET", f"/v1beta/interactions/{iid}", params={"stream": "true"}, timeout=120
        ) as resp:
            async for line in resp.aiter_lines():
                if line.startswith("data: {"):
                    ev = json.loads(line[6:])
                    arrivals[k][ev["event_id"]] = time.perf_counter()

    await asyncio.gather(*(follow(k) for k in range(subscribers)))
    spread: list[float] = []
    events = set().union(*(a.keys() for a in arrivals))
    for eid in events:
        times = [a[eid] for a in arrivals if eid in a]
        first = min(times)
        spread += [(t - first) * 1000 for t in times]
    complete = all(len(a) == len(events) for a in arrivals)
    print(
        f"SSE fan-out: {subscribers} subscribers x {len(events)} events, all complete: {complete}; "
        f"delivery spread p50 {pct(spread, 50):.2f} ms, p99 {pct(spread, 99):.2f} ms"
    )
    await http.delete(f"/v1beta/interactions/{iid}")


async def main(args: argparse.Namespace) -> None:
    home = Path(tempfile.mkdtemp(prefix="corral-bench-api-"))
    work = Path(tempfile.mkdtemp(prefix="corral-bench-scripts-"))
    simple = work / "simple.yaml"
    simple.write_text(yaml.safe_dump({"turns": [{"text": "done"}]}))
    tool = work / "tool.yaml"
    tool.write_text(
        yaml.safe_dump(
            {
                "turns": [
                    {"tool_calls": [{"name": "exec", "arguments": {"command": "true"}}]},
                    {"text": "done"},
                ]
            }
        )
    )
    chatty = work / "chatty.yaml"
    chatty.write_text(yaml.safe_dump({"turns": [{"text": "word " * 400, "delay": 2.0}]}))

    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "CORRAL_HOME": str(home), "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            timeout=300,
            limits=httpx.Limits(max_connections=args.subscribers + 20),
        ) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            print(f"server RSS at start: {rss(proc.pid)['VmRSS']} MiB")
            await throughput(
                http,
                {"model": f"scripted:{simple}", "input": "x"},
                args.models,
                "model= throughput",
            )
            spec = {"name": "bench", "model": f"scripted:{tool}", "tools": ["exec"]}
            (await http.post("/v1beta/agents", json=spec)).raise_for_status()
            await throughput(
                http, {"agent": "bench", "input": "x"}, args.runs, "agent= throughput (exec true)"
            )
            await fanout(http, f"scripted:{chatty}", args.subscribers)
            mem = rss(proc.pid)
            print(f"server RSS at end: {mem['VmRSS']} MiB (peak {mem['VmHWM']} MiB)")
    finally:
        proc.terminate()
        proc.wait(timeout=60)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="agent= runs (real sandboxes)")
    parser.add_argument("--models", type=int, default=200, help="model= interactions")
    parser.add_argument("--subscribers", type=int, default=100)
    args = parser.parse_args()
    asyncio.run(main(args))
