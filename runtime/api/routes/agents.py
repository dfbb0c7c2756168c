"""`/{v}/agents`: agent definitions in the shapes of the google-genai SDK's `client.agents`.

Served under `/v1` and `/v1beta`. An agent on the wire is the SDK's `Agent`::

    {"id", "description", "system_instruction", "tools": [{"type": "code_execution"}, ...],
     "agent_config": {"model", "max_total_tokens", ...}, "base_agent"}

plus Corral's own fields beside them (`model`, `image`, `resources`, `network`, `limits`,
`generation`, `browser`, `output_dir`, `builtin`, `created`, `updated`); the SDK keeps unknown
fields. On create, Corral's spec fields are accepted at the top level (`extra_body=` in the SDK)
or inside `agent_config`, and the older spellings `name` / `instructions` still work.

Tools: `code_execution` is Corral's `exec` + `python` + `files`; `function` and `mcp_server`
objects are kept as they are; Corral's own tools are `{"type": "<name>"}` (`browser`, `exec`,
...). `base_agent` starts from another agent's spec (built in, a file agent or the tenant's own);
the request's fields replace the base's (`limits`, `resources`, `generation`, `browser` are
merged key by key).

The agents found in files (the built-ins `default` and `demo`, examples, the operator's folder)
are shared by every tenant: listed and readable by all, never replaced or deleted (400/409).
Stored agents are kept as Corral specs, so agents stored before this shape keep working.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Body, Query

from runtime.agents.registry import file_agent_names, list_agents, load_file_agent
from runtime.agents.spec import BUILTIN_TOOLS, AgentSpec
from runtime.api.deps import PrincipalDep, StateDep, TenantDep
from runtime.api.errors import BadRequest
from runtime.errors import AgentSpecError, Conflict, NotFound
from runtime.store.base import AgentRecord
from runtime.views import iso

CODE_EXECUTION = ("exec", "python", "files")
"""What the SDK's `{"type": "code_execution"}` tool means in a Corral sandbox."""
MERGED_FIELDS = ("limits", "resources", "generation", "browser")
"""Object fields that a `base_agent` extension merges key by key rather than replaces."""
GENERAL_CONFIGS = ("antigravity", "dynamic")
"""agent_config types that describe a general agent (the SDK's default is `antigravity`)."""
SDK_FIELDS = ("id", "base_agent", "description", "system_instruction", "tools", "agent_config")
SPEC_FIELDS = frozenset(AgentSpec.model_fields)
MAX_PAGE = 1000

_agents = APIRouter()


# SDK shape <-> Corral spec -------------------------------------------------------------------
def sdk_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """Corral spec tools -> the SDK's tool objects (`exec`+`python`+`files` = code_execution)."""
    names = {t for t in tools if isinstance(t, str)}
    code = set(CODE_EXECUTION) <= names
    out: list[dict[str, Any]] = []
    for t in tools:
        if isinstance(t, str):
            if code and t in CODE_EXECUTION:
                if {"type": "code_execution"} not in out:
                    out.append({"type": "code_execution"})
                continue
            out.append({"type": t})
        elif isinstance(t, Mapping):
            out.append(dict(t))
    return out


def spec_tools(tools: Any) -> list[Any]:
    """The SDK's tool objects (or Corral tool names) -> Corral spec tools; 400 for the others."""
    if not isinstance(tools, list):
        raise BadRequest("tools: expected a list of tool objects")
    out: list[Any] = []

    def add(name: str) -> None:
        if name not in out:
            out.append(name)

    for i, t in enumerate(tools):
        kind = t if isinstance(t, str) else t.get("type") if isinstance(t, Mapping) else None
        if kind == "code_execution":
            for name in CODE_EXECUTION:
                add(name)
        elif kind in BUILTIN_TOOLS:
            add(str(kind))
        elif kind in ("function", "mcp_server") and isinstance(t, Mapping):
            out.append(dict(t))
        else:
            raise BadRequest(
                f"tools[{i}]: type {kind!r} is not available in Corral (use code_execution, "
                f"function, mcp_server, or one of Corral's tools: {', '.join(BUILTIN_TOOLS)})"
            )
    return out


