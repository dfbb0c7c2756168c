"""Admitting a new sandbox: the key's ceilings, then the tenant's live-sandbox count.

Every front door that creates sandboxes (the sandboxes API, the E2B door, MCP) goes through
these two steps, so a ceiling or cap cannot be skipped by choosing another door.
"""

from __future__ import annotations

from runtime.api.hub import SandboxHub
from runtime.api.policy import TenantPolicy
from runtime.api.quotas import Quotas
from runtime.api.schemas import CreateSandbox
from runtime.store.base import SandboxRecord
from sandbox.spec import SandboxSpec, parse_size


def check_ceilings(policy: TenantPolicy, body: CreateSandbox) -> None:
    """403 (PermissionDenied) naming the limit when `body` asks for more than the key may."""
    asked = {k: getattr(body, k) for k in ("memory", "cpus", "disk", "pids")}
    policy.check(
        {k: parse_size(v) if isinstance(v, str) else v for k, v in asked.items()},
        body.network,
        asked,
    )


async def create_counted(
    hub: SandboxHub, quotas: Quotas, tenant: str, policy: TenantPolicy, spec: SandboxSpec
) -> SandboxRecord:
    """Create under the tenant's lock once its live-sandbox count leaves room (429 if not)."""
    async with quotas.lock(tenant):
        await quotas.check_sandboxes(tenant, policy)
        return await hub.create(tenant, spec)
