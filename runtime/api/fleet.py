"""The API server's part in a fleet of nodes on one PostgreSQL (nothing on SQLite).

`running_fleet(ctl, service)` is entered by the app's lifespan. On PostgreSQL it opens
the node's LISTEN/NOTIFY connection (`runtime.fleet.notify`), attaches it to the event bus
(events stored here are announced, events stored elsewhere wake local subscribers, which also
poll the store every `POLL_SECONDS`), watches for cancel requests aimed at runs this node
executes, and holds the `Forwarder` that sends sandbox calls on to their owner
(`runtime.api.forwarding`). On SQLite it yields None and nothing changes.

Cancel from any node: a node asked to cancel a run it does not execute records the request
durably (a `cancel.requested` event, a Corral event that stock SDK streams skip). If nobody
holds the run's lease (a queued run, or one whose node stopped renewing) it claims the run and
ends it `cancelled` itself; otherwise it NOTIFYs the request and waits up to `CANCEL_WAIT`
seconds for the run to end, trying the claim again after every quiet `POLL_SECONDS` (the lease
may come free meanwhile, and with no node having room nobody else would end the run). The owner stops the run the way a
local cancel does, on the notification or, if that was lost, at its next poll. A run whose
owner died keeps the request: whichever node takes it over finds it at its first poll.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from fastapi import Request

from runtime import lifecycle
from runtime.api.service import FINAL_STATUSES, InteractionService
from runtime.controller import Controller
from runtime.errors import CorralError
from runtime.events import CANCEL_REQUESTED, TERMINAL_EVENT
from runtime.fleet import queries
from runtime.fleet.forward import Forwarder
from runtime.fleet.notify import PgFanout, asyncpg_dsn
from runtime.ids import new_id
from runtime.store.base import InteractionRecord

log = structlog.get_logger("corral.fleet")

POLL_SECONDS = 1.0
"""Longest delay before a node sees another node's events or a cancel request it missed."""
CANCEL_WAIT = 30.0
"""How long a cancel on a non-owning node waits for the owner to end the run."""
LOCAL_CACHE = 10_000
"""Sandboxes remembered as this node's (a sandbox never moves, so the answer never goes stale)."""