def overrides_of(body: Mapping[str, Any]) -> tuple[str, str | None, dict[str, Any]]:
    """(id, base_agent, spec fields) of a create request in the SDK's or Corral's spelling."""
    data = dict(body)
    agent_id = _aliased(data, "id", "name")
    if not isinstance(agent_id, str) or not agent_id:
        raise BadRequest("id: required (the agent's name: lowercase letters, digits, - and _)")
    base = data.pop("base_agent", None)
    if base is not None and not isinstance(base, str):
        raise BadRequest("base_agent: expected an agent name")
    if data.pop("base_environment", None) is not None:
        raise BadRequest(
            "base_environment is not supported: set image, resources and network "
            "(in agent_config or beside it) to shape the agent's sandbox"
        )
    out: dict[str, Any] = {}
    instructions = _aliased(data, "system_instruction", "instructions")
    if instructions is not None:
        out["instructions"] = instructions
    if "tools" in data:
        out["tools"] = spec_tools(data.pop("tools"))
    config = data.pop("agent_config", None) or {}
    if not isinstance(config, Mapping):
        raise BadRequest("agent_config: expected an object")
    config = dict(config)
    kind = config.pop("type", None)
    if kind not in (None, *GENERAL_CONFIGS):
        # deep-research, code-mender, ...: Google's own agents, whose fields Corral would drop
        raise BadRequest(
            f"agent_config.type: {kind!r} is not supported; Corral runs general agents "
            f"({' or '.join(GENERAL_CONFIGS)})"
        )
    max_total_tokens = config.pop("max_total_tokens", None)
    out.update(data)  # description and Corral's spec fields given beside the SDK's
    out.update(config)  # ... or inside agent_config
    if max_total_tokens is not None:
        limits = out.get("limits")
        out["limits"] = {**(limits if isinstance(limits, Mapping) else {})}
        out["limits"]["max_total_tokens"] = max_total_tokens
    unknown = sorted(set(out) - SPEC_FIELDS)
    if unknown:
        raise BadRequest(
            f"{unknown[0]}: not an agent field (SDK fields: {', '.join(SDK_FIELDS)}; "
            f"Corral fields: {', '.join(sorted(SPEC_FIELDS - {'name', 'instructions'}))})"
        )
    return agent_id, base, out


def _aliased(data: dict[str, Any], name: str, alias: str) -> Any:
    value, old = data.pop(name, None), data.pop(alias, None)
    if value is not None and old is not None and value != old:
        raise BadRequest(f"{name} and {alias} (its older spelling) disagree; send one")
    return value if value is not None else old


