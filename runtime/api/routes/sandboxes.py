"""`/v1beta/sandboxes`: sandboxes for gateways that run their own agent loop.

Create, list, get, delete; exec (JSON result, or output streamed as SSE / NDJSON); files
streamed both ways. Every sandbox belongs to the key's tenant; another tenant gets 404.
List, get and delete also cover the sandboxes kept for the tenant's agent runs, each saying
why it is kept (`kept_for`) and when the reaper removes it (`expires`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from runtime.api.admission import check_ceilings, create_counted
from runtime.api.deps import PrincipalDep, StateDep, TenantDep
from runtime.api.downloads import file_response
from runtime.api.hub import jsonable_result, sandbox_view
from runtime.api.quotas import LeasedStreamingResponse
from runtime.api.schemas import BrowserRequest, CreateSandbox, ExecRequest
from runtime.api.sse import SSE_HEADERS
from sandbox.api import Sandbox
from sandbox.errors import SandboxError
from sandbox.types import ExecResult

router = APIRouter(prefix="/v1beta/sandboxes", tags=["sandboxes"])
STREAM_QUEUE = 64
"""Output chunks held per streaming exec; a slow reader slows the command, not our memory."""


@router.post("")
async def create_sandbox(
    body: CreateSandbox, state: StateDep, principal: PrincipalDep
) -> dict[str, Any]:
    """Create a sandbox within the key's ceilings (403 above one) and its tenant's count of
    live sandboxes (429 when full)."""
    check_ceilings(principal.policy, body)
    spec = state.hub.spec_for(body)
    rec = await create_counted(state.hub, state.quotas, principal.tenant, principal.policy, spec)
    return sandbox_view(rec)


@router.get("")
async def list_sandboxes(state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """The tenant's sandboxes: the ones it created (`kept_for: "explicit"`) and the ones kept
    for follow-ups of its runs (`kept_for: {"interaction": id}`)."""
    return {"sandboxes": await state.hub.kept(tenant)}


@router.get("/{sandbox_id}")
async def get_sandbox(sandbox_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    return await state.hub.kept_one(tenant, sandbox_id)


@router.delete("/{sandbox_id}")
async def delete_sandbox(sandbox_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    """Remove a sandbox; a run's kept sandbox too once the run has ended (409 while it runs)."""
    await state.hub.remove(tenant, sandbox_id)
    return {}


@router.post("/{sandbox_id}/exec", response_model=None)
async def exec_command(
    sandbox_id: str, body: ExecRequest, state: StateDep, principal: PrincipalDep, request: Request
) -> dict[str, Any] | StreamingResponse:
    """Run a command. With `stream=true` the output comes as it is produced: SSE events
    `output` then `exit`, or NDJSON lines when `format=ndjson` / `Accept: application/x-ndjson`;
    a stream counts against the key's concurrent-streams ceiling (429 when full)."""
    sb = await state.hub.connect(principal.tenant, sandbox_id)
    if not body.stream:
        result = await sb.exec(body.command, cwd=body.cwd, env=body.env, timeout=body.timeout)
        return jsonable_result(result)
    ndjson = body.format == "ndjson" or (
        body.format is None and "application/x-ndjson" in request.headers.get("accept", "")
    )
    lease = state.quotas.open_stream(principal.tenant, principal.policy)
    frames = _exec_frames(sb, body, ndjson)
    media = "application/x-ndjson" if ndjson else "text/event-stream"
    return LeasedStreamingResponse(frames, lease, media_type=media, headers=SSE_HEADERS)


async def _exec_frames(sb: Sandbox, body: ExecRequest, ndjson: bool) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(STREAM_QUEUE)

    async def on_output(stream: str, data: bytes) -> None:
        await queue.put((stream, data))

    async def run() -> ExecResult:
        try:
            return await sb.exec(
                body.command, cwd=body.cwd, env=body.env, timeout=body.timeout, on_output=on_output
            )
        finally:
            await queue.put(None)

    task = asyncio.create_task(run())
    try:
        while (item := await queue.get()) is not None:
            stream, data = item
            yield _frame(
                "output", {"stream": stream, "text": data.decode("utf-8", "replace")}, ndjson
            )
        try:
            result = await task
            yield _frame("exit", jsonable_result(result), ndjson)
        except SandboxError as exc:
            yield _frame("error", {"error": {"code": exc.reason, "message": str(exc)}}, ndjson)
    finally:
        if not task.done():  # the client went away: stop the command
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SandboxError):
                await task


def _frame(kind: str, data: dict[str, Any], ndjson: bool) -> bytes:
    if ndjson:
        return (json.dumps({"type": kind, **data}) + "\n").encode()
    return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()


@router.get("/{sandbox_id}/files")
async def list_files(
    sandbox_id: str,
    state: StateDep,
    tenant: TenantDep,
    path: Annotated[str, Query(max_length=4096)] = ".",
    recursive: bool = False,
) -> dict[str, Any]:
    sb = await state.hub.connect(tenant, sandbox_id)
    infos = await sb.files.list(path, recursive=recursive)
    return {
        "files": [
            {
                "path": i.path,
                "size": i.size,
                "is_dir": i.is_dir,
                "mode": i.mode,
                "mtime": i.mtime,
                "is_symlink": i.is_symlink,
            }
            for i in infos
        ]
    }


@router.put("/{sandbox_id}/files/{path:path}")
async def upload_file(
    sandbox_id: str, path: str, state: StateDep, tenant: TenantDep, request: Request
) -> dict[str, Any]:
    """The request body becomes the file, streamed into the sandbox as it arrives."""
    sb = await state.hub.connect(tenant, sandbox_id)
    size = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal size
        async for chunk in request.stream():
            if chunk:
                size += len(chunk)
                yield chunk

    await sb.files.upload(path, chunks())
    return {"path": path, "size": size}


@router.get("/{sandbox_id}/files/{path:path}", response_model=None)
async def download_file(
    sandbox_id: str, path: str, state: StateDep, tenant: TenantDep
) -> StreamingResponse:
    return await file_response(await state.hub.connect(tenant, sandbox_id), path)


@router.post("/{sandbox_id}/browser")
async def browser_action(
    sandbox_id: str, body: BrowserRequest, state: StateDep, tenant: TenantDep
) -> dict[str, Any]:
    """One browser action in the sandbox (image `corral/browser`); returns the page after it."""
    sb = await state.hub.connect(tenant, sandbox_id)
    r = await sb.browser.call(body.action, timeout=body.timeout, **body.args)
    return {"page": dataclasses.asdict(r.page), "data": r.data, "notice": r.notice}


@router.get("/{sandbox_id}/network/refusals")
async def network_refusals(
    sandbox_id: str,
    state: StateDep,
    tenant: TenantDep,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> dict[str, Any]:
    """Requests the egress proxy refused (allowlist sandboxes); page on with `next_offset`."""
    sb = await state.hub.connect(tenant, sandbox_id)
    refusals, next_offset = await sb.network_refusals(offset)
    return {"refusals": [dataclasses.asdict(r) for r in refusals], "next_offset": next_offset}
