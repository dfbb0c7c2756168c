"""FastAPI dependencies: the app's state and the caller's tenant (and its key's policy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runtime.api.auth import Principal, key_from_headers
from runtime.api.config import ApiConfig
from runtime.api.hub import SandboxHub
from runtime.api.metrics import Metrics
from runtime.api.quotas import Quotas
from runtime.api.service import InteractionService
from runtime.controller import Controller
from runtime.webhooks import WebhookSecrets, WebhookWorker


@dataclass
class ApiState:
    """Everything the routes use, built by the app's lifespan (never at import time)."""

    ctl: Controller
    config: ApiConfig
    metrics: Metrics
    service: InteractionService
    hub: SandboxHub
    secrets: WebhookSecrets
    webhooks: WebhookWorker
    quotas: Quotas


def get_state(request: Request) -> ApiState:
    state: ApiState = request.app.state.corral
    return state


StateDep = Annotated[ApiState, Depends(get_state)]


def get_tenant(request: Request, state: StateDep) -> str:
    """The tenant of the request's API key (401 in the error shape when keys are configured
    and the key is missing or unknown)."""
    return state.config.keys.tenant_for(key_from_headers(request.headers))


TenantDep = Annotated[str, Depends(get_tenant)]


def get_principal(request: Request, state: StateDep) -> Principal:
    """The tenant and the policy (ceilings) of the request's API key."""
    return state.config.keys.principal_for(key_from_headers(request.headers))


PrincipalDep = Annotated[Principal, Depends(get_principal)]
