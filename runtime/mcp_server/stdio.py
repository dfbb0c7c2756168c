"""`corral mcp`: the MCP tools over stdio for one local user (a desktop assistant, an IDE).

The process opens its own controller on `$CORRAL_HOME` (the same store and engine as the
other commands, so `corral sandbox ls` sees what an MCP client created), and every call is
the single-user tenant `local` with the default policy (`CORRAL_TENANT_*`), as on a
`corral serve` without keys. Sandboxes outlive the process until deleted or idle past their
TTL; an idle reaper runs while the server does. stdout carries the protocol only: logs go to
stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from mcp.server.stdio import stdio_server

from runtime.api.auth import LOCAL_TENANT, ApiKeys, Principal
from runtime.api.config import ApiConfig
from runtime.api.hub import SandboxHub
from runtime.api.metrics import Metrics
from runtime.api.policy import policy_from_env
from runtime.api.quotas import Quotas
from runtime.api.service import InteractionService
from runtime.controller import open_controller
from runtime.mcp_server.server import build_server
from runtime.mcp_server.tools import Services
from runtime.settings import Settings
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.mcp")
REAP_INTERVAL = 60.0


def local_principal() -> Principal:
    return Principal(LOCAL_TENANT, policy_from_env(os.environ).resolved(single_user=True))


@asynccontextmanager
async def local_services(settings: Settings) -> AsyncIterator[Services]:
    """The controller and the services the HTTP app would build, for this process alone."""
    async with AsyncExitStack() as stack:
        ctl = await stack.enter_async_context(open_controller(settings))
        config = ApiConfig(keys=ApiKeys(default_policy=local_principal().policy))
        quotas = Quotas(ctl.store, ctl.backend, ctl.runner.tasks)
        service = InteractionService(ctl, config, Metrics(), None, quotas)
        stack.push_async_callback(service.aclose)
        hub = SandboxHub(ctl.store, ctl.backend)
        stack.push_async_callback(hub.aclose)
        yield Services(ctl, config, hub, quotas, service)


async def _reap(hub: SandboxHub) -> None:
    while True:
        await asyncio.sleep(REAP_INTERVAL)
        try:
            await hub.backend.reap_idle()
            await hub.forget_missing()
        except SandboxError as exc:
            log.warning("reaper.failed", error=str(exc))


async def serve_stdio(settings: Settings) -> None:
    async with local_services(settings) as services:
        who = local_principal()

        def resolve(_request: Any) -> tuple[Services, Principal]:
            return services, who

        server = build_server(resolve)
        reaper = asyncio.create_task(_reap(services.hub), name="sandbox-reaper")
        try:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
