"""Micro-benchmark of the local RPC: the guest as a subprocess on a Unix socket (no Docker).

    .venv/bin/python -m bench.rpc_local [--size-mib 256] [--rounds 500]

Prints figures, never pass/fail. The baseline is this process spawning the same command
directly (`subprocess.run`), so the RPC's own overhead is the difference.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from sandbox.rpc import RpcClient

REPO = Path(__file__).resolve().parents[1]


def pct(samples: list[float], p: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(p * len(s)))] * 1000


async def timed(fn: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        await fn()
        out.append(time.perf_counter() - t)
    return out


def line(name: str, samples: list[float]) -> None:
    print(f"{name:<34} p50 {pct(samples, 0.5):7.3f} ms   p90 {pct(samples, 0.9):7.3f} ms")


async def main(size_mib: int, rounds: int, workspace_dir: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="corral-bench-", dir="/tmp"))
    # The workspace is a tmpfs in a sandbox; /dev/shm is the closest thing here.
    ws = Path(tempfile.mkdtemp(prefix="corral-bench-ws-", dir=workspace_dir))
    sock = root / "rpc.sock"
    guest = subprocess.Popen(
        [
            sys.executable,
            "-B",
            "-m",
            "sandbox.guest",
            "--socket",
            str(sock),
            "--workspace",
            str(ws),
        ],
        cwd=REPO,
        stderr=subprocess.DEVNULL,
    )
    try:
        t0 = time.perf_counter()
        c = await RpcClient.connect(sock, timeout=30)
        print(f"{'guest start -> handshake done':<34} {1000 * (time.perf_counter() - t0):7.1f} ms")
        print(f"workspace on {ws}")
        for _ in range(20):
            await c.exec("true")

        def direct() -> None:
            subprocess.run(["/bin/sh", "-c", "true"], capture_output=True)

        base = []
        for _ in range(rounds):
            t = time.perf_counter()
            direct()
            base.append(time.perf_counter() - t)
        line("baseline: subprocess.run sh -c true", base)
        rpc = await timed(lambda: c.exec("true"), rounds)
        line('rpc exec("true")', rpc)
        line('rpc exec(["/bin/true"])', await timed(lambda: c.exec(["/bin/true"]), rounds))
        line("rpc ping", await timed(c.ping, rounds * 4))
        print(f"{'exec overhead over baseline (p50)':<34} {pct(rpc, 0.5) - pct(base, 0.5):7.3f} ms")

        data = os.urandom(1 << 20) * size_mib

        async def chunks() -> AsyncIterator[memoryview]:
            view = memoryview(data)
            for i in range(0, len(view), 4 << 20):
                yield view[i : i + (4 << 20)]

        for attempt in range(2):
            t = time.perf_counter()
            await c.upload("big.bin", chunks())
            up = time.perf_counter() - t
            t = time.perf_counter()
            n = 0
            async for chunk in c.download("big.bin"):
                n += len(chunk)
            down = time.perf_counter() - t
            assert n == len(data)
            mb = len(data) / 1e6
            print(f"{size_mib} MiB upload   (run {attempt + 1})           {mb / up:8.0f} MB/s")
            print(f"{size_mib} MiB download (run {attempt + 1})           {mb / down:8.0f} MB/s")
        await c.remove("big.bin")

        for n in (10, 100):
            t = time.perf_counter()
            await asyncio.gather(*(c.exec("true") for _ in range(n)))
            el = time.perf_counter() - t
            print(
                f"{n:>4} concurrent exec(true)           {1000 * el:7.1f} ms total ({n / el:6.0f}/s)"
            )
        t = time.perf_counter()
        await asyncio.gather(*(c.ping() for _ in range(1000)))
        el = time.perf_counter() - t
        print(f"1000 concurrent ping                {1000 * el:7.1f} ms total ({1000 / el:6.0f}/s)")
        await c.aclose()
    finally:
        guest.terminate()
        guest.wait()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(ws, ignore_errors=True)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=500)
    ap.add_argument("--workspace-dir", default="/dev/shm", help="where the temp workspace goes")
    ns = ap.parse_args()
    asyncio.run(main(ns.size_mib, ns.rounds, ns.workspace_dir))
