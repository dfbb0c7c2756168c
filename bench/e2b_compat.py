"""The E2B front door against Corral's own sandboxes API, one `corral serve` subprocess.

    .venv/bin/python bench/e2b_compat.py [--rounds 5] [--execs 50]

The same program twice, in the same run: through the `e2b` SDK (E2B_API_URL and
E2B_SANDBOX_URL at the server) and through Corral's HTTP sandboxes API with httpx. Prints
medians and the ratio (target: the compatibility layer costs at most 1.3x the native path);
never passes or fails on time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
SERVER = (
    "import sys, uvicorn; from runtime.api.app import create_app; "
    "from runtime.logs import configure_logging; configure_logging('auto', 'warning'); "
    "from runtime.settings import Settings; "
    "uvicorn.run(create_app(Settings.from_env()), host='127.0.0.1', port=int(sys.argv[1]), "
    "log_level='warning')"
)
MiB = 1024 * 1024


def timed(fn: Callable[..., object], *args: Any, **kwargs: Any) -> float:
    t = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t


def native(url: str, rounds: int, execs: int, blob: bytes) -> dict[str, float]:
    http = httpx.Client(base_url=url, timeout=120)
    first, rt, write, read = [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        sid = http.post("/v1beta/sandboxes", json={"image": "corral/base"}).json()["id"]
        base = f"/v1beta/sandboxes/{sid}"
        http.post(f"{base}/exec", json={"command": "true"}).raise_for_status()
        first.append(time.perf_counter() - t)
        rt += [timed(http.post, f"{base}/exec", json={"command": "true"}) for _ in range(execs)]
        write.append(timed(http.put, f"{base}/files/b.bin", content=blob))
        read.append(timed(http.get, f"{base}/files/b.bin"))
        http.delete(base)
    return summary(first, rt, write, read)


def through_e2b(rounds: int, execs: int, blob: bytes) -> dict[str, float]:
    from e2b import Sandbox

    first, rt, write, read = [], [], [], []
    for _ in range(rounds):
        t = time.perf_counter()
        sb = Sandbox.create(timeout=300)
        sb.commands.run("true")
        first.append(time.perf_counter() - t)
        rt += [timed(sb.commands.run, "true") for _ in range(execs)]
        write.append(timed(sb.files.write, "/home/user/b.bin", blob))
        read.append(timed(sb.files.read, "/home/user/b.bin", format="bytes"))
        sb.kill()
    return summary(first, rt, write, read)


def summary(*rows: list[float]) -> dict[str, float]:
    names = ("create -> first command", "command round trip", "8 MiB write", "8 MiB read")
    return {n: statistics.median(r) for n, r in zip(names, rows, strict=True)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--execs", type=int, default=50)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="corral-bench-e2b-")
    port = 18000 + os.getpid() % 1000
    env = {**os.environ, "CORRAL_HOME": home, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        os.environ.update(E2B_API_URL=url, E2B_SANDBOX_URL=url, E2B_API_KEY="local")
        blob = os.urandom(8 * MiB)
        ours = native(url, args.rounds, args.execs, blob)
        theirs = through_e2b(args.rounds, args.execs, blob)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\nE2B SDK on Corral vs Corral's own HTTP API (medians, {args.rounds} rounds)\n")
    for name, value in ours.items():
        other = theirs[name]
        print(f"{name:<26} e2b {other * 1000:9.2f} ms   native {value * 1000:9.2f} ms   "
              f"{other / value:5.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
