"""Gateway sandboxes: created over the API, owned by a tenant, reused across requests.

Ownership lives in the store (`record_sandbox`), so another tenant's id is NotFound and a
restarted server still knows who owns what. Connections are cached per sandbox (an RPC
handshake per request would cost more than most execs); a dead one is dropped and re-attached.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from runtime.api.errors import BadRequest
from runtime.api.quotas import TENANT_LABEL
from runtime.api.schemas import CreateSandbox
from runtime.errors import NotFound
from runtime.store.base import SandboxRecord, Store, utcnow
from runtime.views import iso
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.errors import SandboxError, SandboxNotFound
from sandbox.spec import SandboxSpec


class SandboxHub:
    def __init__(self, store: Store, backend: DockerBackend) -> None:
        self.store = store
        self.backend = backend
        self._open: dict[str, Sandbox] = {}
        self._lock = asyncio.Lock()

    @staticmethod
    def spec_for(req: CreateSandbox) -> SandboxSpec:
        """The sandbox a create request asks for (BadRequest if the fields do not combine)."""
        fields: dict[str, Any] = {
            "image": req.image,
            "network": req.network,
            "allowlist": tuple(req.allowlist),
            "env": req.env,
            "idle_ttl": req.ttl,
        }
        for name in ("cpus", "memory", "disk", "pids"):
            if getattr(req, name) is not None:
                fields[name] = getattr(req, name)
        try:
            return SandboxSpec.model_validate(fields)
        except ValidationError as exc:
            raise BadRequest(f"invalid sandbox: {_first_error(exc)}") from None

    async def create(self, tenant: str, spec: SandboxSpec) -> SandboxRecord:
        sb = await Sandbox.create(spec, backend=self.backend, labels={TENANT_LABEL: tenant})
        rec = SandboxRecord(
            id=sb.id,
            tenant=tenant,
            container_id=sb.handle.container_id,
            spec=spec.model_dump(mode="json"),
        )
        try:
            await self.store.record_sandbox(rec)
        except BaseException:
            await sb.destroy()
            raise
        self._open[sb.id] = sb
        return rec

    async def get(self, tenant: str, sandbox_id: str) -> SandboxRecord:
        return await self.store.get_sandbox(sandbox_id, tenant=tenant)

    async def list(self, tenant: str) -> list[SandboxRecord]:
        return await self.store.list_sandboxes(tenant)

    async def connect(self, tenant: str, sandbox_id: str) -> Sandbox:
        """A live connection to the tenant's sandbox (NotFound for anyone else's)."""
        rec = await self.store.get_sandbox(sandbox_id, tenant=tenant)
        sb = self._open.get(rec.id)
        if sb is not None and not sb.rpc.closed:
            return sb
        async with self._lock:
            sb = self._open.get(rec.id)
            if sb is None or sb.rpc.closed:
                try:
                    sb = await Sandbox.attach(rec.id, backend=self.backend)
                except SandboxNotFound:
                    with contextlib.suppress(NotFound):
                        await self.store.delete_sandbox(rec.id)
                    raise NotFound(f"sandbox {sandbox_id} not found (it was removed)") from None
                self._open[rec.id] = sb
            await self.store.record_sandbox(_touched(rec))
            return sb

    async def delete(self, tenant: str, sandbox_id: str) -> None:
        rec = await self.store.get_sandbox(sandbox_id, tenant=tenant)
        sb = self._open.pop(rec.id, None)
        if sb is not None:
            with contextlib.suppress(SandboxError):
                await sb.close()
        with contextlib.suppress(SandboxNotFound):
            await self.backend.destroy(rec.id)
        await self.store.delete_sandbox(rec.id, tenant=tenant)

    async def forget_missing(self) -> int:
        """Drop records (and connections) of sandboxes the backend no longer has (reaped)."""
        live = {h.id for h in await self.backend.list()}
        gone = 0
        for rec in await self.store.list_sandboxes():
            if rec.interaction_id is None and rec.id not in live:
                sb = self._open.pop(rec.id, None)
                if sb is not None:
                    with contextlib.suppress(SandboxError):
                        await sb.close()
                with contextlib.suppress(NotFound):
                    await self.store.delete_sandbox(rec.id)
                gone += 1
        return gone

    async def aclose(self) -> None:
        """Disconnect, but keep the sandboxes: they belong to their tenants until deleted."""
        for sb in list(self._open.values()):
            with contextlib.suppress(SandboxError):
                await sb.close()
        self._open.clear()


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


def _touched(rec: SandboxRecord) -> SandboxRecord:
    rec.last_used = utcnow()
    return rec


def sandbox_view(rec: SandboxRecord) -> dict[str, Any]:
    spec = rec.spec
    return {
        "id": rec.id,
        "object": "sandbox",
        "state": rec.state,
        "image": spec.get("image"),
        "cpus": spec.get("cpus"),
        "memory": spec.get("memory"),
        "network": spec.get("network"),
        "ttl": spec.get("idle_ttl"),
        "created": iso(rec.created),
        "last_used": iso(rec.last_used),
    }


def jsonable_result(result: Any) -> dict[str, Any]:
    """An ExecResult as JSON (text output; the raw byte copies are left out)."""
    data = asdict(result)
    data.pop("stdout_bytes", None)
    data.pop("stderr_bytes", None)
    return data