@dataclass(eq=False)
class Fleet:
    origin: str
    """This node's id as its notifications carry it."""
    ctl: Controller
    service: InteractionService
    fanout: PgFanout
    forwarder: Forwarder
    _local: set[tuple[str | None, str]] = field(default_factory=set)
    _cancelling: set[str] = field(default_factory=set)
    _look: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def cancel_elsewhere(self, rec: InteractionRecord) -> InteractionRecord:
        """Ask the node running `rec` to cancel it; the record once it ended (or, if the
        owner does not answer within `CANCEL_WAIT`, as it is: the request stays recorded)."""
        ev = await self.ctl.bus.emit(rec.id, CANCEL_REQUESTED, {"node": self.node})
        claimed = await self.ctl.store.claim_interaction(rec.id)
        if claimed is not None:
            return await self._end_unstarted(claimed)
        self.fanout.cancel(rec.id)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(CANCEL_WAIT):
                events = self.ctl.bus.subscribe(rec.id, after=ev.event_id, heartbeat=POLL_SECONDS)
                async for got in events:
                    if got is None:
                        # Quiet: the lease may have come free meanwhile (the run was being
                        # queued, or its node died and no node has room to take it over).
                        claimed = await self.ctl.store.claim_interaction(rec.id)
                        if claimed is not None:
                            break
                    elif got.event_type == TERMINAL_EVENT:
                        break
        if claimed is not None:
            return await self._end_unstarted(claimed)
        return await self.ctl.store.get_interaction(rec.tenant, rec.id)

    async def _end_unstarted(self, claimed: InteractionRecord) -> InteractionRecord:
        """A run nobody executes, claimed by this node (queued, or its node stopped renewing):
        it ends here, `cancelled`, without starting."""
        errors: list[dict[str, Any]] = [{"code": "cancelled", "message": "cancelled"}]
        store, bus = self.ctl.store, self.ctl.bus
        final = await lifecycle.finish(store, bus, claimed, "cancelled", errors, None)
        await self.service.on_finished(final)
        return final

    @property
    def node(self) -> str:
        """This node's id: the store's (it records sandboxes and leases under it) once set."""
        return self.ctl.store.node or self.origin

    def owns(self, tenant: str | None, sandbox_id: str) -> bool:
        """Known to be this node's sandbox (no database read needed)."""
        return (tenant, sandbox_id) in self._local

    def remember_local(self, tenant: str | None, sandbox_id: str) -> None:
        if len(self._local) >= LOCAL_CACHE:
            self._local.clear()
        self._local.add((tenant, sandbox_id))

    def local_runs(self) -> set[str]:
        return set(self.ctl.runner.tasks) | set(self.service.model_tasks)

    async def watch_cancels(self) -> None:
        """Cancel local runs that another node recorded a cancel for (on notice, or polled)."""
        while True:
            notified = True
            try:
                await asyncio.wait_for(self._look.wait(), POLL_SECONDS)
            except TimeoutError:
                notified = False
            self._look.clear()
            local = self.local_runs() - self._cancelling
            if not local:
                continue
            try:
                wanted = await queries.cancel_requests(self.ctl.store, local)
            except CorralError as exc:  # the database is away: try again at the next poll
                log.warning("fleet.cancel_poll_failed", error=str(exc))
                continue
            if wanted and not notified:
                self.ctl.stats.poll_fallbacks["cancels"] += 1
            for iid, tenant in wanted:
                self._cancelling.add(iid)
                task = asyncio.create_task(self._cancel(tenant, iid), name=f"cancel-{iid}")
                self._tasks.add(task)  # held until done (the loop keeps only weak references)
                task.add_done_callback(self._tasks.discard)

    async def _cancel(self, tenant: str, interaction_id: str) -> None:
        log.info("fleet.cancel", interaction=interaction_id)
        try:
            await self.service.cancel(tenant, interaction_id)
        except CorralError as exc:
            log.warning("fleet.cancel_failed", interaction=interaction_id, error=str(exc))
        finally:
            self._cancelling.discard(interaction_id)

    def look(self, interaction_id: str | None = None) -> None:
        if interaction_id is None or interaction_id in self.local_runs():
            self._look.set()

    def reconnected(self) -> None:
        self.ctl.bus.wake_all()
        self.look()


@asynccontextmanager
async def running_fleet(
    ctl: Controller, service: InteractionService
) -> AsyncIterator[Fleet | None]:
    """The node's fleet links while the server runs; None on a database that is not shared."""
    dsn = asyncpg_dsn(ctl.settings.db_url)
    if dsn is None:
        yield None
        return
    node = ctl.store.node or new_id("node")
    holder: list[Fleet] = []
    fanout = PgFanout(
        dsn,
        origin=node,
        on_events=ctl.bus.wake,
        on_cancel=lambda iid: holder[0].look(iid) if holder else None,
        on_reconnect=lambda: holder[0].reconnected() if holder else None,
        stats=ctl.stats,
    )
    fleet = Fleet(node, ctl, service, fanout, Forwarder(node, stats=ctl.stats))
    holder.append(fleet)
    await fanout.start()
    ctl.bus.attach(fanout, poll=POLL_SECONDS)
    watcher = asyncio.create_task(fleet.watch_cancels(), name="fleet-cancels")
    try:
        yield fleet
    finally:
        for task in (watcher, *fleet._tasks):
            task.cancel()
        for task in (watcher, *fleet._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        ctl.bus.attach(None, poll=None)
        await fanout.aclose()
        await fleet.forwarder.aclose()


def get_fleet(request: Request) -> Fleet | None:
    fleet: Fleet | None = getattr(request.app.state, "fleet", None)
    return fleet


def unfinished(rec: InteractionRecord) -> bool:
    return rec.status not in FINAL_STATUSES
