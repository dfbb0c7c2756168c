"""E2B's sandbox lifecycle (`E2B_API_URL`) on `SandboxHub`: create, list, get, connect,
kill, set timeout. Same keys (sent as `X-API-KEY`), tenancy and ceilings as
`/v1beta/sandboxes`. The E2B timeout becomes the sandbox's idle TTL.
"""

from __future__ import annotations

import time
import urllib.parse
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.api.admission import check_ceilings, create_counted
from runtime.api.schemas import CreateSandbox
from runtime.e2b import metrics, watch
from runtime.e2b.common import (
    ENVD_VERSION,
    E2BError,
    E2BState,
    Unsupported,
    api_state,
    principal,
)
from runtime.e2b.routes import E2BRoute
from runtime.store.base import SandboxRecord
from runtime.views import iso

DEFAULT_TIMEOUT = 300
"""E2B's default sandbox timeout (seconds)."""
MAX_TIMEOUT = 24 * 3600
MAX_METRICS_IDS = 100


class NewSandbox(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    templateID: str = Field(min_length=1, max_length=256)
    timeout: int = Field(DEFAULT_TIMEOUT, ge=1, le=MAX_TIMEOUT)
    metadata: dict[str, str] = Field(default_factory=dict, max_length=64)
    envVars: dict[str, str] = Field(default_factory=dict, max_length=256)
    allow_internet_access: bool | None = None
    autoPause: bool = False
    mcp: Any = None
    network: Any = None
    volumeMounts: Any = None


class Timeout(BaseModel):
    model_config = ConfigDict(extra="ignore")
    timeout: int = Field(ge=0, le=MAX_TIMEOUT)


class ConnectBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    timeout: int | None = Field(None, ge=0, le=MAX_TIMEOUT)


def router(e2b: E2BState) -> APIRouter:
    r = APIRouter(route_class=E2BRoute, tags=["e2b"], include_in_schema=False)

    def created(request: Request, rec: SandboxRecord) -> dict[str, Any]:
        info = rec.spec.get("e2b", {})
        return {
            "templateID": info.get("template", rec.spec.get("image")),
            "sandboxID": rec.id,
            "clientID": "corral",
            "envdVersion": ENVD_VERSION,
            "envdAccessToken": e2b.token(request, rec),
            "trafficAccessToken": e2b.token(request, rec),
            "domain": None,
        }

    def detail(request: Request, rec: SandboxRecord, *, token: bool) -> dict[str, Any]:
        info = rec.spec.get("e2b", {})
        ttl = rec.spec.get("idle_ttl") or DEFAULT_TIMEOUT
        memory = rec.spec.get("memory") or 0
        out = {
            "templateID": info.get("template", rec.spec.get("image")),
            "sandboxID": rec.id,
            "clientID": "corral",
            "startedAt": iso(rec.created),
            "endAt": iso(rec.last_used + timedelta(seconds=float(ttl))),
            "envdVersion": ENVD_VERSION,
            "cpuCount": max(1, int(rec.spec.get("cpus") or 1)),
            "memoryMB": int(memory) // 1024**2 if isinstance(memory, int) else 0,
            "diskSizeMB": 0,
            "state": "paused" if rec.state == "paused" else "running",
            "metadata": info.get("metadata", {}),
        }
        if token:
            out["envdAccessToken"] = e2b.token(request, rec)
        return out

    async def create(request: Request, body: NewSandbox) -> Response:
        who = principal(request)
        for name in ("mcp", "network", "volumeMounts"):
            if getattr(body, name):
                raise Unsupported(f"sandbox option '{name}'")
        if body.autoPause:
            raise Unsupported("auto-pause")
        state = api_state(request)
        req = CreateSandbox(
            image=e2b.image_for(body.templateID),
            network="open" if body.allow_internet_access else "none",
            env={**body.envVars, "HOME": "/workspace"},
            ttl=float(body.timeout),
        )
        check_ceilings(who.policy, req)
        spec = state.hub.spec_for(req)
        rec = await create_counted(state.hub, state.quotas, who.tenant, who.policy, spec)
        rec.spec["e2b"] = {"template": body.templateID, "metadata": body.metadata}
        await state.hub.store.record_sandbox(rec)
        e2b.remember(rec, who.policy)
        return JSONResponse(created(request, rec), status_code=201)

    r.add_api_route("/v2/sandboxes", create, methods=["POST"])
    r.add_api_route("/sandboxes", create, methods=["POST"])

    async def list_(request: Request) -> list[dict[str, Any]]:
        who = principal(request)
        q = request.query_params
        wanted = {
            urllib.parse.unquote(k): urllib.parse.unquote(v)
            for k, v in urllib.parse.parse_qsl(q.get("metadata", ""))
        }
        states = {s for s in q.get("state", "").split(",") if s}
        out = []
        for rec in await api_state(request).hub.list(who.tenant):
            if rec.interaction_id is not None:
                continue
            d = detail(request, rec, token=False)
            if any(d["metadata"].get(k) != v for k, v in wanted.items()):
                continue
            if states and d["state"] not in states:
                continue
            if q.get("template") and d["templateID"] != q.get("template"):
                continue
            out.append(d)
        return out

    r.add_api_route("/v2/sandboxes", list_, methods=["GET"])
    r.add_api_route("/sandboxes", list_, methods=["GET"])

    async def metrics_of(request: Request, rec: SandboxRecord) -> list[dict[str, Any]]:
        """[one sample, now] if now is inside `?start=&end=` (Unix seconds); no history."""
        q = request.query_params
        now = time.time()
        start, end = _unix(q.get("start"), "start"), _unix(q.get("end"), "end")
        if rec.state == "paused" or (start is not None and now < start - 1):
            return []
        if end is not None and now > end + 1:
            return []
        return [await metrics.sample(api_state(request).hub.backend, rec)]

    async def many_metrics(request: Request) -> dict[str, Any]:
        who = principal(request)
        ids = [i for i in request.query_params.get("sandbox_ids", "").split(",") if i]
        if not ids:
            raise E2BError(400, "sandbox_ids is required")
        if len(ids) > MAX_METRICS_IDS:
            raise E2BError(400, f"at most {MAX_METRICS_IDS} sandbox_ids")
        hub = api_state(request).hub
        out: dict[str, Any] = {}
        for sandbox_id in dict.fromkeys(ids):
            got = await metrics_of(request, await hub.get(who.tenant, sandbox_id))
            if got:
                out[sandbox_id] = got[0]
        return {"sandboxes": out}

    r.add_api_route("/sandboxes/metrics", many_metrics, methods=["GET"])  # before {id}

    async def get(sandbox_id: str, request: Request) -> dict[str, Any]:
        who = principal(request)
        return detail(request, await api_state(request).hub.get(who.tenant, sandbox_id), token=True)

    r.add_api_route("/sandboxes/{sandbox_id}", get, methods=["GET"])

    async def metrics_(sandbox_id: str, request: Request) -> list[dict[str, Any]]:
        who = principal(request)
        return await metrics_of(request, await api_state(request).hub.get(who.tenant, sandbox_id))

    r.add_api_route("/sandboxes/{sandbox_id}/metrics", metrics_, methods=["GET"])

    async def kill(sandbox_id: str, request: Request) -> Response:
        who = principal(request)
        await api_state(request).hub.delete(who.tenant, sandbox_id)
        e2b.forget(sandbox_id)
        await watch.forget(e2b, sandbox_id)
        return Response(status_code=204)

    r.add_api_route("/sandboxes/{sandbox_id}", kill, methods=["DELETE"])

    async def set_timeout(sandbox_id: str, body: Timeout, request: Request) -> Response:
        """Keep the sandbox alive: its idle clock restarts (the TTL set at create stays)."""
        who = principal(request)
        await api_state(request).hub.connect(who.tenant, sandbox_id)
        return Response(status_code=204)

    r.add_api_route("/sandboxes/{sandbox_id}/timeout", set_timeout, methods=["POST"])

    async def resumed(request: Request, sandbox_id: str) -> SandboxRecord:
        """The tenant's sandbox, running again if it was paused."""
        who = principal(request)
        hub = api_state(request).hub
        rec = await hub.get(who.tenant, sandbox_id)
        if rec.state == "paused":
            await hub.backend.resume(rec.id)
            rec.state = "running"
            await hub.store.record_sandbox(rec)
        e2b.remember(rec, who.policy)
        await hub.connect(who.tenant, sandbox_id)
        return await hub.get(who.tenant, sandbox_id)

    async def connect(sandbox_id: str, body: ConnectBody, request: Request) -> Response:
        """Connect (resuming a paused sandbox, as E2B does)."""
        return JSONResponse(created(request, await resumed(request, sandbox_id)), status_code=200)

    r.add_api_route("/v2/sandboxes/{sandbox_id}/connect", connect, methods=["POST"])
    r.add_api_route("/sandboxes/{sandbox_id}/connect", connect, methods=["POST"])

    async def resume(sandbox_id: str, request: Request) -> Response:
        who = principal(request)
        if (await api_state(request).hub.get(who.tenant, sandbox_id)).state != "paused":
            raise E2BError(409, f"sandbox {sandbox_id} is not paused")
        return JSONResponse(created(request, await resumed(request, sandbox_id)), status_code=201)

    r.add_api_route("/sandboxes/{sandbox_id}/resume", resume, methods=["POST"])

    async def pause(sandbox_id: str, request: Request) -> Response:
        """Freeze every process of the sandbox (no CPU; memory and files kept)."""
        who = principal(request)
        hub = api_state(request).hub
        rec = await hub.get(who.tenant, sandbox_id)
        if rec.state == "paused":
            raise E2BError(409, f"sandbox {sandbox_id} is already paused")
        sb = await hub.connect(who.tenant, sandbox_id)
        await sb.pause()
        rec = await hub.get(who.tenant, sandbox_id)
        rec.state = "paused"
        await hub.store.record_sandbox(rec)
        e2b.remember(rec)
        return Response(status_code=204)

    r.add_api_route("/sandboxes/{sandbox_id}/pause", pause, methods=["POST"])

    for path, methods, feature in (
        ("/sandboxes/{sandbox_id}/refreshes", ["POST"], "refresh"),
        ("/sandboxes/{sandbox_id}/fork", ["POST"], "fork"),
        ("/sandboxes/{sandbox_id}/snapshots", ["POST"], "snapshots"),
        ("/sandboxes/{sandbox_id}/logs", ["GET"], "logs"),
        ("/v2/sandboxes/{sandbox_id}/logs", ["GET"], "logs"),
        ("/sandboxes/{sandbox_id}/network", ["PUT"], "network update"),
    ):
        r.add_api_route(path, _refuse(feature), methods=methods)
    every = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    for prefix, feature in (
        ("/templates", "templates"),
        ("/v2/templates", "templates"),
        ("/v3/templates", "templates"),
        ("/volumes", "volumes"),
        ("/secrets", "secrets"),
        ("/snapshots", "snapshots"),
    ):
        r.add_api_route(prefix, _refuse(feature), methods=every)
        r.add_api_route(prefix + "/{rest:path}", _refuse(feature), methods=every)
    return r


def _unix(raw: str | None, name: str) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        return float(int(raw))
    except ValueError:
        raise E2BError(400, f"{name} must be Unix seconds, got {raw!r}") from None


def _refuse(feature: str) -> Any:
    async def refuse(request: Request) -> Response:
        principal(request)
        raise Unsupported(feature)

    return refuse
