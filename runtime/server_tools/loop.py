"""The agent loop with server-side tools: code calls go through the agent loop's own sandbox
tool path (live output, `exec`/`python` steps); `url_context` and `google_search` calls are
recorded with their `server_tool` marker and SDK result items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from runtime.agents.loop import AgentLoop, Limits, Recorder, call_step
from runtime.providers.base import GenerationConfig, Message, ModelProvider, ToolCall, ToolSpec
from runtime.server_tools.tools import ServerTools

if TYPE_CHECKING:
    from runtime.mcp.client import McpTools


class ServerToolLoop(AgentLoop):
    def __init__(
        self,
        provider: ModelProvider,
        recorder: Recorder,
        server: ServerTools,
        *,
        client_tools: Sequence[ToolSpec] = (),
        system: str | None = None,
        limits: Limits = Limits(),
        config: GenerationConfig | None = None,
        mcp: McpTools | None = None,
    ) -> None:
        super().__init__(
            provider,
            recorder,
            mcp=mcp,
            client_tools=client_tools,
            system=system,
            limits=limits,
            config=config,
        )
        self.server = server

    @property
    def tool_specs(self) -> list[ToolSpec]:
        return [*self.server.specs, *(self.mcp.specs if self.mcp else []), *self.client_tools]

    async def _server_call(self, call: ToolCall) -> Message:
        kind = self.server.kind_of(call.name)
        if kind == "code_execution":
            self.toolbox = await self.server.toolbox()
            return await super()._server_call(call)
        step = call_step(call)
        if kind is not None:
            step["server_tool"] = kind
        await self.rec.step(step)
        if kind is None:
            text, is_error, details = f"unknown tool {call.name!r}", True, []
        else:
            out = await self.server.call(kind, call.arguments)
            text, is_error, details = out.text, out.is_error, out.details
        result: dict[str, Any] = {
            "type": "function_result",
            "call_id": call.id,
            "name": call.name,
            "result": text,
            "is_error": is_error,
        }
        if kind is not None:
            result |= {"server_tool": kind, "details": details}
        await self.rec.step(result)
        return Message(
            role="tool", content=text, tool_call_id=call.id, name=call.name, is_error=is_error
        )
