"""`/healthz` and `/metrics` (Prometheus text). Neither needs a key: they carry no tenant data,
and probes and scrapers rarely send one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from runtime.api.deps import StateDep

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz(state: StateDep) -> dict[str, Any]:
    return {
        "status": "ok",
        "runs_active": len(state.ctl.runner.tasks) + len(state.service.model_tasks),
    }


@router.get("/metrics", response_class=Response)
async def metrics(state: StateDep) -> Response:
    state.metrics.sandboxes.set(len(await state.ctl.store.list_sandboxes()))
    return Response(state.metrics.render(), media_type=CONTENT_TYPE_LATEST)
