"""Taking over runs whose node died: claim their expired leases and continue them here.

A node stops renewing (killed, partitioned, frozen): after one lease TTL its in-progress runs
are free. Every live node sweeps for them after each heartbeat (`sweep`), taking as many as it
has room for (`CORRAL_NODE_CAPACITY`); the claim (`SqlStore.claim_expired`) hands each to
exactly one node and bumps its epoch, which fences off the old owner should it wake up.

How a run continues (`Runner` does it, with `runtime.fleet.resume`):
- the conversation is rebuilt from the event log: every step recorded so far, minus the model
  output of a model turn that had not finished (that turn is asked again);
- a tool call that was in flight (its `function_call` recorded, no result) is run again, and
  the `run.resumed` event lists it (`rerun`), so no step runs twice silently;
- the sandbox: the old one is adopted when this node's engine and home hold it (the node came
  back); otherwise a fresh one is made and /workspace/out is restored from the artifacts the
  run had produced (the controller's copies, taken after every tool call).
Plain inference runs (`model=`) are not continued: they end `failed (interrupted)`.

`taking_over(ctl, ...)` runs the sweeps for the API server and, on shutdown (SIGTERM), drains:
no more claims, running runs get `CORRAL_DRAIN_GRACE` seconds to finish, then the rest are
stopped here without a verdict and their leases released, so another node continues them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import structlog

from runtime.controller import Controller
from runtime.errors import ConfigError, CorralError, NotFound
from runtime.store.base import InteractionRecord

log = structlog.get_logger("corral.fleet.takeover")

DEFAULT_DRAIN_GRACE = 10.0

Starter = Callable[[InteractionRecord], Awaitable[None]]
Finisher = Callable[[InteractionRecord], Awaitable[None]]


def is_agent_run(rec: InteractionRecord) -> bool:
    return rec.config.get("kind", "agent") == "agent" and "agent_spec" in rec.config


async def sweep(ctl: Controller, start: Starter, finished: Finisher) -> list[str]:
    """Claim expired runs this node has room for and continue them; the ids taken."""
    from runtime.recovery import fail_interrupted

    assert ctl.node is not None
    running = ctl.runner.running()
    room = ctl.node.capacity - len(running)
    taken = []
    for rec, previous in await ctl.store.claim_expired(running, limit=room):
        taken.append(rec.id)
        ctl.stats.takeovers["expired" if previous else "released"] += 1
        log.info("takeover.claimed", interaction=rec.id, from_node=previous, epoch=rec.lease_epoch)
        try:
            if is_agent_run(rec):
                ctl.runner.resumed_from[rec.id] = previous
                await start(rec)
            else:
                await finished(await fail_interrupted(ctl, rec))
        except NotFound:
            continue  # deleted meanwhile
    return taken


def drain_grace() -> float:
    raw = os.environ.get("CORRAL_DRAIN_GRACE", "").strip()
    if not raw:
        return DEFAULT_DRAIN_GRACE
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"CORRAL_DRAIN_GRACE must be a number of seconds, not {raw!r}") from None
    if value < 0:
        raise ConfigError("CORRAL_DRAIN_GRACE must not be negative")
    return value


@asynccontextmanager
async def taking_over(ctl: Controller, start: Starter, finished: Finisher) -> AsyncIterator[None]:
    """Sweep for expired runs while the server runs; drain on the way out (shared stores)."""
    if not ctl.shared or ctl.node is None:
        yield
        return
    grace = drain_grace()
    lock = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()
    heartbeat = ctl.heartbeat
    assert heartbeat is not None

    async def one_sweep() -> None:
        if lock.locked() or heartbeat.draining:
            return
        async with lock:
            try:
                await sweep(ctl, start, finished)
            except CorralError as exc:  # the database is away: the next beat tries again
                log.warning("takeover.sweep_failed", error=str(exc))

    def after_beat() -> None:
        task = asyncio.create_task(one_sweep(), name="fleet-takeover")
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    heartbeat.after_beat = after_beat
    await one_sweep()
    try:
        yield
    finally:
        heartbeat.after_beat = None
        await drain(ctl, grace)
        for task in list(tasks):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


async def drain(ctl: Controller, grace: float) -> None:
    """Stop claiming, let local runs finish for `grace` seconds, hand the rest to other nodes."""
    heartbeat = ctl.heartbeat
    assert heartbeat is not None
    heartbeat.draining = True
    with contextlib.suppress(CorralError):
        await heartbeat.beat()  # tell the others at once: a draining node claims nothing
    pending = [t for t in ctl.runner.tasks.values() if not t.done()]
    if pending and grace > 0:
        log.info("fleet.draining", runs=len(pending), grace=grace)
        await asyncio.wait(pending, timeout=grace)
    left = set(ctl.runner.running())
    if not left:
        return
    ctl.runner.abandon(left, handoff=True)  # stopped here without a verdict: not over
    await ctl.runner.settle(left)
    # Each run's task revoked its event writer before it ended (`Runner._let_go`): the
    # release drops this node's fence, and nothing of the run can write unfenced after it.
    for iid in left:
        with contextlib.suppress(CorralError):
            await ctl.store.release_interaction(iid)
    log.warning("fleet.handed_off", interactions=sorted(left))
