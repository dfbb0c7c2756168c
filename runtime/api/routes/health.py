"""`/healthz` and `/metrics` (Prometheus text). Neither needs a key: they carry no tenant data,
and probes and scrapers rarely send one."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from runtime.api.deps import ApiState, StateDep
from runtime.api.fleet import get_fleet
from runtime.api.metrics import FleetView
from runtime.errors import CorralError
from runtime.fleet import queries
from sandbox.egress import HEALTHS
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.api.health")

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(state: StateDep) -> dict[str, Any]:
    """Cheap (no engine call): the egress proxy as the reaper last saw it; `status` is
    `degraded` while allowlist sandboxes need the proxy and it is down."""
    egress = state.hub.egress
    return {
        "status": "degraded" if egress is not None and egress.health == "down" else "ok",
        "runs_active": len(state.ctl.runner.tasks) + len(state.service.model_tasks),
        "egress_proxy": None if egress is None else egress.health,
    }


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep, request: Request) -> Response:
    try:
        census = await state.hub.census()
        egress = await state.ctl.backend.egress.status()
    except SandboxError as exc:
        # The engine is away: the HTTP and run metrics are still worth scraping; the engine's
        # gauges keep their last values and the log says why.
        log.warning("metrics.engine_unavailable", error=str(exc))
    else:
        for reason, count in census.items():
            state.metrics.sandboxes.labels(reason).set(count)
        for health in HEALTHS:
            state.metrics.egress.labels(health).set(1 if egress.health == health else 0)
        state.metrics.egress_restarts.set(egress.restarts)
    if get_fleet(request) is not None:
        state.metrics.fleet.view = await fleet_view(state)
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)


async def fleet_view(state: ApiState) -> FleetView:
    """This node's fleet counters and, if the database answers, the fleet's census."""
    ctl = state.ctl
    census = None
    if ctl.node is not None and ctl.store.node is not None:
        try:
            census = await queries.census(ctl.store, ctl.store.node, ctl.node.lease_ttl)
        except CorralError as exc:
            log.warning("metrics.fleet_census_unavailable", error=str(exc))
    return FleetView(ctl.stats, ctl.bus.poll_found, census)
