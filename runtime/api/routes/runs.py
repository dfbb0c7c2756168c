"""`/v1beta/runs`: the caller's interactions as a list (Corral's addition; the Interactions API
has no list).

One row per interaction of the key's tenant, newest first: status, agent, model, tokens,
duration and a short preview of the task. It feeds the web console's runs page and anyone who
wants a dashboard. The answer carries an `ETag` of its body, so a poller sending
`If-None-Match` gets a bodiless 304 while nothing changed: that is how the console follows the
list live, and it works the same when several controller replicas share one store (an
in-process notification would miss runs other nodes advance).
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from runtime.api.deps import StateDep, TenantDep
from runtime.api.errors import BadRequest
from runtime.api.service import FINAL_STATUSES
from runtime.steps import text_of
from runtime.store.base import InteractionRecord, utcnow
from runtime.views import iso

router = APIRouter(prefix="/v1beta/runs", tags=["runs"])
MAX_LIMIT = 200
PREVIEW_CHARS = 160
Status = Literal[
    "in_progress",
    "requires_action",
    "completed",
    "failed",
    "cancelled",
    "budget_exceeded",
    "incomplete",
]


class RunRow(BaseModel):
    """One interaction as a row of `GET /v1beta/runs`."""

    id: str
    status: str
    agent: str | None
    model: str | None
    created: str
    updated: str
    duration: float = Field(description="Seconds: created to the end, or to now while running.")
    finished: bool
    tokens: int | None = Field(description="Total tokens recorded so far (None: none yet).")
    input: str = Field(description=f"The task's first {PREVIEW_CHARS} characters of text.")
    previous_interaction_id: str | None
    errors: list[dict[str, Any]]
    last_event_id: int


class RunList(BaseModel):
    runs: list[RunRow]
    next_before: str | None = Field(None, description="`before` for the next page.")


@router.get(
    "",
    response_model=None,
    responses={200: {"model": RunList}, 304: {"description": "Unchanged since `If-None-Match`."}},
)
async def list_runs(
    state: StateDep,
    tenant: TenantDep,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 50,
    status: Status | None = None,
    before: Annotated[str | None, Query(max_length=40)] = None,
) -> Response:
    """The tenant's interactions, newest first (`before`: an ISO time, pages by `created`;
    `next_before` is set when more may remain). 304 when `If-None-Match` matches."""
    cursor = _parse_time(before) if before else None
    recs = await state.ctl.store.list_interactions(
        tenant, limit=limit, status=status, before=cursor
    )
    now = utcnow()
    body: dict[str, Any] = {"runs": [run_row(r, now) for r in recs]}
    if len(recs) == limit:
        body["next_before"] = recs[-1].created.isoformat()
    # The ETag leaves out the running durations, which change every second by themselves.
    stable = [{k: v for k, v in row.items() if k != "duration"} for row in body["runs"]]
    tag = '"' + hashlib.sha256(json.dumps(stable, sort_keys=True).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": tag, "Cache-Control": "no-cache"}
    if request.headers.get("if-none-match") == tag:
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


def run_row(rec: InteractionRecord, now: datetime) -> dict[str, Any]:
    """One interaction as a list row (never its full input or steps)."""
    finished = rec.status in FINAL_STATUSES
    end = rec.updated if finished else now
    tokens = rec.usage.get("total_tokens") if rec.usage else None
    return {
        "id": rec.id,
        "status": rec.status,
        "agent": rec.agent,
        "model": rec.model,
        "created": iso(rec.created),
        "updated": iso(rec.updated),
        "duration": round(max(0.0, (end - rec.created).total_seconds()), 3),
        "finished": finished,
        "tokens": tokens if isinstance(tokens, int) else None,
        "input": _preview(rec.input),
        "previous_interaction_id": rec.previous_interaction_id,
        "errors": [{"code": e.get("code"), "message": e.get("message")} for e in rec.errors],
        "last_event_id": rec.last_event_id,
    }


def _preview(value: Any) -> str:
    """The first characters of the task's text (steps: their content's text)."""
    if isinstance(value, list):
        parts = [
            text_of(v.get("content")) if isinstance(v, dict) and "content" in v else text_of(v)
            for v in value
        ]
        text = " ".join(p for p in parts if p)
    else:
        text = text_of(value)
    text = " ".join(text.split())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def _parse_time(value: str) -> datetime:
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"before: not an ISO 8601 time: {value[:40]!r}") from None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)
