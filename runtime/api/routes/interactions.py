"""`/{v}/interactions`: the Interactions-compatible surface the google-genai SDK speaks.

Mounted twice, under `/v1` (the SDK's default) and `/v1beta` (the docs'). Success is 200 with
JSON, or `text/event-stream` when streaming.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from runtime.api.deps import PrincipalDep, StateDep, TenantDep
from runtime.api.fleet import get_fleet, unfinished
from runtime.api.schemas import CreateInteraction
from runtime.api.service import Created
from runtime.api.sse import (
    event_frames,
    parse_last_event_id,
    sse_response,
    wants_corral_events,
)
from runtime.events import EventBus

router = APIRouter(tags=["interactions"])


@router.post("/interactions", response_model=None)
async def create_interaction(
    body: CreateInteraction,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
    idempotency_key: Annotated[str | None, Header(max_length=256)] = None,
) -> dict[str, Any] | StreamingResponse:
    """Create an interaction: `model=` (inference) or `agent=` (a managed run in a sandbox).

    `background=true` answers at once (status in_progress); `stream=true` streams its events;
    otherwise the request waits for the end. The answer carries the output steps. An agent run
    is held to the key's ceilings (403) and its tenant's live sandboxes (429); a stream to the
    key's concurrent streams (429), checked before anything is created."""
    lease = state.quotas.open_stream(principal.tenant, principal.policy) if body.stream else None
    try:
        created = await state.service.create(
            principal.tenant, body, idempotency_key, policy=principal.policy
        )
    except BaseException:
        if lease is not None:
            lease.release()
        raise
    if lease is not None:
        extras = wants_corral_events(request.query_params, request.headers)
        return sse_response(_frames(state, created.bus, created, 0, extras), lease)
    if body.background:
        return await state.service.view(created.store, created.rec, skip_input=created.input_steps)
    final = await state.service.wait(created)
    return await state.service.view(created.store, final, skip_input=created.input_steps)


@router.get("/interactions/{interaction_id}", response_model=None)
async def get_interaction(
    interaction_id: str,
    state: StateDep,
    principal: PrincipalDep,
    request: Request,
    stream: bool = False,
    last_event_id: Annotated[str | None, Query(max_length=32)] = None,
    include_input: bool = False,
) -> dict[str, Any] | StreamingResponse:
    """The whole timeline; with `stream=true`, its events (from after `last_event_id`, then
    live until it ends), within the key's concurrent streams (429 when full)."""
    rec = await state.ctl.store.get_interaction(principal.tenant, interaction_id)
    if stream:
        after = parse_last_event_id(last_event_id or request.headers.get("last-event-id"))
        created = Created(rec, state.ctl.store, state.ctl.bus, None, 0)
        lease = state.quotas.open_stream(principal.tenant, principal.policy)
        extras = wants_corral_events(request.query_params, request.headers)
        return sse_response(_frames(state, state.ctl.bus, created, after, extras), lease)
    return await state.service.view(state.ctl.store, rec, include_input=include_input)


@router.post("/interactions/{interaction_id}/cancel")
async def cancel_interaction(
    interaction_id: str, state: StateDep, tenant: TenantDep, request: Request
) -> dict[str, Any]:
    """Stop a running interaction (its status becomes `cancelled`); a finished one is returned
    unchanged. A run executing on another node is cancelled there (`runtime.api.fleet`)."""
    rec = await state.service.cancel(tenant, interaction_id)
    fleet = get_fleet(request)
    if fleet is not None and unfinished(rec):
        rec = await fleet.cancel_elsewhere(rec)
    return await state.service.view(state.ctl.store, rec)


@router.delete("/interactions/{interaction_id}")
async def delete_interaction(
    interaction_id: str, state: StateDep, tenant: TenantDep
) -> dict[str, Any]:
    """Remove the interaction with its events, artifacts and sandbox."""
    await state.service.delete(tenant, interaction_id)
    return {}


async def _frames(
    state: StateDep, bus: EventBus, created: Created, after: int, corral_events: bool = False
) -> AsyncIterator[bytes]:
    state.metrics.sse.inc()
    try:
        async for frame in event_frames(
            bus,
            created.rec.id,
            after=after,
            heartbeat=state.config.heartbeat,
            corral_events=corral_events,
        ):
            yield frame
    finally:
        state.metrics.sse.dec()
