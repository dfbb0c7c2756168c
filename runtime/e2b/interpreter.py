"""The code interpreter (`e2b-code-interpreter`) on the sandbox's `Sandbox.interpreter`.

`POST /execute` runs a cell and streams E2B's JSON lines while it runs (interp_stream.py):
stdout/stderr line by line, results (the trailing expression and `display(...)`/matplotlib
figures, with `text`, `png`, `html`, `markdown`, `svg`, `json`, `latex`, ...), errors (name,
value, traceback), the execution count. Contexts are separate Python processes in the
sandbox: `default` always exists; create (cwd, language python), list, restart, remove. The
request carries no timeout: the SDK's `timeout=` closes the request, which interrupts the
cell (KeyboardInterrupt; a cell that ignores it has its context's process killed).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from runtime.api.quotas import LeasedStreamingResponse
from runtime.e2b.common import E2BError, E2BState, sandbox_for, stream_sandbox, to_corral, to_e2b
from runtime.e2b.interp_stream import execute as execute_lines
from runtime.e2b.routes import E2BRoute
from sandbox.errors import InvalidArgument, LimitExceeded
from sandbox.interp import CodeContext, Interpreter

LANGUAGES = (None, "python")
TEMPLATE = "code-interpreter-v1"
MATPLOTLIB_IMAGE = "corral/research"
"""The image with matplotlib (and numpy, pandas); not built by default (`corral images build
research`)."""


def with_matplotlib(
    templates: dict[str, str], env: Mapping[str, str] = os.environ
) -> dict[str, str]:
    """`code-interpreter-v1` is the image with matplotlib when it is built here, as E2B's has
    it; else what `templates` says (corral/base). Decided when the server starts; a template
    named in `CORRAL_E2B_TEMPLATES` is left as given."""
    named = {
        item.partition("=")[0].strip() for item in env.get("CORRAL_E2B_TEMPLATES", "").split(",")
    }
    if TEMPLATE in named or not _image_present(MATPLOTLIB_IMAGE):
        return templates
    return {**templates, TEMPLATE: MATPLOTLIB_IMAGE}


def _image_present(tag: str) -> bool:
    import docker
    import docker.errors

    try:
        client = docker.from_env(timeout=5)
    except docker.errors.DockerException:
        return False
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    except Exception:  # no engine here (unit tests, docs builds): the default stands
        return False
    finally:
        client.close()
    return True


class ExecuteBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(max_length=1024**2)
    context_id: str | None = Field(default=None, max_length=64)
    language: str | None = None
    env_vars: dict[str, str] | None = Field(default=None, max_length=256)


class ContextBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cwd: str | None = Field(default=None, max_length=4096)
    language: str | None = None


def _language(language: str | None) -> None:
    if language not in LANGUAGES:
        raise E2BError(400, f"language '{language}' is not supported (python only)")


def _env(env: dict[str, str] | None) -> dict[str, str]:
    for name, value in (env or {}).items():
        if not name or "=" in name or "\0" in name or "\0" in value:
            raise E2BError(400, f"envs: invalid environment variable name {name!r}")
    return env or {}


def _describe(ctx: CodeContext) -> dict[str, str]:
    return {"id": ctx.id, "language": ctx.language, "cwd": to_e2b(ctx.cwd)}


def router(e2b: E2BState) -> APIRouter:
    r = APIRouter(route_class=E2BRoute, tags=["e2b"], include_in_schema=False)

    async def interpreter(request: Request) -> Interpreter:
        return (await sandbox_for(request, e2b)).interpreter

    async def execute(body: ExecuteBody, request: Request) -> Response:
        # The cell's stream holds a slot of the owner's stream ceiling (429 naming it, before
        # the cell starts, when none is left; the SDK raises it as a SandboxException).
        sb, lease = await stream_sandbox(request, e2b)
        try:
            interp = sb.interpreter
            _language(body.language)
            env = _env(body.env_vars)
            if body.context_id is not None and body.context_id not in {
                c.id for c in await interp.list()
            }:  # answered as a 404 here, before the stream (and its 200) starts
                raise E2BError(404, f"context {body.context_id} not found")
        except BaseException:
            lease.release()
            raise
        lines = execute_lines(request, interp, body.code, context=body.context_id, env=env)
        return LeasedStreamingResponse(lines, lease, media_type="application/x-ndjson")

    async def list_contexts(request: Request) -> list[dict[str, str]]:
        return [_describe(c) for c in await (await interpreter(request)).list()]

    async def create_context(body: ContextBody, request: Request) -> dict[str, str]:
        interp = await interpreter(request)
        _language(body.language)
        cwd = to_corral(body.cwd) if body.cwd else None
        try:
            ctx = await interp.create(language="python", cwd=cwd)
        except LimitExceeded as exc:
            raise E2BError(429, str(exc)) from None
        except InvalidArgument as exc:
            raise E2BError(400, str(exc)) from None
        return _describe(ctx)

    async def restart_context(context_id: str, request: Request) -> Response:
        await (await interpreter(request)).restart(context_id)
        return Response(status_code=204)

    async def remove_context(context_id: str, request: Request) -> Response:
        try:
            await (await interpreter(request)).remove(context_id)
        except InvalidArgument as exc:
            raise E2BError(400, str(exc)) from None
        return Response(status_code=204)

    r.add_api_route("/execute", execute, methods=["POST"])
    r.add_api_route("/contexts", list_contexts, methods=["GET"])
    r.add_api_route("/contexts", create_context, methods=["POST"])
    r.add_api_route("/contexts/{context_id}", remove_context, methods=["DELETE"])
    r.add_api_route("/contexts/{context_id}/restart", restart_context, methods=["POST"])
    return r
