"""The HTTP API app: `create_app(settings)` -> FastAPI.

The lifespan owns the controller (`open_controller`) unless one is passed in, settles what a
previous process left (`runtime.recovery`), and runs the webhook worker and the idle-sandbox
reaper. Nothing is created at import time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

import structlog
from fastapi import Depends, FastAPI

from runtime import e2b
from runtime.api.accesslog import AccessLog
from runtime.api.bodylimit import BodyLimit
from runtime.api.config import ApiConfig
from runtime.api.deps import ApiState
from runtime.api.docs import install_docs
from runtime.api.errors import install_error_handlers
from runtime.api.fleet import running_fleet
from runtime.api.forwarding import FleetForwarding
from runtime.api.hub import SandboxHub
from runtime.api.metrics import HttpMetrics, Metrics, note_route
from runtime.api.openapi import install_openapi
from runtime.api.quotas import Quotas
from runtime.api.routes import (
    agents,
    artifacts,
    console,
    health,
    interactions,
    runs,
    sandboxes,
    webhooks,
)
from runtime.api.service import InteractionService
from runtime.controller import Controller, open_controller
from runtime.fleet.node import NodeConfig
from runtime.fleet.takeover import taking_over
from runtime.mcp_server.http import McpEndpoint
from runtime.recovery import recover
from runtime.settings import Settings
from runtime.webhooks import WebhookSecrets, WebhookWorker
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.api")
API_VERSIONS = ("v1", "v1beta")


def create_app(
    settings: Settings,
    *,
    controller: Controller | None = None,
    config: ApiConfig | None = None,
    node: NodeConfig | None = None,
) -> FastAPI:
    cfg = config or ApiConfig.from_env(settings)
    metrics = Metrics()
    mcp = McpEndpoint(local_only=cfg.keys.single_user)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            ctl = controller
            if ctl is None:
                ctl = await stack.enter_async_context(open_controller(settings, node=node))
            secrets = WebhookSecrets(settings.home)
            worker = WebhookWorker(
                ctl.store,
                secrets,
                policy=cfg.webhook_policy,
                poll=cfg.webhook_poll,
                on_attempt=lambda outcome: metrics.webhooks.labels(outcome).inc(),
            )
            stack.push_async_callback(worker.aclose)
            quotas = Quotas(ctl.store, ctl.backend, ctl.runner.tasks)
            service = InteractionService(ctl, cfg, metrics, worker, quotas)
            stack.push_async_callback(service.aclose)
            ctl.runner.track(service.model_tasks)  # leased too: renewed, stopped when lost
            hub = SandboxHub(ctl.store, ctl.backend)
            stack.push_async_callback(hub.aclose)
            app.state.corral = ApiState(ctl, cfg, metrics, service, hub, secrets, worker, quotas)
            # Several nodes on one PostgreSQL: events, cancels and sandbox calls cross nodes.
            fleet = await stack.enter_async_context(running_fleet(ctl, service))
            app.state.fleet = fleet
            await recover(ctl, restart=service.restart, finished=service.on_finished)
            # Runs of dead nodes continue here; on shutdown this node's runs are handed off.
            await stack.enter_async_context(taking_over(ctl, service.restart, service.on_finished))
            await stack.enter_async_context(mcp.running())
            worker.start()
            reaper = asyncio.create_task(
                tend_forever(hub, cfg.reap_interval), name="sandbox-reaper"
            )
            try:
                yield
            finally:
                reaper.cancel()
                with suppress(asyncio.CancelledError):
                    await reaper

    app = FastAPI(
        title="Corral",
        version="0.1.0",
        summary="Self-hosted runtime for managed AI agents (Interactions-compatible API)",
        lifespan=lifespan,
        dependencies=[Depends(note_route)],
        docs_url=None,  # served from local files by install_docs (no CDN)
        redoc_url=None,
    )
    install_error_handlers(app)
    install_openapi(app)
    install_docs(app)
    for version in API_VERSIONS:
        app.include_router(interactions.router, prefix=f"/{version}")
    app.include_router(agents.router)
    app.include_router(artifacts.router)
    app.include_router(sandboxes.router)
    app.include_router(webhooks.router)
    app.include_router(health.router)
    app.include_router(runs.router)
    app.include_router(console.router)  # the web console's pages and files
    app.include_router(console.html_router)  # before E2B: its GET /sandboxes is for JSON
    for router in e2b.routers():  # the E2B front door (E2B_API_URL / E2B_SANDBOX_URL)
        app.include_router(router)
    app.router.routes.append(mcp.route)
    app.add_middleware(BodyLimit, json_limit=cfg.json_limit, upload_limit=cfg.upload_limit)
    app.add_middleware(FleetForwarding)  # another node's sandbox or artifacts: it answers
    app.add_middleware(HttpMetrics, metrics=metrics)
    app.add_middleware(AccessLog)
    return app


async def tend_forever(hub: SandboxHub, interval: float) -> None:
    """Remove sandboxes idle past their TTL (run sandboxes kept for follow-ups included) and
    keep the egress proxy up while sandboxes need it (SandboxHub.tend); `corral serve`'s and
    `corral mcp`'s reaper."""
    while True:
        await asyncio.sleep(interval)
        try:
            await hub.tend()
        except SandboxError as exc:
            log.warning("reaper.failed", error=str(exc))
        except Exception:  # one bad pass must not end the reaper for the server's lifetime
            with suppress(Exception):
                log.exception("reaper.crashed")
