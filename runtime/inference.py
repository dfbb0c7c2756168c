"""Plain `model=` interactions: one conversation turn through a model provider, no sandbox.

The request's input becomes steps (`user_input`, `function_result`, ...) recorded like an agent
run's; the conversation is the chain of previous interactions' steps (`previous_interaction_id`)
plus that input, or, with `store=false`, the input alone (the caller sends the whole history as
a list of steps). The agent loop runs with no toolbox: when the model calls one of the caller's
`function` tools the interaction ends `requires_action` with `function_call` steps, and the
caller answers with `function_result` input in a follow-up.

Server-side tools (`code_execution`, `url_context`, `google_search`; `runtime.server_tools`) run
here instead: the loop goes on to the model with their results until it answers in text (or
calls a client function). `code_execution` runs in a sandbox opened for the interaction on first
use, kept for follow-ups until its idle TTL (removed at once when the run is cancelled or not
stored) and removed with the interaction.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog

from runtime import lifecycle
from runtime.agents.loop import AgentLoop, Limits, LoopResult, Recorder
from runtime.errors import ConfigError, CorralError
from runtime.events import EventBus
from runtime.generation import (
    check_media,
    check_tool_choice,
    check_tools,
    client_tools,
    generation_config,
    mcp_tools,
)
from runtime.ids import new_id
from runtime.providers.base import Message, ModelProvider, ToolSpec, Usage
from runtime.runner import ProviderFactory
from runtime.server_tools import ServerTools, ServerToolsConfig, check_server_tools, requested
from runtime.server_tools.loop import ServerToolLoop
from runtime.server_tools.tools import MAX_TOOL_CALLS, MAX_TURNS, specs_of
from runtime.steps import materialize, to_messages
from runtime.store.base import InteractionRecord, Store
from runtime.views import interaction_view
from sandbox.errors import SandboxError

if TYPE_CHECKING:
    from runtime.mcp.client import McpTools

log = structlog.get_logger("corral.inference")

CONTENT_TYPES = frozenset({"text", "image", "audio", "video", "document"})
STEP_TYPES = frozenset(
    {
        "user_input",
        "model_output",
        "thought",
        "function_call",
        "function_result",
        "code_execution_call",
        "code_execution_result",
    }
)
# Bare model names the caller may send (the SDK's examples use `gemini-...`): prefix -> provider.
MODEL_PREFIXES = (
    ("gemini", "gemini"),
    ("gemma", "gemini"),
    ("gpt", "openai"),
    ("o1", "openai"),
    ("o3", "openai"),
    ("o4", "openai"),
    ("chatgpt", "openai"),
    ("claude", "anthropic"),
)


def resolve_model(model: str) -> str:
    """`provider:model` as is; a bare name by prefix (`gemini-2.5-flash` -> `gemini:...`)."""
    name = model.strip()
    name = name.removeprefix("models/")
    if not name:
        raise ConfigError("model must not be empty")
    if ":" in name:
        return name
    lowered = name.lower()
    for prefix, provider in MODEL_PREFIXES:
        if lowered.startswith(prefix):
            return f"{provider}:{name}"
    raise ConfigError(
        f"cannot tell the provider of model {model!r}; use provider:model "
        "(openai:, anthropic:, gemini:, scripted:)"
    )


def input_steps(value: Any) -> list[dict[str, Any]]:
    """The request `input` as steps: a string, a content object, a list of content objects, a
    list of steps, or legacy turns (`{role, content}`)."""
    if value is None:
        return []
    if isinstance(value, str):
        return [_user([{"type": "text", "text": value}])]
    if isinstance(value, dict):
        return input_steps([value])
    if not isinstance(value, list):
        raise ConfigError("input must be a string, a content object or a list")
    steps: list[dict[str, Any]] = []
    pending: list[dict[str, Any]] = []
    for item in value:
        if isinstance(item, str):
            pending.append({"type": "text", "text": item})
            continue
        if not isinstance(item, dict):
            raise ConfigError("input list items must be objects")
        kind = item.get("type")
        if kind in CONTENT_TYPES:
            pending.append(item)
            continue
        if pending:
            steps.append(_user(pending))
            pending = []
        if kind in STEP_TYPES:
            steps.append(_step(item))
        elif kind is None and "role" in item:
            steps.append(_turn(item))
        else:
            raise ConfigError(f"unsupported input item type {kind!r}")
    if pending:
        steps.append(_user(pending))
    return steps


def _user(content: list[dict[str, Any]]) -> dict[str, Any]:
    return {"type": "user_input", "content": content}


def _content(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"type": "text", "text": value}]
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [c if isinstance(c, dict) else {"type": "text", "text": str(c)} for c in value]
    return []


def _step(item: dict[str, Any]) -> dict[str, Any]:
    kind = item["type"]
    if kind in ("user_input", "model_output"):
        return {**item, "content": _content(item.get("content"))}
    if kind == "function_result" and not item.get("call_id"):
        raise ConfigError("a function_result step needs call_id")
    if kind == "function_call" and not (item.get("id") and item.get("name")):
        raise ConfigError("a function_call step needs id and name")
    return dict(item)


def _turn(item: dict[str, Any]) -> dict[str, Any]:
    role = item.get("role")
    kind = "model_output" if role in ("model", "assistant") else "user_input"
    return {"type": kind, "content": _content(item.get("content"))}


@dataclass
class InferenceRequest:
    model: str
    input: Any = None
    system_instruction: str | None = None
    generation_config: dict[str, Any] | None = None
    response_format: Any = None
    response_mime_type: str | None = None
    tools: list[dict[str, Any]] = field(default_factory=list)
    previous_interaction_id: str | None = None
    store: bool = True
    background: bool = False

    def config(self) -> dict[str, Any]:
        """What is kept on the record (enough to run it again after a restart)."""
        return {
            "kind": "model",
            "system_instruction": self.system_instruction,
            "generation_config": self.generation_config,
            "response_format": self.response_format,
            "response_mime_type": self.response_mime_type,
            "tools": self.tools,
        }


class Inference:
    """Creates and runs `model=` interactions against one store + event bus (the controller's,
    or an in-memory pair for `store=false`)."""

    def __init__(
        self,
        store: Store,
        bus: EventBus,
        provider_factory: ProviderFactory,
        server_tools: ServerToolsConfig | None = None,
    ) -> None:
        self.store = store
        self.bus = bus
        self.provider_factory = provider_factory
        self.server_tools = server_tools or ServerToolsConfig()

    async def create(self, tenant: str, req: InferenceRequest) -> InteractionRecord:
        """Validate, record the interaction and its input steps (status in_progress)."""
        model = resolve_model(req.model)
        steps = input_steps(req.input)
        if not steps:
            raise ConfigError("input is required")
        # Refuse what cannot be honoured before anything is recorded.
        config = generation_config(
            req.generation_config, req.response_format, req.response_mime_type
        )
        rest = check_server_tools(req.tools, self.server_tools)
        # Remote MCP servers: reached by the controller under the egress address rules (no
        # sandbox network here, as for url_context).
        mcp_tools(req.tools, network="open", allow=())
        rest = [t for t in rest if not (isinstance(t, dict) and t.get("type") == "mcp_server")]
        server_specs = specs_of(requested(req.tools))
        check_tool_choice(config, [*check_tools(rest), *server_specs])
        check_media(steps, model)
        if req.previous_interaction_id:
            await self.store.get_interaction(tenant, req.previous_interaction_id)
        rec = InteractionRecord(
            id=new_id("int"),
            tenant=tenant,
            model=model,
            input=req.input,
            previous_interaction_id=req.previous_interaction_id,
            config={**req.config(), "input_steps": len(steps)},
            background=req.background,
            store=req.store,
        )
        rec = await self.store.create_interaction(rec)
        await self.bus.emit(
            rec.id, "interaction.created", {"interaction": interaction_view(rec, [])}
        )
        recorder = Recorder(self.bus, rec.id)
        for step in steps:
            await recorder.step(step, flush=False)
        await recorder.drain()  # stored before the run reads them back
        return rec

    async def run(self, rec: InteractionRecord) -> InteractionRecord:
        """Run the model turn(s); always ends with a final status (cancellation included)."""
        provider: ModelProvider | None = None
        loop: AgentLoop | None = None
        server: ServerTools | None = None
        mcp: McpTools | None = None
        status, errors = "failed", [{"code": "internal", "message": "run did not finish"}]
        try:
            cfg = rec.config
            provider = self.provider_factory(rec.model or "", base_url=None)
            events = await self.store.list_events(rec.id)
            steps = materialize(events)
            messages = [*await self.history(rec), *to_messages(steps)]
            recorder = Recorder(self.bus, rec.id, next_index=len(steps))
            config = generation_config(
                cfg.get("generation_config"),
                cfg.get("response_format"),
                cfg.get("response_mime_type"),
            )
            functions = client_tools(cfg.get("tools"))
            kinds = requested(cfg.get("tools"))
            mcp_servers = [t for t in cfg.get("tools") or [] if t.get("type") == "mcp_server"]
            if kinds or mcp_servers:
                server = ServerTools(kinds, self.server_tools, rec)
                if mcp_servers:
                    mcp = await self._open_mcp(mcp_servers, [*server.specs, *functions])
                loop = ServerToolLoop(
                    provider,
                    recorder,
                    server,
                    client_tools=functions,
                    system=cfg.get("system_instruction"),
                    limits=Limits(max_steps=MAX_TURNS, max_tool_calls=MAX_TOOL_CALLS, timeout=None),
                    config=config,
                    mcp=mcp,
                )
            else:
                loop = AgentLoop(
                    provider,
                    recorder,
                    client_tools=functions,
                    system=cfg.get("system_instruction"),
                    limits=Limits(max_steps=1, timeout=None),
                    config=config,
                )
            result = await loop.run(_ensure_user_turn(messages))
            status, errors = _status(result) if server is None else (result.status, result.errors)
        except asyncio.CancelledError:
            status, errors = "cancelled", [{"code": "cancelled", "message": "cancelled"}]
        except CorralError as exc:
            status, errors = "failed", [{"code": exc.code, "message": str(exc)}]
        except SandboxError as exc:
            status, errors = "failed", [{"code": f"sandbox_{exc.reason}", "message": str(exc)}]
        except Exception as exc:  # the interaction fails with a reason; the server stays up
            log.exception("inference.crashed", interaction=rec.id)
            status, errors = "failed", [{"code": "internal", "message": f"{type(exc).__name__}"}]
        finally:
            usage = loop.usage if loop is not None else Usage()
            if mcp is not None:
                await asyncio.shield(mcp.aclose())
            if server is not None:
                await asyncio.shield(self._release(rec, server, status))
            final = await asyncio.shield(self._finish(rec, status, errors, usage, provider))
        return final

    async def _open_mcp(
        self, servers: list[dict[str, Any]], other_tools: list[ToolSpec]
    ) -> McpTools:
        from runtime.agents.spec import McpServerTool
        from runtime.mcp.client import McpTools  # the SDK takes ~1 s to import
        from runtime.mcp.egress import AddressPolicy

        egress = self.server_tools.egress
        return await McpTools.open(
            [McpServerTool.model_validate(t) for t in servers],
            sandbox=None,
            network="open",
            addresses=AddressPolicy(egress.allow_private, egress.hosts),
            reserved=[t.name for t in other_tools],
        )

    async def _release(self, rec: InteractionRecord, server: ServerTools, status: str) -> None:
        """Keep the code sandbox for follow-ups, unless the run was cancelled or not stored."""
        keep = rec.store and status != "cancelled"
        await server.aclose(keep=keep)
        if server.sandbox is not None and not keep:
            with contextlib.suppress(CorralError):
                await self.store.update_interaction(rec.tenant, rec.id, sandbox_id=None)

    async def history(self, rec: InteractionRecord) -> list[Message]:
        return await lifecycle.history(self.store, rec)

    async def _finish(
        self,
        rec: InteractionRecord,
        status: str,
        errors: list[dict[str, str]],
        usage: Usage,
        provider: ModelProvider | None,
    ) -> InteractionRecord:
        if provider is not None:
            with contextlib.suppress(Exception):
                await provider.aclose()
        return await lifecycle.finish(self.store, self.bus, rec, status, errors, usage)


def _status(result: LoopResult) -> tuple[str, list[dict[str, str]]]:
    # One model turn per interaction: a turn that asks for a client function is requires_action;
    # max_steps=1 "exceeded" only means the model answered, so it is completed.
    if result.status == "budget_exceeded" and result.errors[0].get("limit") == "max_steps":
        return "completed", []
    return result.status, result.errors


def _ensure_user_turn(messages: list[Message]) -> list[Message]:
    if not messages:
        raise ConfigError("the conversation is empty")
    return messages
