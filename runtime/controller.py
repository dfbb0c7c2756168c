"""The controller's parts wired together: settings, store, event bus, sandbox backend, runner.

Used by the CLI (in-process runs) and by the HTTP server (its lifespan owns one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from runtime.agents.registry import resolve_agent
from runtime.events import EventBus
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


@asynccontextmanager
async def open_controller(
    settings: Settings, *, warm_pool: int | None = None
) -> AsyncIterator[Controller]:
    """`warm_pool`: sandboxes kept ready for the default agent's shape (default:
    `settings.warm_pool`, i.e. `CORRAL_WARM_POOL`); runs whose sandbox has that shape start
    from the pool."""
    settings.ensure_dirs()
    store = await open_store(settings)
    backend = DockerBackend(settings.home, egress=settings.egress_options())
    size = settings.warm_pool if warm_pool is None else warm_pool
    pool = WarmPool(backend) if size > 0 else None
    if pool is not None:
        pool.add(resolve_agent(None).sandbox_spec(), size)
    bus = EventBus(store)
    runner = Runner(settings, store, bus, backend, pool=pool)
    try:
        yield Controller(settings, store, bus, backend, runner, pool)
    finally:
        await runner.aclose()
        if pool is not None:
            await pool.aclose()
        await backend.aclose()
        await store.aclose()
