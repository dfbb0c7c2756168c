"""Browser benchmarks: time to the first browser action, and per-action latency.

    .venv/bin/python bench/browser.py [--rounds 30] [--network allowlist|open]

A local site (tests/sandbox/browser_site.py) is served on the host and reached through the
egress proxy (`allowlist`, the default). Prints figures; never passes or fails on time.
Everything it creates lives under a temporary CORRAL_HOME and is removed at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.logs import configure_logging
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.egress import EgressOptions
from sandbox.spec import SandboxSpec
from tests.sandbox.browser_site import Site, serve

IMAGE = "corral/browser"
HOST = "site.test"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def row(name: str, xs: list[float]) -> None:
    print(
        f"  {name:<28} p50 {pct(xs, 50) * 1000:8.1f} ms   p95 {pct(xs, 95) * 1000:8.1f} ms"
        f"   mean {statistics.fmean(xs) * 1000:8.1f} ms   (n={len(xs)})"
    )


async def timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t = time.perf_counter()
    await fn()
    return time.perf_counter() - t


async def bench(site: Site, backend: DockerBackend, network: str, rounds: int) -> None:
    host = HOST if network == "allowlist" else site.gateway
    url = site.url(host)
    allow = (HOST,) if network == "allowlist" else ()
    spec = SandboxSpec.model_validate({"image": IMAGE, "network": network, "allowlist": allow})

    # Warm the egress proxy (it starts once per home) so the figures below are per sandbox.
    warm = await Sandbox.create(spec, backend=backend)
    await warm.destroy()

    t0 = time.perf_counter()
    sb = await Sandbox.create(spec, backend=backend)
    created = time.perf_counter() - t0
    try:
        await sb.browser.goto(url)
        first = time.perf_counter() - t0
        print(f"\nnetwork={network}, image={IMAGE}")
        print(f"  sandbox create -> ready       {created * 1000:8.1f} ms")
        print(f"  sandbox start -> first goto   {first * 1000:8.1f} ms  (Chromium launch included)")

        gotos, snaps, clicks, texts = [], [], [], []
        for _ in range(rounds):
            gotos.append(await timed(lambda: sb.browser.goto(url)))
            snaps.append(await timed(lambda: sb.browser.snapshot()))
            clicks.append(await timed(lambda: sb.browser.click(text="About us")))
            texts.append(await timed(lambda: sb.browser.text()))
        row("goto (local page)", gotos)
        row("snapshot", snaps)
        row("click (navigates)", clicks)
        row("read text", texts)
    finally:
        await sb.destroy()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--network", choices=["allowlist", "open"], default="allowlist")
    ns = parser.parse_args()
    configure_logging(level="warning")
    home = Path(tempfile.mkdtemp(prefix="corral-bench-browser-"))
    with serve() as site:
        options = EgressOptions(
            allow_private=(f"{site.gateway}:{site.port}",), hosts={HOST: site.gateway}
        )
        backend = DockerBackend(home, egress=options)
        try:
            await bench(site, backend, ns.network, ns.rounds)
        finally:
            for h in await backend.list():
                await backend.destroy(h.id)
            await backend.reconcile(adopt=False)
            await backend.aclose()
            shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
