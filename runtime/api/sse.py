"""Server-sent events: run events on the wire, replayed then live, with keep-alive comments.

The google-genai SDK reads the event kind from `data.event_type` and drops the `id:` line, so
both `event_type` and `event_id` go inside the JSON payload (the stored payload has neither).
`event_id` is a string, as the SDK types it (`"12"`); resume with `last_event_id=12`.

A stock SDK consumer only meets events the SDK types (`SDK_EVENTS`), in the SDK's shapes:
exec/python steps are `code_execution_call` / `code_execution_result` (`runtime.views`), live
tool output is a `code_execution_result` delta on the call's step (with `stream`: stdout or
stderr beside), a thought summary delta carries `content`. Corral's own events
(`artifact.created`, `artifact.skipped`, `network.refused`) are sent only to a caller that asks
for them with `corral_events=1` (query) or `X-Corral-Events: 1` (header); skipping them leaves
gaps in the ids, which resuming by id does not mind. The stream ends when the connection
closes after `interaction.completed` (no `data: [DONE]` line).
The generator pulls one event at a time from `EventBus.subscribe` and yields it straight to the
socket: nothing is buffered here, so a slow client only holds back its own bounded queue.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

from fastapi.responses import StreamingResponse

from runtime.api.quotas import LeasedStreamingResponse, StreamLease
from runtime.events import EventBus
from runtime.store.base import EventRecord
from runtime.views import public_step, public_steps

HEARTBEAT_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keep-alive\n\n"
SDK_EVENTS = frozenset(
    {
        "interaction.created",
        "interaction.status_update",
        "step.start",
        "step.delta",
        "step.stop",
        "interaction.completed",
        "error",
    }
)
"""Event types the google-genai SDK parses into typed events."""
CORRAL_EVENTS_PARAM = "corral_events"
CORRAL_EVENTS_HEADER = "x-corral-events"


def wants_corral_events(query: Mapping[str, str], headers: Mapping[str, str]) -> bool:
    """Whether the caller opted in to Corral's own events (`corral_events=1` or the header)."""
    value = query.get(CORRAL_EVENTS_PARAM) or headers.get(CORRAL_EVENTS_HEADER) or ""
    return value.strip().lower() in ("1", "true", "yes", "on")


def event_json(rec: EventRecord) -> dict[str, Any]:
    """The event as the SDK types it (the stored payload is never changed)."""
    payload = dict(rec.payload)
    if rec.event_type == "step.start" and isinstance(payload.get("step"), dict):
        payload["step"] = public_step(payload["step"])
    elif rec.event_type == "step.delta" and isinstance(payload.get("delta"), dict):
        payload["delta"] = _public_delta(payload["delta"])
    elif rec.event_type in ("interaction.created", "interaction.completed"):
        interaction = payload.get("interaction")
        if isinstance(interaction, dict) and isinstance(interaction.get("steps"), list):
            payload["interaction"] = {**interaction, "steps": public_steps(interaction["steps"])}
    return {**payload, "event_type": rec.event_type, "event_id": str(rec.event_id)}


def _public_delta(delta: dict[str, Any]) -> dict[str, Any]:
    kind = delta.get("type")
    if kind == "tool_output":
        return {
            "type": "code_execution_result",
            "result": str(delta.get("text", "")),
            "stream": delta.get("stream", "stdout"),
        }
    if kind == "thought_summary" and "content" not in delta:
        return {
            "type": "thought_summary",
            "content": {"type": "text", "text": delta.get("text", "")},
        }
    return delta


def encode(rec: EventRecord) -> bytes:
    data = json.dumps(event_json(rec), separators=(",", ":"))
    return f"id: {rec.event_id}\nevent: {rec.event_type}\ndata: {data}\n\n".encode()


def parse_last_event_id(value: str | None) -> int:
    """`last_event_id` (query or Last-Event-ID header) as an int; anything else starts over."""
    if not value:
        return 0
    try:
        return max(0, int(value.strip()))
    except ValueError:
        return 0


async def event_frames(
    bus: EventBus,
    interaction_id: str,
    *,
    after: int = 0,
    heartbeat: float | None = HEARTBEAT_SECONDS,
    corral_events: bool = False,
) -> AsyncIterator[bytes]:
    """SSE frames of the interaction's events after `after`; Corral's own event types only
    with `corral_events`."""
    async for rec in bus.subscribe(interaction_id, after=after, heartbeat=heartbeat):
        if rec is None:
            yield KEEPALIVE
        elif corral_events or rec.event_type in SDK_EVENTS:
            yield encode(rec)


def sse_response(
    frames: AsyncIterator[bytes], lease: StreamLease | None = None
) -> StreamingResponse:
    """The event stream; with `lease`, the tenant's stream slot is given back when it ends."""
    if lease is not None:
        return LeasedStreamingResponse(
            frames, lease, media_type="text/event-stream", headers=SSE_HEADERS
        )
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
