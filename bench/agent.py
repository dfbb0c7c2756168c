"""Agent-run benchmarks: controller overhead per step, concurrent runs, memory per run.

    .venv/bin/python bench/agent.py [--quick]

Overhead per step = step wall time - model time - tool time, where the model is the scripted
provider and the tool a trivial `exec true`; i.e. what the controller itself adds (events,
store writes, artifact scans, bookkeeping). Prints figures; never passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.agents import loop as loop_mod
from runtime.agents import tools as tools_mod
from runtime.agents.spec import AgentSpec
from runtime.controller import open_controller
from runtime.logs import configure_logging
from runtime.providers.registry import make_provider
from runtime.settings import Settings


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


class Timing:
    def __init__(self) -> None:
        self.model = 0.0
        self.tool = 0.0
        self.loop = 0.0


def timed_provider(timing: Timing) -> Any:
    def factory(model: str, **kw: Any) -> Any:
        inner = make_provider(model, **kw)

        class Timed:
            name = inner.name
            model = inner.model

            async def complete(self, *a: Any, **k: Any) -> Any:
                t = time.perf_counter()
                try:
                    return await inner.complete(*a, **k)
                finally:
                    timing.model += time.perf_counter() - t

            async def aclose(self) -> None:
                await inner.aclose()

        return Timed()

    return factory


def patch_tool_timing(timing: Timing) -> None:
    original = tools_mod.Toolbox.call

    async def call(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await original(self, *a, **k)
        finally:
            timing.tool += time.perf_counter() - t

    tools_mod.Toolbox.call = call  # type: ignore[method-assign]
    original_run = loop_mod.AgentLoop.run

    async def run(self: Any, *a: Any, **k: Any) -> Any:
        t = time.perf_counter()
        try:
            return await original_run(self, *a, **k)
        finally:
            timing.loop += time.perf_counter() - t

    loop_mod.AgentLoop.run = run  # type: ignore[method-assign]


async def bench(quick: bool) -> None:
    home = Path(tempfile.mkdtemp(prefix="corral-bench-agent-"))
    steps = 10 if quick else 40
    script = home / "turns.yaml"
    turns = [
        {
            "tool_calls": [{"name": "exec", "arguments": {"command": "true"}}],
            "usage": {"input_tokens": 10, "output_tokens": 5},
        }
        for _ in range(steps)
    ]
    turns.append({"text": "done", "usage": {"input_tokens": 10, "output_tokens": 5}})
    script.write_text(yaml.safe_dump({"turns": turns}))
    spec = AgentSpec.from_dict(
        {
            "name": "bench",
            "model": f"scripted:{script}",
            "tools": ["exec"],
            "limits": {"max_steps": steps + 5, "max_tool_calls": steps + 5},
        }
    )
    timing = Timing()
    patch_tool_timing(timing)
    settings = Settings(home=home)
    try:
        await _measure(settings, spec, steps, timing)
    finally:  # whatever happened, leave no sandbox behind
        async with open_controller(settings) as ctl:
            for h in await ctl.backend.list():
                await ctl.backend.destroy(h.id)


async def _measure(settings: Settings, spec: AgentSpec, steps: int, timing: Timing) -> None:
    quick = steps <= 10
    async with open_controller(settings) as ctl:
        ctl.runner.provider_factory = timed_provider(timing)
        # 1. overhead per step, measured per run and divided by its steps
        overheads: list[float] = []
        for _ in range(3 if quick else 8):
            timing.model = timing.tool = timing.loop = 0.0
            rec = await ctl.runner.create(spec, "bench")
            final = await ctl.runner.start(rec)
            assert final.status == "completed", final.errors
            # the loop's wall time, less what the model and the tools took, per step
            overheads.append(max(timing.loop - timing.model - timing.tool, 0.0) / (steps + 1))
        # 2. 20 concurrent runs
        n = 5 if quick else 20
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        t = time.perf_counter()
        recs = [await ctl.runner.create(spec, f"c{i}") for i in range(n)]
        finals = await asyncio.gather(*(ctl.runner.start(r) for r in recs), return_exceptions=True)
        wall = time.perf_counter() - t
        failures = sum(1 for f in finals if isinstance(f, BaseException) or f.status != "completed")
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        orphans = len(await ctl.backend.list())
    print(f"\nCorral agent benchmark ({steps} steps per run, scripted model, exec `true`)\n")
    print(
        f"controller overhead per step   p50 {pct(overheads, 50) * 1000:.2f} ms   p99 {pct(overheads, 99) * 1000:.2f} ms"
    )
    print(
        f"{n} concurrent runs             wall {wall:.1f} s   failures {failures}   sandboxes left {orphans} (kept for follow-ups, removed below)"
    )
    print(
        f"controller max RSS             {rss1 / 1024:.0f} MiB (grew {(rss1 - rss0) / 1024 / n:.1f} MiB per concurrent run)"
    )
    async with open_controller(settings) as ctl:
        for h in await ctl.backend.list():
            await ctl.backend.destroy(h.id)


if __name__ == "__main__":
    configure_logging("console", "warning")  # figures on stdout, not log lines
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    asyncio.run(bench(ap.parse_args().quick))
