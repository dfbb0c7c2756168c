"""The controller's parts wired together: settings, store, event bus, sandbox backend, runner.

Used by the CLI (in-process runs) and by the HTTP server (its lifespan owns one).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

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
    settings: Settings, *, warm_pool: bool = False
) -> AsyncIterator[Controller]:
    settings.ensure_dirs()
    store = await open_store(settings)
    backend = DockerBackend(settings.home, egress=settings.egress_options())
    pool = WarmPool(backend) if warm_pool else None
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
