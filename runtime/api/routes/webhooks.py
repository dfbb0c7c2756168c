"""`/{v}/webhooks`: the SDK's `client.webhooks`, and the tenant's signing secret.

Corral sends webhooks per interaction: `webhook_config: {uris, user_metadata}` on create, a POST
to each URI when the run ends, signed per Standard Webhooks with the tenant's secret
(`GET /v1beta/webhooks/secret`). The SDK's webhook *registrations* (`client.webhooks.create`,
`get`, `update`, `delete`, `ping`, `rotate_signing_secret`: subscriptions kept by the server)
have no counterpart, so each answers 400 `FAILED_PRECONDITION` saying what to use instead (not
501: the SDK retries 5xx answers, and the refusal is final); `list` answers the truth, an
empty list. Nothing here is a 404 by accident.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from runtime.api.deps import StateDep, TenantDep
from runtime.errors import CorralError


class Unimplemented(CorralError):
    """A method of the SDK's surface that Corral refuses on purpose (400, for good)."""

    code = "failed_precondition"
    http_status = 400


REGISTRATIONS = (
    "Corral has no webhook registrations: pass webhook_config={'uris': [...], "
    "'user_metadata': {...}} when creating an interaction; deliveries are signed with the "
    "tenant's secret (GET /v1beta/webhooks/secret)"
)

router = APIRouter(tags=["webhooks"])
_sdk = APIRouter()


@router.get("/v1beta/webhooks/secret")
async def webhook_secret(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """`whsec_...`: verify `webhook-signature` (Standard Webhooks) with it."""
    return {"secret": state.secrets.for_tenant(tenant), "scheme": "standard-webhooks-v1"}


@_sdk.get("")
async def list_webhooks(_tenant: TenantDep) -> dict[str, Any]:
    """`client.webhooks.list()`: always empty (webhooks are set per interaction)."""
    return {"webhooks": []}


@_sdk.post("")
async def create_webhook(_tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(f"webhooks.create: {REGISTRATIONS}")


@_sdk.post("/{webhook_id}:ping")
async def ping_webhook(webhook_id: str, _tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(f"webhooks.ping: {REGISTRATIONS}")


@_sdk.post("/{webhook_id}:rotateSigningSecret")
async def rotate_webhook_secret(webhook_id: str, _tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(
        f"webhooks.rotate_signing_secret: {REGISTRATIONS}; the secret is set by the operator "
        "(CORRAL_WEBHOOK_SECRET or CORRAL_WEBHOOK_SECRETS)"
    )


@_sdk.get("/{webhook_id}")
async def get_webhook(webhook_id: str, _tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(f"webhooks.get: {REGISTRATIONS}")


@_sdk.patch("/{webhook_id}")
async def update_webhook(webhook_id: str, _tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(f"webhooks.update: {REGISTRATIONS}")


@_sdk.delete("/{webhook_id}")
async def delete_webhook(webhook_id: str, _tenant: TenantDep) -> dict[str, Any]:
    raise Unimplemented(f"webhooks.delete: {REGISTRATIONS}")


for _version in ("v1", "v1beta"):
    router.include_router(_sdk, prefix=f"/{_version}/webhooks")
