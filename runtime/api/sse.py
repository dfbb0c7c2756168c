"""Server-sent events: run events on the wire, replayed then live, with keep-alive comments.

The google-genai SDK reads the event kind from `data.event_type` and drops the `id:` line, so
both `event_type` and `event_id` go inside the JSON payload (the stored payload has neither).
The generator pulls one event at a time from `EventBus.subscribe` and yields it straight to the
socket: nothing is buffered here, so a slow client only holds back its own bounded queue.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi.responses import StreamingResponse

from runtime.api.quotas import LeasedStreamingResponse, StreamLease
from runtime.events import EventBus
from runtime.store.base import EventRecord

HEARTBEAT_SECONDS = 15.0
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE = b": keep-alive\n\n"
DONE = b"data: [DONE]\n\n"


def event_json(rec: EventRecord) -> dict[str, Any]:
    return {**rec.payload, "event_type": rec.event_type, "event_id": str(rec.event_id)}


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
) -> AsyncIterator[bytes]:
    async for rec in bus.subscribe(interaction_id, after=after, heartbeat=heartbeat):
        yield KEEPALIVE if rec is None else encode(rec)
    yield DONE


def sse_response(
    frames: AsyncIterator[bytes], lease: StreamLease | None = None
) -> StreamingResponse:
    """The event stream; with `lease`, the tenant's stream slot is given back when it ends."""
    if lease is not None:
        return LeasedStreamingResponse(
            frames, lease, media_type="text/event-stream", headers=SSE_HEADERS
        )
    return StreamingResponse(frames, media_type="text/event-stream", headers=SSE_HEADERS)
