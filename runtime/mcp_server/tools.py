"""What each MCP tool does: a translation into the service layer the HTTP routes use.

Sandboxes go through `SandboxHub` (ownership in the store, so another tenant's id is
NotFound), creation through the key's `TenantPolicy` and the tenant's live-sandbox count
(`Quotas`) exactly as `POST /v1beta/sandboxes`; runs through `InteractionService` exactly as
`POST /v1beta/interactions` with `agent=`. Nothing here touches a container directly.

A tool returns `(structured result, extra content)`; errors are raised as Corral's or the
sandbox's own exceptions and become MCP tool errors in `runtime.mcp_server.server`.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import mcp_types as types
from pydantic import BaseModel, ValidationError

from runtime.api.admission import check_ceilings, create_counted
from runtime.api.auth import Principal
from runtime.api.config import ApiConfig
from runtime.api.errors import BadRequest
from runtime.api.hub import SandboxHub, jsonable_result, sandbox_view
from runtime.api.quotas import Quotas
from runtime.api.schemas import AgentConfig, CreateInteraction, CreateSandbox, ExecRequest
from runtime.api.service import InteractionService
from runtime.controller import Controller
from runtime.events import TERMINAL_EVENT
from runtime.mcp_server import schemas as s
from runtime.steps import text_of

T = TypeVar("T")
Extra = list[types.ContentBlock]
ToolResult = tuple[BaseModel, Extra]


@dataclass
class Services:
    """The parts of the controller the tools use (the HTTP app's, or the stdio server's)."""

    ctl: Controller
    config: ApiConfig
    hub: SandboxHub
    quotas: Quotas
    service: InteractionService


class Progress:
    """MCP progress for one tool call: a counter that only goes up, with a message.
    A no-op when the client asked for none."""

    def __init__(self, report: Callable[[float, float | None, str | None], Awaitable[None]]):
        self._report = report
        self.count = 0

    async def step(self, message: str, total: float | None = None) -> None:
        self.count += 1
        with contextlib.suppress(Exception):  # a client gone mid-call must not fail the call
            await self._report(self.count, total, message)

    async def during(self, work: Awaitable[T], message: str, every: float = 1.0) -> T:
        """Await `work`, reporting `message` now and every `every` seconds until it ends."""
        task = asyncio.ensure_future(work)
        try:
            await self.step(message)
            elapsed = 0.0
            while True:
                done, _ = await asyncio.wait({task}, timeout=every)
                if done:
                    return task.result()
                elapsed += every
                await self.step(f"{message} ({elapsed:.0f}s)")
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    """The HTTP API's own request model, so both front doors refuse the same values."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        raise BadRequest(f"{where}: {msg}" if where else msg) from None


def _info(rec: Any) -> s.SandboxInfo:
    return s.SandboxInfo.model_validate(
        {k: v for k, v in sandbox_view(rec).items() if k != "object"}
    )


# -- sandboxes ------------------------------------------------------------------------------
async def sandbox_create(
    sv: Services, who: Principal, a: s.CreateArgs, progress: Progress
) -> ToolResult:
    body: CreateSandbox = _validated(CreateSandbox, a.model_dump(exclude_none=True))
    check_ceilings(who.policy, body)
    spec = sv.hub.spec_for(body)

    async def create() -> Any:
        return await create_counted(sv.hub, sv.quotas, who.tenant, who.policy, spec)

    # Shielded: a call cancelled mid-start still records the sandbox (owned, reaped at its
    # TTL) rather than leaving a container no tenant owns.
    task = asyncio.ensure_future(create())
    rec = await progress.during(asyncio.shield(task), f"starting a {spec.image} sandbox")
    await progress.step("sandbox ready", total=progress.count + 1)
    return _info(rec), []


async def sandbox_list(
    sv: Services, who: Principal, a: s.ListSandboxesArgs, progress: Progress
) -> ToolResult:
    return s.SandboxList(sandboxes=[_info(r) for r in await sv.hub.list(who.tenant)]), []


async def sandbox_delete(
    sv: Services, who: Principal, a: s.SandboxRef, progress: Progress
) -> ToolResult:
    await sv.hub.delete(who.tenant, a.sandbox_id)
    return s.Deleted(sandbox_id=a.sandbox_id), []


async def sandbox_exec(
    sv: Services, who: Principal, a: s.ExecArgs, progress: Progress
) -> ToolResult:
    body: ExecRequest = _validated(ExecRequest, a.model_dump(exclude={"sandbox_id"}))
    sb = await sv.hub.connect(who.tenant, a.sandbox_id)
    received = 0

    async def on_output(stream: str, data: bytes) -> None:
        nonlocal received
        received += len(data)
        tail = data.decode("utf-8", "replace").strip().splitlines()
        await progress.step(f"{stream}: {tail[-1][:200]}" if tail else f"{received} bytes")

    result = await progress.during(
        sb.exec(
            body.command, cwd=body.cwd, env=body.env, timeout=body.timeout, on_output=on_output
        ),
        "running",
        every=5.0,
    )
    return s.ExecOutput.model_validate(jsonable_result(result)), []


