"""Per-tenant counts the policy bounds: live sandboxes and open streams.

Live sandboxes are counted from the engine (what actually holds memory and disk), so the count
survives a restart: every sandbox Corral keeps for the tenant (runtime/kept.py), i.e. its
gateway sandboxes (label `corral.tenant`, whichever door made them) plus the sandboxes of its
agent runs and code-execution interactions, running or kept for follow-ups (label
`corral.interaction`, or the claim marker of a warm-pool sandbox a run took; owned through the
store), plus its runs still starting (their sandbox is on the way). Creation happens under a
per-tenant lock held from the count to the start, so concurrent creates cannot both take the
last slot.

Streams are counted in this process: a lease taken before the response starts and given back
when the response ends, however it ends (`LeasedStreamingResponse`).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from runtime.api.errors import QuotaExceeded
from runtime.api.policy import TenantPolicy
from runtime.errors import NotFound
from runtime.kept import owner_run
from runtime.store.base import Store
from sandbox.backends.base import Backend

TENANT_LABEL = "corral.tenant"
INTERACTION_LABEL = "corral.interaction"


class StreamLease:
    def __init__(self, quotas: Quotas, tenant: str) -> None:
        self._quotas = quotas
        self._tenant = tenant
        self._held = True

    def release(self) -> None:
        if self._held:
            self._held = False
            self._quotas._streams[self._tenant] -= 1
            if not self._quotas._streams[self._tenant]:
                del self._quotas._streams[self._tenant]


class Quotas:
    def __init__(self, store: Store, backend: Backend, run_ids: Any) -> None:
        """`run_ids`: a container of the agent runs this process is executing (ids)."""
        self.store = store
        self.backend = backend
        self.run_ids = run_ids
        self._locks: dict[str, asyncio.Lock] = {}
        self._streams: dict[str, int] = {}

    # -- sandboxes --------------------------------------------------------------------------
    def lock(self, tenant: str) -> asyncio.Lock:
        """Held from counting a tenant's sandboxes to starting the new one."""
        return self._locks.setdefault(tenant, asyncio.Lock())

    async def live_sandboxes(self, tenant: str) -> int:
        handles = await self.backend.list()
        gateway = 0
        kept: dict[str, int] = {}  # interaction -> its sandboxes on the engine
        for handle in handles:
            run = owner_run(handle)
            if run is not None:
                kept[run] = kept.get(run, 0) + 1
            elif handle.labels.get(TENANT_LABEL) == tenant:
                gateway += 1
        mine = 0
        for interaction_id, n in kept.items():
            try:
                await self.store.get_interaction(tenant, interaction_id)
            except NotFound:
                continue
            mine += n
        live = {h.id for h in handles}
        for interaction_id in set(self.run_ids) - kept.keys():
            try:
                rec = await self.store.get_interaction(tenant, interaction_id)
            except NotFound:
                continue
            # Starting: its sandbox is on the way. A follow-up running in its predecessor's
            # sandbox is not counted twice (that sandbox carries the predecessor's id).
            if rec.sandbox_id not in live:
                mine += 1
        return gateway + mine

    async def check_sandboxes(self, tenant: str, policy: TenantPolicy) -> None:
        """QuotaExceeded when the tenant already holds `policy.max_sandboxes` sandboxes.
        Call it with `lock(tenant)` held, and start the sandbox (or run) before releasing."""
        held = await self.live_sandboxes(tenant)
        if held >= policy.max_sandboxes:
            raise QuotaExceeded(
                f"live sandboxes: this tenant holds {held}, this key's ceiling is "
                f"{policy.max_sandboxes}; delete a sandbox or interaction (or wait for idle "
                "ones to be reaped) first"
            )

    # -- streams ----------------------------------------------------------------------------
    def open_stream(self, tenant: str, policy: TenantPolicy) -> StreamLease:
        held = self._streams.get(tenant, 0)
        if held >= policy.max_streams:
            raise QuotaExceeded(
                f"concurrent streams: this tenant has {held} open, this key's ceiling is "
                f"{policy.max_streams}; close one first"
            )
        self._streams[tenant] = held + 1
        return StreamLease(self, tenant)

    def streams(self, tenant: str) -> int:
        return self._streams.get(tenant, 0)


class LeasedStreamingResponse(StreamingResponse):
    """A streaming response that gives its stream lease back when it ends, however it ends
    (finished, client gone, cancelled, or never started)."""

    def __init__(
        self,
        content: AsyncIterator[bytes],
        lease: StreamLease,
        *,
        media_type: str,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(content, media_type=media_type, headers=headers)
        self.lease = lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.lease.release()
