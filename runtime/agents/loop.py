"""The agent loop: model turn -> tool calls in the sandbox -> results -> model turn ...

Every model turn and tool call becomes step events (through `Recorder`) as it happens. The loop
returns a status; limits end it with `budget_exceeded` naming the limit. Cancellation is plain
asyncio cancellation: it propagates into the tool call in flight (which kills the process
group inside the sandbox) and the caller records the status.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.agents.tools import Toolbox, ToolOutcome
from runtime.agents.truncate import fit_context
from runtime.events import EventBus
from runtime.providers.base import (
    GenerationConfig,
    Message,
    ModelProvider,
    ToolCall,
    ToolSpec,
    Usage,
)

if TYPE_CHECKING:
    from runtime.mcp.client import McpTools

OUTPUT_FLUSH_SECONDS = 0.25
OUTPUT_FLUSH_BYTES = 16 * 1024


@dataclass(frozen=True)
class Limits:
    max_steps: int = 30
    max_tool_calls: int = 100
    max_total_tokens: int | None = None
    timeout: float | None = 1800.0
    context_tokens: int = 100_000


@dataclass
class LoopResult:
    status: str
    """completed | requires_action | budget_exceeded."""
    usage: Usage
    errors: list[dict[str, str]] = field(default_factory=list)
    steps: int = 0
    tool_calls: int = 0


class Recorder:
    """Turns steps into `step.start` / `step.delta` / `step.stop` events with running indices.

    Events are queued; `flush()` hands the queued batch to a per-run writer task that persists
    batches in order (one transaction each) and publishes them after they are stored. The
    loop therefore never waits on the database between a model call and a tool call, yet
    every event is durable within one transaction time. `drain()` waits until everything
    handed over is stored (the run's end, and before anything else writes events).

    `revoke()` takes the right to write away when the run is given up here (drain hand-off,
    lease lost): nothing queued, pending or emitted later is written, and the batch being
    written is abandoned. A fleet node revokes before it releases the run's lease (or forgets
    a lost one), because from then on nothing fences this node's writes for the run.
    """

    def __init__(self, bus: EventBus, interaction_id: str, *, next_index: int = 0) -> None:
        self.bus = bus
        self.interaction_id = interaction_id
        self.next_index = next_index
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._batches: asyncio.Queue[list[tuple[str, dict[str, Any]]]] = asyncio.Queue()
        self._writer: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    async def flush(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._pending:
            batch, self._pending = self._pending, []
            self._batches.put_nowait(batch)
            if self._writer is None or self._writer.done():
                self._writer = asyncio.create_task(
                    self._write(), name=f"events-{self.interaction_id}"
                )

    async def drain(self) -> None:
        """Flush and wait until every event is persisted and published."""
        await self.flush()
        await self._batches.join()
        if self._failure is not None:
            raise self._failure

    def revoke(self, reason: BaseException) -> None:
        """Write nothing more: drop what is pending and queued, cancel the batch being
        written, and raise `reason` from every later flush (and so from every emit).

        Synchronous on purpose: once it returns, the writer can only wake into its
        cancellation, so no await of the caller (such as releasing the lease) lets a batch
        start. A batch already inside its transaction is cut at the database's pace; its
        fence (the epoch it read) refuses it if it arrives after the lease moved on."""
        self._failure = reason
        self._pending.clear()
        while not self._batches.empty():
            self._batches.get_nowait()
            self._batches.task_done()
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()

    async def _write(self) -> None:
        while not self._batches.empty():
            batch = self._batches.get_nowait()
            try:
                if self._failure is None:  # checked before every batch: revoked, none starts
                    await self.bus.emit_many(self.interaction_id, batch)
            except Exception as exc:  # surfaced to the loop at its next flush
                self._failure = exc
            finally:
                self._batches.task_done()

    async def emit(self, event_type: str, payload: dict[str, Any], *, flush: bool = True) -> None:
        self._pending.append((event_type, payload))
        if flush:
            await self.flush()

    async def start(self, step: dict[str, Any], *, flush: bool = True) -> int:
        index = self.next_index
        self.next_index += 1
        await self.emit("step.start", {"index": index, "step": step}, flush=flush)
        return index

    async def delta(self, index: int, delta: dict[str, Any], *, flush: bool = True) -> None:
        await self.emit("step.delta", {"index": index, "delta": delta}, flush=flush)

    async def stop(
        self, index: int, usage: dict[str, Any] | None = None, *, flush: bool = True
    ) -> None:
        payload: dict[str, Any] = {"index": index}
        if usage:
            payload["usage"] = usage
        await self.emit("step.stop", payload, flush=flush)

    async def step(self, step: dict[str, Any], *, flush: bool = True) -> int:
        index = await self.start(step, flush=False)
        await self.stop(index, flush=flush)
        return index


class AgentLoop:
    def __init__(
        self,
        provider: ModelProvider,
        recorder: Recorder,
        *,
        toolbox: Toolbox | None = None,
        client_tools: Sequence[ToolSpec] = (),
        system: str | None = None,
        limits: Limits = Limits(),
        config: GenerationConfig | None = None,
        after_tool: Callable[[], Awaitable[object]] | None = None,
        mcp: McpTools | None = None,
    ) -> None:
        """`mcp`: the run's MCP servers; their tools are offered as `<server>__<tool>` and
        recorded as `mcp_server_tool_call` / `mcp_server_tool_result` steps."""
        self.provider = provider
        self.mcp = mcp
        self.rec = recorder
        self.toolbox = toolbox
        self.client_tools = list(client_tools)
        self.system = system
        self.limits = limits
        self.config = config
        self.after_tool = after_tool
        self.usage = Usage()
        self.steps = 0
        self.tool_calls = 0

    @property
    def tool_specs(self) -> list[ToolSpec]:
        return [
            *(self.toolbox.specs if self.toolbox else []),
            *(self.mcp.specs if self.mcp else []),
            *self.client_tools,
        ]

    def _result(self, status: str, errors: list[dict[str, str]] | None = None) -> LoopResult:
        return LoopResult(status, self.usage, errors or [], self.steps, self.tool_calls)

    def _budget(self, limit: str, message: str) -> LoopResult:
        return self._result(
            "budget_exceeded", [{"code": "budget_exceeded", "limit": limit, "message": message}]
        )

    async def run(self, messages: list[Message]) -> LoopResult:
        """Advance the conversation in place until the model stops, a limit hits, or the model
        calls a client-side function (`requires_action`)."""
        try:
            return await self._run(messages)
        finally:
            await asyncio.shield(self.rec.drain())

    async def _run(self, messages: list[Message]) -> LoopResult:
        client_names = {t.name for t in self.client_tools}
        while True:
            if self.steps >= self.limits.max_steps:
                return self._budget("max_steps", f"max_steps ({self.limits.max_steps}) reached")
            self.steps += 1
            turn = await self._model_turn(messages)
            if turn.tool_calls and self.config is not None and self.config.tool_choice == "none":
                # tool_choice=none: a call the model makes anyway is dropped, never run.
                turn = dataclasses.replace(turn, tool_calls=[])
            messages.append(turn.to_message())
            if self.limits.max_total_tokens and self.usage.total > self.limits.max_total_tokens:
                return self._budget(
                    "max_total_tokens",
                    f"max_total_tokens ({self.limits.max_total_tokens}) exceeded: {self.usage.total} used",
                )
            if not turn.tool_calls:
                return self._result("completed")
            pending_client = [c for c in turn.tool_calls if c.name in client_names]
            for call in turn.tool_calls:
                if call.name in client_names:
                    await self.rec.step(call_step(call), flush=False)
                    continue
                self.tool_calls += 1
                if self.tool_calls > self.limits.max_tool_calls:
                    return self._budget(
                        "max_tool_calls", f"max_tool_calls ({self.limits.max_tool_calls}) reached"
                    )
                if self.mcp is not None and self.mcp.has(call.name):
                    messages.append(await self._mcp_call(call))
                else:
                    messages.append(await self._server_call(call))
            if pending_client:
                return self._result("requires_action")

    async def _model_turn(self, messages: list[Message]) -> Any:
        index: int | None = None

        async def on_text(text: str) -> None:
            nonlocal index
            if not text:
                return
            if index is None:
                index = await self.rec.start({"type": "model_output", "content": []}, flush=False)
            await self.rec.delta(index, {"type": "text", "text": text})

        window = fit_context(messages, self.limits.context_tokens)
        turn = await self.provider.complete(
            window, system=self.system, tools=self.tool_specs, config=self.config, on_text=on_text
        )
        self.usage = self.usage + turn.usage
        step_usage = usage_dict(turn.usage)
        summaries = self.config is None or self.config.thinking_summaries
        if turn.thought and (summaries or turn.thought_signature):
            thought: dict[str, Any] = {"type": "thought"}
            if summaries:
                thought["summary"] = [{"type": "text", "text": turn.thought}]
            if turn.thought_signature:
                thought["signature"] = turn.thought_signature
            await self.rec.step(thought)
        if index is None and turn.text:
            index = await self.rec.start(
                {"type": "model_output", "content": [{"type": "text", "text": turn.text}]}
            )
        if index is not None:
            await self.rec.stop(index, step_usage)
        await self.rec.emit(
            "interaction.status_update",
            {
                "interaction_id": self.rec.interaction_id,
                "status": "in_progress",
                "usage": usage_dict(self.usage),
            },
        )
        return turn

    async def _server_call(self, call: ToolCall) -> Message:
        index = await self.rec.start(call_step(call))
        out = _OutputForwarder(self.rec, index)
        try:
            if self.toolbox is None:
                outcome = ToolOutcome(f"unknown tool {call.name!r}", is_error=True)
            else:
                outcome = await self.toolbox.call(call.name, call.arguments, on_output=out.write)
        finally:
            await out.close()
        await self.rec.stop(index, flush=False)
        await self.rec.step(
            {
                "type": "function_result",
                "call_id": call.id,
                "name": call.name,
                "result": outcome.text,
                "is_error": outcome.is_error,
            }
        )  # flushed: artifact events that follow must come after the result
        if self.after_tool is not None:
            await self.after_tool()
        return Message(
            role="tool",
            content=outcome.text,
            tool_call_id=call.id,
            name=call.name,
            is_error=outcome.is_error,
        )

    async def _mcp_call(self, call: ToolCall) -> Message:
        assert self.mcp is not None
        tool = self.mcp.tool(call.name)
        await self.rec.step(
            {
                "type": "mcp_server_tool_call",
                "id": call.id,
                "name": tool.tool,
                "server_name": tool.server,
                "arguments": call.arguments,
                **({"signature": call.thought_signature} if call.thought_signature else {}),
            }
        )
        outcome = await self.mcp.call(call.name, call.arguments)
        await self.rec.step(
            {
                "type": "mcp_server_tool_result",
                "call_id": call.id,
                "name": tool.tool,
                "server_name": tool.server,
                "result": outcome.text,
                "is_error": outcome.is_error,
            }
        )
        if self.after_tool is not None:
            await self.after_tool()
        return Message(
            role="tool",
            content=outcome.text,
            tool_call_id=call.id,
            name=call.name,
            is_error=outcome.is_error,
        )


def call_step(call: ToolCall) -> dict[str, Any]:
    """The recorded `function_call` step of a model's tool call."""
    step: dict[str, Any] = {
        "type": "function_call",
        "id": call.id,
        "name": call.name,
        "arguments": call.arguments,
    }
    if call.thought_signature:
        step["signature"] = call.thought_signature
    return step


