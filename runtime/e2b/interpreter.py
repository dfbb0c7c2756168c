"""The code interpreter (`e2b-code-interpreter`) on Corral's persistent Python session.

`POST /execute` runs a cell with `Sandbox.python` and answers E2B's JSON lines: `stdout`,
`stderr`, one `result` (the `repr` of the trailing expression as `text`), `error` (name,
value, traceback). One session per sandbox, so one context, `default`: it can be listed and
restarted; creating or removing others is refused. `language` python only; no rich display
data (PNG) yet.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from runtime.e2b.common import E2BError, E2BState, Unsupported, sandbox_for
from runtime.e2b.routes import E2BRoute

DEFAULT_TIMEOUT = 300.0
DEFAULT_CONTEXT = "default"
CONTEXT = {"id": DEFAULT_CONTEXT, "language": "python", "cwd": "/home/user"}


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    code: str = Field(max_length=1024**2)
    context_id: str | None = None
    language: str | None = None
    env_vars: dict[str, str] | None = None


def router(e2b: E2BState) -> APIRouter:
    r = APIRouter(route_class=E2BRoute, tags=["e2b"], include_in_schema=False)

    async def execute(body: ExecuteBody, request: Request) -> Response:
        sb = await sandbox_for(request, e2b)
        if body.language not in (None, "python"):
            raise E2BError(400, f"language '{body.language}' is not supported (python only)")
        if body.context_id not in (None, DEFAULT_CONTEXT):
            raise E2BError(404, f"context {body.context_id} not found")
        if body.env_vars:
            raise Unsupported("env_vars on run_code")
        result = await sb.python(body.code, timeout=DEFAULT_TIMEOUT)
        return StreamingResponse(_lines(result), media_type="application/x-ndjson")

    r.add_api_route("/execute", execute, methods=["POST"])

    async def list_contexts(request: Request) -> list[dict[str, str]]:
        await sandbox_for(request, e2b)
        return [CONTEXT]

    async def create_context(request: Request) -> Response:
        await sandbox_for(request, e2b)
        raise Unsupported("more than one code context (one Python session per sandbox)")

    async def restart_context(context_id: str, request: Request) -> Response:
        sb = await sandbox_for(request, e2b)
        if context_id != DEFAULT_CONTEXT:
            raise E2BError(404, f"context {context_id} not found")
        await sb.python_restart()
        return Response(status_code=204)

    async def remove_context(context_id: str, request: Request) -> Response:
        await sandbox_for(request, e2b)
        raise Unsupported("removing a code context (one Python session per sandbox)")

    r.add_api_route("/contexts", list_contexts, methods=["GET"])
    r.add_api_route("/contexts", create_context, methods=["POST"])
    r.add_api_route("/contexts/{context_id}", remove_context, methods=["DELETE"])
    r.add_api_route("/contexts/{context_id}/restart", restart_context, methods=["POST"])
    return r


async def _lines(result: Any) -> AsyncIterator[bytes]:
    now = time.time_ns()

    def line(data: dict[str, Any]) -> bytes:
        return (json.dumps(data) + "\n").encode()

    if result.stdout:
        yield line({"type": "stdout", "text": result.stdout, "timestamp": now})
    if result.stderr:
        yield line({"type": "stderr", "text": result.stderr, "timestamp": now})
    if result.result_repr is not None:
        yield line({"type": "result", "text": result.result_repr, "is_main_result": True})
    if result.error:
        name, value = _name_value(result.error)
        yield line({"type": "error", "name": name, "value": value, "traceback": result.error})


def _name_value(traceback: str) -> tuple[str, str]:
    """`NameError`, `name 'x' is not defined` from a traceback's last line."""
    last = traceback.strip().splitlines()[-1] if traceback.strip() else ""
    name, sep, value = last.partition(":")
    if sep and name and " " not in name.strip():
        return name.strip().rsplit(".", 1)[-1], value.strip()
    return "Error", last
