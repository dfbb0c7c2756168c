"""Continuing a run from its event log: what to replay, what to run again, the workspace.

Used by `Runner` when it starts a run that already has steps (taken over from a dead node,
handed off by a draining one). See `runtime.fleet.takeover` for when that happens.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import structlog

from runtime.agents.loop import AgentLoop
from runtime.providers.base import Message, ToolCall, Usage
from runtime.steps import TOOL_CALLS, materialize
from runtime.store.base import ArtifactRecord, EventRecord, InteractionRecord, Store
from sandbox.api import Sandbox
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.fleet.resume")

RESUMED = "run.resumed"
"""The event a node writes when it continues a run another node (or its own past) left."""
QUEUED = "run.queued"
"""A background run created on a node at capacity: its lease is given up for any node."""
CLAIMED = "run.claimed"
"""A queued run started by the node that claimed it."""
CHUNK = 1 << 20


@dataclass
class ResumePlan:
    """What a continuing node needs from the event log of a run."""

    steps: list[dict[str, Any]]
    """The steps to rebuild the conversation from (an unfinished model turn's output left out)."""
    rerun: list[tuple[int, ToolCall, str]] = field(default_factory=list)
    """Tool calls recorded without a result: (step index, call, step type), in order."""
    discarded: list[int] = field(default_factory=list)
    """Indices of model-output steps of a turn that never finished (asked again)."""
    turns: int = 0
    """Model turns completed (counts against max_steps)."""
    tool_calls: int = 0
    """Tool calls made (counts against max_tool_calls)."""
    next_index: int = 0
    usage: Usage = field(default_factory=Usage)
    """Tokens spent by the completed turns (the last `interaction.status_update` says)."""

    @property
    def resumed(self) -> bool:
        return bool(self.turns or self.rerun or self.discarded)


def plan_resume(events: Sequence[EventRecord], n_input: int) -> ResumePlan:
    updates = [ev for ev in events if ev.event_type == "interaction.status_update"]
    turns = len(updates)
    steps = materialize(events)
    answered = {str(s.get("call_id")) for s in steps if s.get("type", "").endswith("_result")}
    plan = ResumePlan(steps=[], turns=turns, next_index=len(steps))
    if updates:
        plan.usage = _usage(updates[-1].payload.get("usage"))
    for i, step in enumerate(steps):
        kind = step.get("type")
        late = i >= n_input and (getattr(step, "turn", None) or 0) >= turns
        if kind in ("model_output", "thought") and late:
            plan.discarded.append(i)  # its turn never ended: the model is asked again
            continue
        if kind in TOOL_CALLS:
            plan.tool_calls += 1
            if str(step.get("id")) not in answered:
                args = step.get("arguments") or {}
                call = ToolCall(
                    id=str(step.get("id")),
                    name=str(step.get("name")),
                    arguments=args if isinstance(args, dict) else {"value": args},
                    thought_signature=step.get("signature"),
                )
                plan.rerun.append((i, call, str(kind)))
        plan.steps.append(step)
    return plan


async def restore_workspace(
    store: Store, sandbox: Sandbox, interaction_id: str, output_dir: str
) -> tuple[list[ArtifactRecord], list[str]]:
    """Copy the run's artifacts back under `output_dir`: (the records of those restored, the
    relative paths of those missing).

    The bytes come from the controller's own copies (`stored_path`, written by a node, never by
    a guest, checked by `artifact_source`), read without following links; the relative path
    was checked by the artifact collector when it was recorded, and the guest resolves it
    inside the workspace."""
    restored: list[ArtifactRecord] = []
    missing: list[str] = []
    for art in await store.list_artifacts(interaction_id):
        source = artifact_source(art)
        if source is None:
            log.warning("takeover.artifact_refused", path=art.path, stored=art.stored_path)
            missing.append(art.path)
            continue
        try:
            fd = await asyncio.to_thread(os.open, source, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            missing.append(art.path)
            continue
        target = f"{output_dir.rstrip('/')}/{art.path}"
        try:
            parent = target.rsplit("/", 1)[0]
            await sandbox.files.mkdir(parent)
            await sandbox.files.upload(target, _chunks(fd))
            restored.append(art)
        except SandboxError as exc:
            log.warning("takeover.restore_failed", path=art.path, error=str(exc))
            missing.append(art.path)
        finally:
            os.close(fd)
    return restored, missing


BLOB_NAME = re.compile(r"[0-9a-f]{32}")


def artifact_source(art: ArtifactRecord) -> str | None:
    """The controller's copy of an artifact, if the row points where a collector writes one
    (`<home>/artifacts/<interaction id>/<32 hex>`, absolute, no `..`); None otherwise.

    The row comes from the shared database: a tampered one must not make this node copy an
    arbitrary host file into a sandbox."""
    path = PurePosixPath(art.stored_path)
    if not path.is_absolute() or ".." in path.parts:
        return None
    ok = (
        BLOB_NAME.fullmatch(path.name) is not None
        and path.parent.name == art.interaction_id
        and path.parent.parent.name == "artifacts"
    )
    return str(path) if ok else None


async def _chunks(fd: int) -> AsyncIterator[bytes]:
    while True:
        data = await asyncio.to_thread(os.read, fd, CHUNK)
        if not data:
            return
        yield data


def _usage(recorded: Any) -> Usage:
    """The loop's cumulative usage back from its Interactions-style dict (`usage_dict`)."""
    if not isinstance(recorded, dict):
        return Usage()

    def tokens(key: str) -> int:
        value = recorded.get(key)
        return value if isinstance(value, int) and value >= 0 else 0

    return Usage(
        input_tokens=tokens("total_input_tokens"),
        output_tokens=tokens("total_output_tokens"),
        thought_tokens=tokens("total_thought_tokens"),
        cached_tokens=tokens("total_cached_tokens"),
    )


async def rerun_in_flight(loop: AgentLoop, plan: ResumePlan) -> tuple[list[Message], bool]:
    """Run again the tool calls that were in flight when the run's node died (the `run.resumed`
    event lists them); their results join the conversation. Also says whether the turn called
    client-side functions: those are never run here, the run waits for their results."""
    answers: list[Message] = []
    client = {t.name for t in loop.client_tools}
    waiting = False
    for index, call, kind in plan.rerun:
        if kind == "function_call" and call.name in client:
            waiting = True
            continue
        result_type = "function_result"
        if kind == "mcp_server_tool_call" and loop.mcp is not None:
            mcp_outcome = await loop.mcp.call(call.name, call.arguments)
            text, is_error = mcp_outcome.text, mcp_outcome.is_error
            result_type = "mcp_server_tool_result"
        elif loop.toolbox is not None and call.name in {t.name for t in loop.toolbox.specs}:
            outcome = await loop.toolbox.call(call.name, call.arguments)
            text, is_error = outcome.text, outcome.is_error
        else:
            text, is_error = f"unknown tool {call.name!r}", True
        if kind == "function_call":
            await loop.rec.stop(index, flush=False)  # its node died before closing it
        await loop.rec.step(
            {
                "type": result_type,
                "call_id": call.id,
                "name": call.name,
                "result": text,
                "is_error": is_error,
            }
        )
        if loop.after_tool is not None:
            await loop.after_tool()
        answers.append(
            Message(
                role="tool",
                content=text,
                tool_call_id=call.id,
                name=call.name,
                is_error=is_error,
            )
        )
    return answers, waiting


def client_names(rec: InteractionRecord) -> set[str]:
    """The caller's client-side functions (answered by the caller, never run again here)."""
    tools = rec.config.get("options", {}).get("client_tools") or []
    return {str(t.get("name")) for t in tools if isinstance(t, dict)}