def usage_dict(u: Usage) -> dict[str, int]:
    """Interactions-style usage."""
    return {
        "total_input_tokens": u.input_tokens,
        "total_output_tokens": u.output_tokens,
        "total_thought_tokens": u.thought_tokens,
        "total_cached_tokens": u.cached_tokens,
        "total_tool_use_tokens": 0,
        "total_tokens": u.total,
    }


class _OutputForwarder:
    """Live exec output as `step.delta` events, coalesced so a chatty command costs a few
    events per second rather than one per chunk (and never blocks the RPC reader)."""

    def __init__(self, rec: Recorder, index: int) -> None:
        self.rec = rec
        self.index = index
        self.buf: dict[str, bytearray] = {"stdout": bytearray(), "stderr": bytearray()}
        self.task: asyncio.Task[None] | None = None
        self.wake = asyncio.Event()
        self.closed = False

    def write(self, stream: str, data: bytes) -> None:
        buf = self.buf.setdefault(stream, bytearray())
        if len(buf) < 4 * OUTPUT_FLUSH_BYTES:  # live view only needs a window, not everything
            buf += data
        if self.task is None:
            self.task = asyncio.create_task(self._run())
        if len(buf) >= OUTPUT_FLUSH_BYTES:
            self.wake.set()

    async def _run(self) -> None:
        while not self.closed:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), OUTPUT_FLUSH_SECONDS)
            self.wake.clear()
            await self._flush()

    async def _flush(self) -> None:
        for stream, buf in self.buf.items():
            if buf:
                text = buf.decode("utf-8", errors="replace")
                buf.clear()
                await self.rec.delta(
                    self.index, {"type": "tool_output", "stream": stream, "text": text}
                )

    async def close(self) -> None:
        self.closed = True
        if self.task is not None:
            self.wake.set()  # let the writer finish its flush rather than cut a store write
            await self.task
        await self._flush()