def _decode(content: str, encoding: str) -> bytes:
    if encoding == "utf-8":
        return content.encode()
    try:
        return base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest("content: not valid base64") from None


async def sandbox_write_file(
    sv: Services, who: Principal, a: s.WriteArgs, progress: Progress
) -> ToolResult:
    data = _decode(a.content, a.encoding)
    sb = await sv.hub.connect(who.tenant, a.sandbox_id)
    await sb.files.write(a.path, data)
    return s.Written(path=a.path, size=len(data)), []


async def _read_capped(sv: Services, who: Principal, sandbox_id: str, path: str) -> bytes:
    sb = await sv.hub.connect(who.tenant, sandbox_id)
    info = await sb.files.stat(path)
    if info.is_dir:
        raise BadRequest(f"{path} is a folder: list it with sandbox_list_files")
    if info.size > s.MAX_READ:
        raise BadRequest(
            f"{path} is {info.size} bytes, more than the {s.MAX_READ} this tool returns; "
            "download it with GET /v1beta/sandboxes/{id}/files/{path}"
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in sb.files.download(path):
        size += len(chunk)
        if size > s.MAX_READ:  # it grew since the stat
            raise BadRequest(f"{path} is larger than the {s.MAX_READ} bytes this tool returns")
        chunks.append(chunk)
    return b"".join(chunks)


async def sandbox_read_file(
    sv: Services, who: Principal, a: s.ReadArgs, progress: Progress
) -> ToolResult:
    data = await _read_capped(sv, who, a.sandbox_id, a.path)
    if a.encoding == "base64":
        content = base64.b64encode(data).decode()
    else:
        content = data.decode("utf-8", "replace")
    return s.FileContent(path=a.path, size=len(data), encoding=a.encoding, content=content), []


async def sandbox_list_files(
    sv: Services, who: Principal, a: s.ListFilesArgs, progress: Progress
) -> ToolResult:
    sb = await sv.hub.connect(who.tenant, a.sandbox_id)
    infos = await sb.files.list(a.path, recursive=a.recursive)
    entries = [
        s.FileEntry(
            path=i.path,
            size=i.size,
            is_dir=i.is_dir,
            is_symlink=i.is_symlink,
            mode=i.mode,
            mtime=i.mtime,
        )
        for i in infos
    ]
    return s.FileList(files=entries), []


# -- browser --------------------------------------------------------------------------------
async def _browser(
    sv: Services, who: Principal, sandbox_id: str, action: str, timeout: float | None, **args: Any
) -> Any:
    sb = await sv.hub.connect(who.tenant, sandbox_id)
    return await sb.browser.call(action, timeout=timeout, **args)


def _page(r: Any) -> s.Page:
    return s.Page.model_validate(dataclasses.asdict(r.page))


async def browser_goto(
    sv: Services, who: Principal, a: s.GotoArgs, progress: Progress
) -> ToolResult:
    r = await progress.during(
        _browser(sv, who, a.sandbox_id, "goto", a.timeout, url=a.url, wait_until=a.wait_until),
        f"loading {a.url[:200]}",
    )
    return s.BrowserOutput(page=_page(r), notice=r.notice), []


async def browser_snapshot(
    sv: Services, who: Principal, a: s.SnapshotArgs, progress: Progress
) -> ToolResult:
    r = await _browser(sv, who, a.sandbox_id, "snapshot", a.timeout, max_chars=a.max_chars)
    snapshot = str(r.data.get("snapshot", ""))
    return s.BrowserOutput(page=_page(r), notice=r.notice, snapshot=snapshot), []


async def browser_screenshot(
    sv: Services, who: Principal, a: s.ScreenshotArgs, progress: Progress
) -> ToolResult:
    r = await _browser(
        sv,
        who,
        a.sandbox_id,
        "screenshot",
        a.timeout,
        path=a.path,
        full_page=a.full_page,
        ref=a.ref,
    )
    path = str(r.data.get("path", ""))
    png = await _read_capped(sv, who, a.sandbox_id, path)
    image = types.ImageContent(
        type="image", data=base64.b64encode(png).decode(), mime_type="image/png"
    )
    out = s.BrowserOutput(page=_page(r), notice=r.notice, path=path, size=len(png))
    return out, [image]


# -- agent runs -----------------------------------------------------------------------------
async def run_agent(
    sv: Services, who: Principal, a: s.RunAgentArgs, progress: Progress
) -> ToolResult:
    overrides: dict[str, Any] = {
        k: v for k, v in (("model", a.model), ("max_steps", a.max_steps), ("timeout", a.timeout))
    }
    config = {k: v for k, v in overrides.items() if v is not None}
    body: CreateInteraction = _validated(
        CreateInteraction,
        {
            "agent": a.agent,
            "input": a.input,
            "previous_interaction_id": a.previous_interaction_id,
            "background": False,
            "agent_config": _validated(AgentConfig, config) if config else None,
        },
    )
    created = await sv.service.create(who.tenant, body, None, policy=who.policy)
    rec = created.rec
    await progress.step(f"run {rec.id} started")

    async def follow() -> None:
        async for ev in created.bus.subscribe(rec.id, after=rec.last_event_id):
            if ev is None or ev.event_type == TERMINAL_EVENT:
                return
            if ev.event_type == "step.start":
                step = ev.payload.get("step") or {}
                await progress.step(f"step: {step.get('type', 'step')}")

    follower = asyncio.create_task(follow())
    try:
        final = await sv.service.wait(created)
    finally:
        follower.cancel()
        with contextlib.suppress(BaseException):
            await follower
    view = await sv.service.view(created.store, final, skip_input=created.input_steps)
    outputs = [st for st in view["steps"] if st.get("type") == "model_output"]
    text = text_of(outputs[-1].get("content")) if outputs else ""
    arts = [
        s.Artifact(
            path=r.path,
            size=r.size,
            sha256=r.sha256,
            media_type=r.media_type,
            download_path=f"/v1beta/interactions/{final.id}/artifacts/{r.path}",
        )
        for r in await sv.ctl.store.list_artifacts(final.id)
    ]
    out = s.RunOutput(
        interaction_id=final.id,
        status=final.status,
        output_text=text,
        artifacts=arts,
        errors=view.get("errors", []),
        usage=view.get("usage", {}),
    )
    return out, []


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[BaseModel]
    result: type[BaseModel]
    run: Callable[[Services, Principal, Any, Progress], Awaitable[ToolResult]]
    read_only: bool = False
    destructive: bool = False


TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "sandbox_create",
            "Create a Linux sandbox (a container with a shell, Python and a /workspace folder; "
            "image corral/browser adds a headless browser). Returns its id. It stays until "
            "sandbox_delete or until idle for `ttl` seconds. Reports progress while starting.",
            s.CreateArgs,
            s.SandboxInfo,
            sandbox_create,
        ),
        Tool(
            "sandbox_list",
            "List this key's sandboxes.",
            s.ListSandboxesArgs,
            s.SandboxList,
            sandbox_list,
            read_only=True,
        ),
        Tool(
            "sandbox_exec",
            "Run a command in a sandbox and return its exit code, stdout and stderr. Output "
            "lines are reported as progress while it runs.",
            s.ExecArgs,
            s.ExecOutput,
            sandbox_exec,
        ),
        Tool(
            "sandbox_write_file",
            "Write a file in a sandbox's workspace (parent folders are created).",
            s.WriteArgs,
            s.Written,
            sandbox_write_file,
        ),
        Tool(
            "sandbox_read_file",
            f"Read a file from a sandbox's workspace (at most {s.MAX_READ} bytes).",
            s.ReadArgs,
            s.FileContent,
            sandbox_read_file,
            read_only=True,
        ),
        Tool(
            "sandbox_list_files",
            "List a folder of a sandbox's workspace.",
            s.ListFilesArgs,
            s.FileList,
            sandbox_list_files,
            read_only=True,
        ),
        Tool(
            "sandbox_delete",
            "Delete a sandbox and everything in it.",
            s.SandboxRef,
            s.Deleted,
            sandbox_delete,
            destructive=True,
        ),
        Tool(
            "browser_goto",
            "Open an http(s) URL in the sandbox's headless browser (sandboxes created with "
            "image corral/browser). Returns the page's URL and title.",
            s.GotoArgs,
            s.BrowserOutput,
            browser_goto,
        ),
        Tool(
            "browser_snapshot",
            "The current page of the sandbox's browser as a text outline, with element refs.",
            s.SnapshotArgs,
            s.BrowserOutput,
            browser_snapshot,
            read_only=True,
        ),
        Tool(
            "browser_screenshot",
            "A PNG screenshot of the sandbox's browser page, returned as an image and saved in "
            "the workspace.",
            s.ScreenshotArgs,
            s.BrowserOutput,
            browser_screenshot,
        ),
        Tool(
            "run_agent",
            "Run a managed agent on a task in its own sandbox until it finishes; returns its "
            "answer and the files it produced (artifacts). Reports each step as progress.",
            s.RunAgentArgs,
            s.RunOutput,
            run_agent,
        ),
    )
}
