"""The controller's parts wired together: settings, store, event bus, sandbox backend, runner.

Used by the CLI (in-process runs) and by the HTTP server (its lifespan owns one).

Every controller is a node (`runtime.fleet.node`): the runs it creates are leased to it. On a
shared database (PostgreSQL) it also heartbeats, renewing those leases; a run whose lease was
taken by another node is stopped here without writing further (`Runner.abandon`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from runtime.agents.registry import resolve_agent
from runtime.events import EventBus
from runtime.fleet.node import Heartbeat, NodeConfig
from runtime.fleet.stats import FleetStats
from runtime.runner import Runner
from runtime.settings import Settings
from runtime.store.sql import SqlStore, open_store
from sandbox.backends.docker import DockerBackend
from sandbox.pool import WarmPool


@dataclass
class Controller:
    settings: Settings
    store: SqlStore
    bus: EventBus
    backend: DockerBackend
    runner: Runner
    pool: WarmPool | None
    node: NodeConfig | None = None
    heartbeat: Heartbeat | None = None
    """Renews this node's leases; None on a database only this process uses (SQLite)."""
    stats: FleetStats = field(default_factory=FleetStats)
    """This node's fleet counters (the runner's own: it counts the leases it loses)."""

    @property
    def shared(self) -> bool:
        """Several nodes may use this database (PostgreSQL): leases are live."""
        return self.heartbeat is not None


@asynccontextmanager
async def open_controller(
    settings: Settings, *, warm_pool: int | None = None, node: NodeConfig | None = None
) -> AsyncIterator[Controller]:
    """`warm_pool`: sandboxes kept ready for the default agent's shape (default:
    `settings.warm_pool`, i.e. `CORRAL_WARM_POOL`); runs whose sandbox has that shape start
    from the pool. `node`: this process as a fleet node (default: an unaddressable node with a
    fresh id, as for an in-process CLI run; `corral serve` passes its own)."""
    settings.ensure_dirs()
    node = node or NodeConfig.from_env(settings.home, persistent=False)
    store = await open_store(settings)
    store.set_node(node.id, node.lease_ttl)
    backend = DockerBackend(settings.home, egress=settings.egress_options())
    size = settings.warm_pool if warm_pool is None else warm_pool
    pool = WarmPool(backend) if size > 0 else None
    if pool is not None:
        pool.add(resolve_agent(None).sandbox_spec(), size)
    bus = EventBus(store)
    runner = Runner(settings, store, bus, backend, pool=pool)
    heartbeat = None
    if store.dialect == "postgresql":
        heartbeat = Heartbeat(store, node, running=runner.running, on_lost=runner.abandon)
        runner.capacity = node.capacity
    try:
        if heartbeat is not None:
            await heartbeat.start()
        yield Controller(settings, store, bus, backend, runner, pool, node, heartbeat, runner.stats)
    finally:
        if heartbeat is not None:
            await heartbeat.aclose()
        await runner.aclose()
        if pool is not None:
            await pool.aclose()
        await backend.aclose()
        await store.aclose()
