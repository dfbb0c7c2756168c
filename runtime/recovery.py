"""Restart durability: what a controller does at startup about what the previous one left.

The previous process may have died anywhere (SIGKILL included). Everything a run did is in the
store, so at startup:
- orphan containers are reconciled (`backend.reconcile`: live run sandboxes adopted, pool
  members and dead containers removed);
- an `in_progress` interaction that never got going (an agent run with no sandbox and no step
  after its input) is started again, as if it had been queued;
- any other `in_progress` interaction has lost its agent loop with the process: it ends
  `failed` with a reason, with `error` and `interaction.completed` events appended, so a client
  following its stream (resuming by event id) sees it end. Its sandbox, if still alive, is
  kept for follow-ups until its idle TTL, like any finished run's.

On a shared database (PostgreSQL, several nodes) none of that settling happens here: an
in-progress run may belong to a live node. Runs whose node died, this node's past included,
are continued by whichever node claims their expired lease (`runtime.fleet.takeover`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from runtime import lifecycle
from runtime.controller import Controller
from runtime.errors import NotFound
from runtime.store.base import InteractionRecord, Store
from sandbox.backends.base import ReconcileReport
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.recovery")
INTERRUPTED = "interrupted"

Starter = Callable[[InteractionRecord], Awaitable[None]]
Finisher = Callable[[InteractionRecord], Awaitable[None]]


@dataclass
class RecoveryReport:
    failed: list[str] = field(default_factory=list)
    restarted: list[str] = field(default_factory=list)
    reconciled: ReconcileReport | None = None


async def unfinished_interactions(store: Store) -> list[InteractionRecord]:
    """Every tenant's `in_progress` interactions."""
    return await store.list_unfinished_interactions()


async def recover(
    ctl: Controller,
    *,
    restart: Starter | None = None,
    finished: Finisher | None = None,
) -> RecoveryReport:
    """Reconcile containers and settle interrupted runs (see the module docstring).

    `restart(rec)` starts a run again (the API's launcher); without it nothing is restarted.
    `finished(rec)` is told about every run this ends (webhooks)."""
    report = RecoveryReport()
    try:
        report.reconciled = await ctl.backend.reconcile(adopt=True)
    except SandboxError as exc:
        log.warning("recovery.reconcile_failed", error=str(exc))
    if ctl.shared:
        return report
    live = ctl.runner.tasks.keys()
    for rec in await unfinished_interactions(ctl.store):
        if rec.id in live:
            continue
        try:
            if restart is not None and await _never_started(ctl.store, rec):
                await restart(rec)
                report.restarted.append(rec.id)
                continue
            final = await fail_interrupted(ctl, rec)
        except NotFound:
            continue  # deleted meanwhile
        report.failed.append(rec.id)
        if finished is not None:
            await finished(final)
    if report.failed or report.restarted:
        log.info("recovery.done", failed=len(report.failed), restarted=len(report.restarted))
    return report


async def _never_started(store: Store, rec: InteractionRecord) -> bool:
    if rec.config.get("kind", "agent") != "agent" or rec.sandbox_id:
        return False
    for ev in await store.list_events(rec.id):
        if ev.event_type == "step.start" and int(ev.payload.get("index", 0)) >= 1:
            return False
    return True


async def fail_interrupted(ctl: Controller, rec: InteractionRecord) -> InteractionRecord:
    reason = "the controller restarted while this run was in progress; its agent loop was lost"
    if rec.sandbox_id:
        alive = False
        with contextlib.suppress(SandboxError):
            alive = (await ctl.backend.status(rec.sandbox_id)).running
        if not alive:
            reason += f"; its sandbox {rec.sandbox_id} is gone"
    errors: list[dict[str, Any]] = [{"code": INTERRUPTED, "message": reason}]
    final = await lifecycle.finish(ctl.store, ctl.bus, rec, "failed", errors, None)
    log.warning("recovery.failed_run", interaction=rec.id, reason=reason)
    return final
