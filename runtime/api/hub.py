"""Gateway sandboxes: created over the API, owned by a tenant, reused across requests.

Ownership lives in the store (`record_sandbox`), so another tenant's id is NotFound and a
restarted server still knows who owns what. The sandboxes API also shows (and deletes) the
sandboxes kept for the tenant's runs (`kept`, `kept_one`, `remove`): a run's sandbox belongs
to whoever owns the interaction its label names (runtime/kept.py). Connections are cached per sandbox (an RPC
handshake per request would cost more than most execs); a dead one is dropped and re-attached.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from dataclasses import asdict
from typing import Any

from pydantic import ValidationError

from runtime.api.errors import BadRequest
from runtime.api.quotas import TENANT_LABEL
from runtime.api.schemas import CreateSandbox
from runtime.errors import Conflict, NotFound
from runtime.kept import REASONS, Kept, why_kept
from runtime.kept import iso as iso_epoch
from runtime.store.base import SandboxRecord, Store, utcnow
from runtime.views import iso
from sandbox.api import Sandbox
from sandbox.backends.base import SandboxHandle
from sandbox.backends.docker import DockerBackend
from sandbox.egress import ProxyStatus
from sandbox.errors import SandboxError, SandboxNotFound
from sandbox.spec import SandboxSpec


class SandboxHub:
    def __init__(self, store: Store, backend: DockerBackend) -> None:
        self.store = store
        self.backend = backend
        self._open: dict[str, Sandbox] = {}
        self._lock = asyncio.Lock()
        self.egress: ProxyStatus | None = None
        """The egress proxy as the reaper last saw it (None: not checked yet)."""

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
        """A live connection to the tenant's sandbox (NotFound for anyone else's; Conflict for
        the sandbox of one of its runs, which belongs to the run)."""
        try:
            rec = await self.store.get_sandbox(sandbox_id, tenant=tenant)
        except NotFound:
            await self._refuse_run_sandbox(tenant, sandbox_id)
            raise
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
        # The reaper may have forgotten it meanwhile (it saw the container gone mid-destroy):
        # the sandbox is deleted either way, so this DELETE succeeds.
        with contextlib.suppress(NotFound):
            await self.store.delete_sandbox(rec.id, tenant=tenant)

    # -- every sandbox kept for the tenant (gateway ones and its runs') ---------------------
    async def kept(self, tenant: str) -> builtins.list[dict[str, Any]]:
        """The tenant's sandboxes, each with why it is kept and until when: its gateway
        sandboxes (the store) and the sandboxes kept for its runs (the engine's labels)."""
        handles = {h.id: h for h in await self.backend.list()}
        views = []
        recorded = set()
        for rec in await self.store.list_sandboxes(tenant):
            recorded.add(rec.id)
            views.append(self._gateway_view(rec, handles.get(rec.id)))
        for handle in handles.values():
            if handle.id in recorded:
                continue
            why = why_kept(self.backend, handle)
            if await self._owns_run(tenant, why):
                views.append(await self._run_view(handle, why))
        return views

    async def kept_one(self, tenant: str, sandbox_id: str) -> dict[str, Any]:
        with contextlib.suppress(NotFound):
            rec = await self.store.get_sandbox(sandbox_id, tenant=tenant)
            return self._gateway_view(rec, await self._handle(rec.id))
        handle, why = await self._run_sandbox(tenant, sandbox_id)
        return await self._run_view(handle, why)

    async def remove(self, tenant: str, sandbox_id: str) -> None:
        """Delete a gateway sandbox, or the sandbox kept for one of the tenant's finished runs
        (the interaction stays readable; a follow-up then starts in a fresh sandbox)."""
        with contextlib.suppress(NotFound):
            await self.store.get_sandbox(sandbox_id, tenant=tenant)
            await self.delete(tenant, sandbox_id)
            return
        handle, why = await self._run_sandbox(tenant, sandbox_id)
        assert why.interaction is not None
        # The run it was made for, or a follow-up that took it over, may still be running.
        running = await self.store.list_interactions(tenant, status="in_progress", limit=10_000)
        for run in running:
            if run.id == why.interaction or run.sandbox_id == handle.id:
                raise Conflict(
                    f"sandbox {sandbox_id} is in use by interaction {run.id}, which is in "
                    "progress; cancel the interaction first"
                )
        with contextlib.suppress(SandboxNotFound):
            await self.backend.destroy(handle.id)
        owner = await self.store.get_interaction(tenant, why.interaction)
        if owner.sandbox_id == handle.id:
            await self.store.update_interaction(tenant, owner.id, sandbox_id=None)

    async def _refuse_run_sandbox(self, tenant: str, sandbox_id: str) -> None:
        with contextlib.suppress(NotFound):
            _, why = await self._run_sandbox(tenant, sandbox_id)
            raise Conflict(
                f"sandbox {sandbox_id} is kept for interaction {why.interaction}, which uses it; "
                "continue that run with previous_interaction_id (exec and files are for "
                "sandboxes created with POST /v1beta/sandboxes)"
            )

    async def _run_sandbox(self, tenant: str, sandbox_id: str) -> tuple[SandboxHandle, Kept]:
        """The sandbox kept for one of the tenant's runs (NotFound for anything else)."""
        missing = NotFound(f"sandbox {sandbox_id} not found")
        handle = await self._handle(sandbox_id)
        if handle is None:
            raise missing
        why = why_kept(self.backend, handle)
        if not await self._owns_run(tenant, why):
            raise missing
        return handle, why

    async def _owns_run(self, tenant: str, why: Kept) -> bool:
        if why.reason != "interaction" or why.interaction is None:
            return False
        try:
            await self.store.get_interaction(tenant, why.interaction)
        except NotFound:
            return False
        return True

    async def _handle(self, sandbox_id: str) -> SandboxHandle | None:
        try:
            return await self.backend.get(sandbox_id)
        except SandboxNotFound:
            return None

    def _gateway_view(self, rec: SandboxRecord, handle: SandboxHandle | None) -> dict[str, Any]:
        view = sandbox_view(rec)
        if handle is None:  # already gone from the engine; the reaper forgets it soon
            return {**view, "kept_for": "explicit", "expires": None}
        return {**view, **why_kept(self.backend, handle).fields(), "kept_for": "explicit"}

    async def _run_view(self, handle: SandboxHandle, why: Kept) -> dict[str, Any]:
        try:
            state = (await self.backend.status(handle.id)).reason()
        except SandboxNotFound:
            state = "removed"
        spec = handle.spec
        return {
            "id": handle.id,
            "object": "sandbox",
            "state": state,
            "image": spec.image,
            "cpus": spec.cpus,
            "memory": spec.memory,
            "network": spec.network,
            "ttl": spec.idle_ttl,
            "created": iso_epoch(handle.created),
            **why.fields(),
        }

    # -- upkeep (the server's reaper) -------------------------------------------------------
    async def tend(self) -> None:
        """Remove sandboxes idle past their TTL and forget them, then keep the egress proxy in
        the state the remaining sandboxes need (restarted if it died, removed once unused)."""
        await self.backend.reap_idle()
        await self.forget_missing()
        live = {h.id for h in await self.backend.list()}
        await self.backend.egress.heal(live)
        self.egress = await self.backend.egress.status()

    async def census(self) -> dict[str, int]:
        """Sandboxes of this home by why they are kept (every tenant's; for /metrics)."""
        counts: dict[str, int] = dict.fromkeys(REASONS, 0)
        for handle in await self.backend.list():
            counts[why_kept(self.backend, handle).reason] += 1
        return counts

    async def forget_missing(self) -> int:
        """Drop records (and connections) of sandboxes the backend no longer has (reaped)."""
        live = {h.id for h in await self.backend.list()}
        gone = 0
        for rec in await self.store.list_sandboxes():
            # In a fleet another node's sandboxes are never in this backend's list: only the
            # node whose engine runs a sandbox may forget it (runtime/fleet).
            theirs = rec.node is not None and rec.node != getattr(self.store, "node", None)
            if rec.interaction_id is None and rec.id not in live and not theirs:
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
