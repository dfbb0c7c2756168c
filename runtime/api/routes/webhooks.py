"""`/v1beta/webhooks/secret`: the tenant's signing secret, to verify notifications with."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.api.deps import StateDep, TenantDep

router = APIRouter(prefix="/v1beta/webhooks", tags=["webhooks"])


@router.get("/secret")
async def webhook_secret(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """`whsec_...`: verify `webhook-signature` (Standard Webhooks) with it."""
    return {"secret": state.secrets.for_tenant(tenant), "scheme": "standard-webhooks-v1"}
