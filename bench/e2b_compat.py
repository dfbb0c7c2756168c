"""The E2B front door against Corral's own sandboxes API, one `corral serve` subprocess.

    .venv/bin/python bench/e2b_compat.py [--rounds 5] [--execs 50]

The same program twice, in the same run, rounds alternating: through the `e2b` SDK
(E2B_API_URL and E2B_SANDBOX_URL at the server) and through Corral's HTTP sandboxes API with
httpx. Prints medians and the ratio (target: the compatibility layer costs at most 1.3x the
native path); never passes or fails on time.

The e2b SDK runs every command as `/bin/bash -l -c CMD` (a login shell, as E2B's envd does),
so "command round trip" compares that with native `true` (which the guest execs without a
shell), and "same argv round trip" with native running the SDK's argv: the layer's own cost.
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


LOGIN = ["/bin/bash", "-l", "-c", "true"]
"""What the e2b SDK sends for `commands.run("true")`: E2B runs every command in a login bash."""
ROWS = (
    "create -> first command",
    "command round trip",
    "same argv round trip",
    "8 MiB write",
    "8 MiB read",
)


def native_round(http: httpx.Client, blob: bytes, out: dict[str, list[float]]) -> None:
    t = time.perf_counter()
    sid = http.post("/v1beta/sandboxes", json={"image": "corral/base"}).json()["id"]
    base = f"/v1beta/sandboxes/{sid}"
    http.post(f"{base}/exec", json={"command": "true"}).raise_for_status()
    out[ROWS[0]].append(time.perf_counter() - t)
    out[ROWS[3]].append(timed(http.put, f"{base}/files/b.bin", content=blob))
    out[ROWS[4]].append(timed(http.get, f"{base}/files/b.bin"))
    http.delete(base)


def e2b_round(
    http: httpx.Client,
    execs: int,
    blob: bytes,
    out: dict[str, list[float]],
    ours: dict[str, list[float]],
) -> None:
    """The e2b side; the native command rows run on the same sandbox, call for call in
    between, so both see the same container and the same moment of a noisy machine."""
    from e2b import Sandbox

    t = time.perf_counter()
    sb = Sandbox.create(timeout=300)
    sb.commands.run("true")
    out[ROWS[0]].append(time.perf_counter() - t)
    base = f"/v1beta/sandboxes/{sb.sandbox_id}"
    for _ in range(execs):
        rt = timed(sb.commands.run, "true")
        out[ROWS[1]].append(rt)
        out[ROWS[2]].append(rt)
        ours[ROWS[1]].append(timed(http.post, f"{base}/exec", json={"command": "true"}))
        ours[ROWS[2]].append(timed(http.post, f"{base}/exec", json={"command": LOGIN}))
    out[ROWS[3]].append(timed(sb.files.write, "/home/user/b.bin", blob))
    out[ROWS[4]].append(timed(sb.files.read, "/home/user/b.bin", format="bytes"))
    sb.kill()


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
        http = httpx.Client(base_url=url, timeout=120)
        ours: dict[str, list[float]] = {r: [] for r in ROWS}
        theirs: dict[str, list[float]] = {r: [] for r in ROWS}
        for _ in range(args.rounds):  # alternate, so a noisy spell hits both sides
            native_round(http, blob, ours)
            e2b_round(http, args.execs, blob, theirs, ours)
    finally:
        server.terminate()
        server.wait(30)
    print(f"\nE2B SDK on Corral vs Corral's own HTTP API (medians, {args.rounds} rounds)\n")
    for name in ROWS:
        mine, other = statistics.median(ours[name]), statistics.median(theirs[name])
        print(f"{name:<24} e2b {other * 1000:9.2f} ms   native {mine * 1000:9.2f} ms   "
              f"{other / mine:5.2f}x")  # fmt: skip
    print(
        "\ncommand round trip: native runs `true` (no shell); the e2b SDK sends "
        f"{' '.join(LOGIN)}.\nsame argv round trip: native runs that same argv, so the ratio "
        "is the compatibility layer's own cost."
    )


if __name__ == "__main__":
    main()
