"""`/v1beta/agents`: custom agent definitions, stored per tenant."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body

from runtime.agents.registry import BUILTIN_NAMES
from runtime.api.deps import PrincipalDep, StateDep, TenantDep
from runtime.errors import Conflict, NotFound
from runtime.store.base import AgentRecord
from runtime.views import iso

router = APIRouter(prefix="/v1beta/agents", tags=["agents"])


def agent_view(rec: AgentRecord) -> dict[str, Any]:
    return {
        "name": rec.name,
        "object": "agent",
        "description": rec.spec.get("description", ""),
        "model": rec.spec.get("model"),
        "spec": rec.spec,
        "created": iso(rec.created),
        "updated": iso(rec.updated),
    }


@router.post("")
async def create_agent(
    state: StateDep, principal: PrincipalDep, spec: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Store an agent from a JSON spec (the YAML spec's fields). Host paths (skills, data)
    are refused: an API caller must not reach the server's files. Resources and network are
    held to the key's ceilings (403), here and again when a run starts."""
    tenant = principal.tenant
    agent = state.service.validate_agent(spec, principal.policy)
    if agent.name in BUILTIN_NAMES:
        raise Conflict(f"agent {agent.name!r} is built in; choose another name")
    try:
        await state.ctl.store.get_agent(tenant, agent.name)
    except NotFound:
        pass
    else:
        raise Conflict(f"agent {agent.name!r} already exists (DELETE it first)")
    rec = await state.ctl.store.put_agent(tenant, agent.name, agent.to_dict())
    return agent_view(rec)


@router.get("")
async def list_agents(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """The tenant's agents, and the names of the built-in ones."""
    recs = await state.ctl.store.list_agents(tenant)
    return {"agents": [agent_view(r) for r in recs], "builtin": list(BUILTIN_NAMES)}


@router.get("/{name}")
async def get_agent(name: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    return agent_view(await state.ctl.store.get_agent(tenant, name))


@router.delete("/{name}")
async def delete_agent(name: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    await state.ctl.store.delete_agent(tenant, name)
    return {}