def extend(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`base`'s spec with `overrides` applied (object fields in MERGED_FIELDS key by key)."""
    out = dict(base)
    for key, value in overrides.items():
        old = out.get(key)
        merge = key in MERGED_FIELDS or key == "network"
        if merge and isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = {**old, **value}
        else:
            out[key] = value
    return out


def agent_view(
    name: str,
    spec: Mapping[str, Any],
    *,
    builtin: bool = False,
    rec: AgentRecord | None = None,
) -> dict[str, Any]:
    """An agent as the SDK's `Agent`, with Corral's fields beside (never a host path)."""
    config: dict[str, Any] = {}
    if spec.get("model"):
        config["model"] = spec["model"]
    limits = spec.get("limits") or {}
    if limits.get("max_total_tokens"):
        config["max_total_tokens"] = limits["max_total_tokens"]
    view: dict[str, Any] = {
        "id": name,
        "name": name,
        "object": "agent",
        "description": spec.get("description", ""),
        "system_instruction": spec.get("instructions", ""),
        "tools": sdk_tools(list(spec.get("tools") or [])),
        "agent_config": config,
        "builtin": builtin,
    }
    if spec.get("base_agent"):
        view["base_agent"] = spec["base_agent"]
    for key in ("model", "image", "resources", "network", "limits", "generation", "browser"):
        if key in spec:
            view[key] = spec[key]
    if "output_dir" in spec:
        view["output_dir"] = spec["output_dir"]
    view["skills"] = [s.get("name") or "" for s in spec.get("skills") or []]
    view["data"] = [d.get("target") or "" for d in spec.get("data") or []]
    if rec is not None:
        view["spec"] = {k: v for k, v in spec.items() if k != "base_agent"}
        view["created"] = iso(rec.created)
        view["updated"] = iso(rec.updated)
    return view


def builtin_view(spec: AgentSpec) -> dict[str, Any]:
    data = spec.to_dict()
    data["skills"] = [{"name": s.name} for s in spec.skills]
    data["data"] = [{"target": d.target or ""} for d in spec.data]
    return agent_view(spec.name, data, builtin=True)


# Routes ---------------------------------------------------------------------------------------
@_agents.post("")
async def create_agent(
    state: StateDep, principal: PrincipalDep, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Store an agent (`client.agents.create(id=..., system_instruction=..., tools=...,
    agent_config=..., base_agent=...)`). Host paths (skills, data) are refused: an API caller
    must not reach the server's files. Resources and network are held to the key's ceilings
    (403), here and again when a run starts."""
    tenant = principal.tenant
    home = state.ctl.settings.home
    name, base, overrides = overrides_of(body)
    if name in await asyncio.to_thread(file_agent_names, home=home):
        raise Conflict(f"agent {name!r} is built in (shared by every tenant); choose another id")
    spec = {"name": name, **overrides}
    if base is not None:
        spec = extend(await _base_spec(state, tenant, base), spec)
    agent = state.service.validate_agent(spec, principal.policy)
    try:
        await state.ctl.store.get_agent(tenant, agent.name)
    except NotFound:
        pass
    else:
        raise Conflict(f"agent {agent.name!r} already exists (delete it first)")
    stored = agent.to_dict()
    if base is not None:
        stored["base_agent"] = base
    rec = await state.ctl.store.put_agent(tenant, agent.name, stored)
    return agent_view(rec.name, rec.spec, rec=rec)


async def _base_spec(state: StateDep, tenant: str, base: str) -> dict[str, Any]:
    try:
        spec = await state.service.resolve_agent(tenant, base)
    except (NotFound, AgentSpecError) as exc:
        raise BadRequest(f"base_agent: {exc.message}") from None
    if spec.skills or spec.data:
        raise BadRequest(
            f"base_agent: {base!r} mounts folders of the server (skills or data), which an "
            "agent created over the API cannot inherit"
        )
    data = spec.to_dict()
    data.pop("name", None)
    return data


@_agents.get("")
async def list_agents_route(
    state: StateDep,
    tenant: TenantDep,
    page_size: int = Query(default=MAX_PAGE, ge=1, le=MAX_PAGE),
    page_token: str | None = Query(default=None, max_length=16),
) -> dict[str, Any]:
    """Every agent the caller can run by name: the shared ones (`builtin: true`) first, then
    the tenant's own. `next_page_token` is set when more remain."""
    shared = await asyncio.to_thread(list_agents, home=state.ctl.settings.home)
    views = [builtin_view(s) for s in shared]
    names = {s.name for s in shared}
    for rec in await state.ctl.store.list_agents(tenant):
        if rec.name not in names:
            views.append(agent_view(rec.name, rec.spec, rec=rec))
    try:
        start = int(page_token) if page_token else 0
    except ValueError:
        raise BadRequest("page_token: not a token this server gave") from None
    page: dict[str, Any] = {"agents": views[start : start + page_size]}
    if start + page_size < len(views):
        page["next_page_token"] = str(start + page_size)
    return page


@_agents.get("/{agent_id}")
async def get_agent(agent_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    spec = await _file_agent(state, agent_id)
    if spec is not None:
        return builtin_view(spec)
    rec = await state.ctl.store.get_agent(tenant, agent_id)
    return agent_view(rec.name, rec.spec, rec=rec)


@_agents.delete("/{agent_id}")
async def delete_agent(agent_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    if await _file_agent(state, agent_id) is not None:
        raise BadRequest(
            f"agent {agent_id!r} is built in (shared by every tenant) and cannot be deleted"
        )
    await state.ctl.store.delete_agent(tenant, agent_id)
    return {}


async def _file_agent(state: StateDep, name: str) -> AgentSpec | None:
    try:
        return await asyncio.to_thread(load_file_agent, name, home=state.ctl.settings.home)
    except AgentSpecError:
        return None  # a broken file is not an agent anyone can run


router = APIRouter(tags=["agents"])
for _version in ("v1", "v1beta"):
    router.include_router(_agents, prefix=f"/{_version}/agents")
