"""`corral mcp`: the MCP tools over stdio for one local user (a desktop assistant, an IDE).

The process opens its own controller on `$CORRAL_HOME` (the same store and engine as the
other commands, so `corral sandbox ls` sees what an MCP client created), and every call is
the single-user tenant `local` with the default policy (`CORRAL_TENANT_*`), as on a
`corral serve` without keys. Sandboxes outlive the process until deleted or idle past their
TTL; while the server runs, `corral serve`'s reaper runs here too (`tend_forever`, every
`CORRAL_REAP_INTERVAL` seconds, default 60): it removes idle sandboxes and keeps the egress
proxy of allowlist sandboxes up while they need it (restarted if it died, removed once
unused). stdout carries the protocol only: logs go to stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp.server.stdio import stdio_server

from runtime.api.app import tend_forever
from runtime.api.auth import LOCAL_TENANT, ApiKeys, Principal
from runtime.api.config import ApiConfig
from runtime.api.hub import SandboxHub
from runtime.api.metrics import Metrics
from runtime.api.policy import policy_from_env
from runtime.api.quotas import Quotas
from runtime.api.service import InteractionService
from runtime.controller import open_controller
from runtime.errors import ConfigError
from runtime.mcp_server.server import build_server
from runtime.mcp_server.tools import Services
from runtime.settings import Settings

REAP_INTERVAL = 60.0
REAP_ENV = "CORRAL_REAP_INTERVAL"


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


def reap_interval() -> float:
    """`CORRAL_REAP_INTERVAL` in seconds (default 60); ConfigError naming it when invalid."""
    raw = os.environ.get(REAP_ENV, "").strip()
    if not raw:
        return REAP_INTERVAL
    try:
        value = float(raw)
    except ValueError:
        value = 0.0
    if not 0.1 <= value <= 86_400:  # also refuses nan
        raise ConfigError(f"{REAP_ENV} must be seconds between 0.1 and 86400, not {raw!r}")
    return value


async def serve_stdio(settings: Settings) -> None:
    interval = reap_interval()
    async with local_services(settings) as services:
        who = local_principal()

        def resolve(_request: Any) -> tuple[Services, Principal]:
            return services, who

        server = build_server(resolve)
        reaper = asyncio.create_task(tend_forever(services.hub, interval), name="sandbox-reaper")
        try:
            async with stdio_server() as (read, write):
                await server.run(read, write, server.create_initialization_options())
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
