"""Sandbox benchmarks: figures as ratios against baselines measured in the same run.

    .venv/bin/python bench/sandbox.py [--quick]

Prints a table; never passes or fails on time. Everything it creates lives under a temporary
CORRAL_HOME and is removed at the end (the orphan count is printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.logs import configure_logging
from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend
from sandbox.pool import WarmPool

IMAGE = "corral/base"
MiB = 1024 * 1024


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def ms(x: float) -> str:
    return f"{x * 1000:.2f} ms"


def docker_py_cold(api: Any) -> float:
    """docker-py's low-level API: create + start a container, then its first exec."""
    t = time.perf_counter()
    created = api.create_container(
        IMAGE,
        command=["sleep", "infinity"],
        host_config=api.create_host_config(network_mode="none"),
    )
    api.start(created["Id"])
    ex = api.exec_create(created["Id"], "true", user="1000:1000")
    api.exec_start(ex["Id"])
    took = time.perf_counter() - t
    assert api.exec_inspect(ex["Id"])["ExitCode"] == 0
    api.remove_container(created["Id"], force=True)
    return took


async def cold_vs_docker_py(
    backend: DockerBackend, spec: SandboxSpec, rounds: int
) -> tuple[str, str, str, str]:
    """Sandbox.create + first exec("true") against docker-py's create + start + exec_run,
    interleaved round by round (alternating who goes first) so both see the same load."""
    api = backend.client.api
    ours: list[float] = []
    theirs: list[float] = []
    for i in range(rounds + 1):
        for who in ("ours", "theirs") if i % 2 else ("theirs", "ours"):
            if who == "theirs":
                took = docker_py_cold(api)
            else:
                t = time.perf_counter()
                sb = await Sandbox.create(spec, backend=backend)
                r = await sb.exec("true")
                took = time.perf_counter() - t
                assert r.exit_code == 0
                await sb.destroy()
            if i:  # round 0 warms both paths up (image layers, staged guest, thread pool)
                (ours if who == "ours" else theirs).append(took)
    a, b = statistics.median(ours), statistics.median(theirs)
    return (
        f"cold create -> first exec vs docker-py (p50, {rounds} rounds)",
        ms(a),
        f"docker-py create+start+exec: {ms(b)}",
        f"{a / b:.2f}x",
    )


async def bench(quick: bool, cold_only: bool = False) -> None:
    home = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    backend = DockerBackend(home)
    spec = SandboxSpec(image=IMAGE, memory="512m", disk="1g")
    rows: list[tuple[str, str, str, str]] = []
    n_cold = 5 if quick else 10
    if cold_only:
        rows.append(await cold_vs_docker_py(backend, spec, 10 if quick else 20))
        await backend.aclose()
        _print(rows)
        return

    # 1. cold create -> first exec result vs `docker run --rm IMAGE true`
    base = []
    for _ in range(n_cold):
        t = time.perf_counter()
        subprocess.run(["docker", "run", "--rm", IMAGE, "true"], check=True, capture_output=True)
        base.append(time.perf_counter() - t)
    cold = []
    for _ in range(n_cold):
        t = time.perf_counter()
        sb = await Sandbox.create(spec, backend=backend)
        await sb.exec("true")
        cold.append(time.perf_counter() - t)
        await sb.destroy()
    rows.append(
        (
            "cold create -> first exec (p50)",
            ms(statistics.median(cold)),
            f"docker run --rm: {ms(statistics.median(base))}",
            f"{statistics.median(cold) / statistics.median(base):.2f}x",
        )
    )

    # 1b. the same against docker-py's create + start + first exec_run, interleaved
    rows.append(await cold_vs_docker_py(backend, spec, n_cold))

    # 2. warm pool acquire -> first exec result
    pool = WarmPool(backend)
    pool.add(spec, 2)
    warm = []
    for _ in range(5 if quick else 20):
        await pool.wait_ready(spec, 1)
        t = time.perf_counter()
        sb = await pool.acquire(spec)
        await sb.exec("true")
        warm.append(time.perf_counter() - t)
        await sb.destroy()
    await pool.aclose()
    rows.append(
        (
            "warm acquire -> first exec (p50/p99)",
            f"{ms(pct(warm, 50))} / {ms(pct(warm, 99))}",
            "",
            "",
        )
    )

    # 3. exec round trip vs docker SDK exec_run on the same container
    sb = await Sandbox.create(spec, backend=backend)
    container = backend.client.containers.get(sb.handle.container_id)
    for _ in range(20):
        await sb.exec("true")
    ours = []
    for _ in range(100 if quick else 300):
        t = time.perf_counter()
        await sb.exec("true")
        ours.append(time.perf_counter() - t)
    theirs = []
    for _ in range(10 if quick else 30):
        t = time.perf_counter()
        container.exec_run("true", user="1000:1000")
        theirs.append(time.perf_counter() - t)
    rows.append(
        (
            "exec round trip `true` (p50/p99)",
            f"{ms(pct(ours, 50))} / {ms(pct(ours, 99))}",
            f"docker exec_run: {ms(pct(theirs, 50))}",
            f"{pct(theirs, 50) / pct(ours, 50):.0f}x faster",
        )
    )

    # 4. 256 MiB write + read
    size = 256 * MiB
    block = os.urandom(MiB)

    async def chunks():
        for _ in range(size // MiB):
            yield block

    ups, downs = [], []
    for _ in range(3):  # median of three: one transfer is at the mercy of the page cache
        t = time.perf_counter()
        await sb.files.upload("big.bin", chunks())
        ups.append(size / (time.perf_counter() - t) / 1e6)
        t = time.perf_counter()
        got = 0
        async for c in sb.files.download("big.bin"):
            got += len(c)
        downs.append(size / (time.perf_counter() - t) / 1e6)
        assert got == size
        await sb.files.remove("big.bin")
    rows.append(
        (
            "256 MiB upload / download (median of 3)",
            f"{statistics.median(ups):.0f} / {statistics.median(downs):.0f} MB/s",
            "",
            "",
        )
    )
    await sb.destroy()

    # 5. concurrent create -> exec -> destroy cycles
    n = 10 if quick else 50
    durations: list[float] = []
    failures = 0

    async def cycle() -> None:
        nonlocal failures
        t = time.perf_counter()
        try:
            s = await Sandbox.create(SandboxSpec(image=IMAGE, memory="128m"), backend=backend)
            try:
                r = await s.exec("echo ok")
                assert r.stdout == "ok\n"
            finally:
                await s.destroy()
            durations.append(time.perf_counter() - t)
        except Exception as exc:  # counted, printed
            failures += 1
            print("cycle failed:", exc, file=sys.stderr)

    t0 = time.perf_counter()
    await asyncio.gather(*(cycle() for _ in range(n)))
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    orphans = len(await backend.list())
    rows.append(
        (
            f"{n} concurrent create->exec->destroy",
            f"p50 {durations and ms(pct(durations, 50))} / p99 {durations and ms(pct(durations, 99))}",
            f"wall {wall:.1f} s, failures {failures}",
            f"orphans {orphans}, controller max RSS {rss:.0f} MiB",
        )
    )
    await backend.aclose()
    _print(rows)


def _print(rows: list[tuple[str, str, str, str]]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\nCorral sandbox benchmark (image {IMAGE}, {os.cpu_count()} cores)\n")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<28} {r[2]:<32} {r[3]}")


if __name__ == "__main__":
    configure_logging("console", "warning")  # figures on stdout, not log lines
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--cold-only", action="store_true", help="only the cold start vs docker-py")
    opts = ap.parse_args()
    asyncio.run(bench(opts.quick, opts.cold_only))
