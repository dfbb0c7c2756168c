"""What a create body asks of the model, checked before anything runs.

`generation_config`, `response_format` / `response_mime_type` and the input's media become a
provider-neutral `GenerationConfig` and `Media` parts; whatever Corral cannot honour for the
chosen provider is a `BadRequest` (HTTP 400) naming the field, never a silent drop.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Mapping, Sequence
from typing import Any, cast

from runtime.errors import BadRequest
from runtime.providers.base import (
    MEDIA_KINDS,
    THINKING_LEVELS,
    GenerationConfig,
    ThinkingLevel,
    ToolChoice,
    ToolSpec,
)

TOOL_CHOICES: tuple[ToolChoice, ...] = ("auto", "none", "any", "validated")
UNSUPPORTED_CONFIG = {
    "image_config": "image output is not supported",
    "speech_config": "speech output is not supported",
    "transcription_config": "audio transcription is not supported",
    "video_config": "video output is not supported",
}
MAX_STOP_SEQUENCES = 16
MAX_OUTPUT_TOKENS = 1_000_000


def provider_of(model: str) -> str:
    """`openai:gpt-4o` -> `openai` (the model is already resolved to `provider:model`)."""
    return model.partition(":")[0]


def _number(name: str, value: Any, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadRequest(f"generation_config.{name}: must be a number")
    if not low <= value <= high:
        raise BadRequest(f"generation_config.{name}: must be between {low:g} and {high:g}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRequest(f"generation_config.{name}: must be an integer")
    if not low <= value <= high:
        raise BadRequest(f"generation_config.{name}: must be between {low} and {high}")
    return value


def _tool_choice(value: Any) -> tuple[ToolChoice, list[str] | None]:
    if isinstance(value, str):
        if value not in TOOL_CHOICES:
            raise BadRequest(
                f"generation_config.tool_choice: {value!r} is not one of {', '.join(TOOL_CHOICES)}"
            )
        return value, None
    allowed = value.get("allowed_tools") if isinstance(value, dict) else None
    if not isinstance(allowed, dict) or set(value) - {"allowed_tools"}:
        raise BadRequest(
            "generation_config.tool_choice: a mode string or {allowed_tools: {mode, tools}}"
        )
    mode = allowed.get("mode", "auto")
    if mode not in TOOL_CHOICES:
        raise BadRequest(
            f"generation_config.tool_choice.allowed_tools.mode: {mode!r} is not one of "
            + ", ".join(TOOL_CHOICES)
        )
    names = allowed.get("tools")
    if names is not None and (
        not isinstance(names, list) or not all(isinstance(n, str) and n for n in names)
    ):
        raise BadRequest("generation_config.tool_choice.allowed_tools.tools: a list of names")
    return cast(ToolChoice, mode), (list(names) if names is not None else None)


def generation_config(
    config: dict[str, Any] | None,
    response_format: Any = None,
    response_mime_type: str | None = None,
) -> GenerationConfig:
    """The request's generation settings, each checked; unknown or unsupported keys are 400."""
    c = dict(config or {})
    if not isinstance(config, (dict, type(None))):
        raise BadRequest("generation_config: must be an object")
    out = GenerationConfig()
    for key, value in c.items():
        if value is None:
            continue
        if key in UNSUPPORTED_CONFIG:
            raise BadRequest(f"generation_config.{key}: {UNSUPPORTED_CONFIG[key]}")
        if key == "temperature":
            out.temperature = _number(key, value, 0.0, 2.0)
        elif key == "top_p":
            out.top_p = _number(key, value, 0.0, 1.0)
        elif key == "seed":
            out.seed = _integer(key, value, -(2**63), 2**63 - 1)
        elif key == "max_output_tokens":
            out.max_output_tokens = _integer(key, value, 1, MAX_OUTPUT_TOKENS)
        elif key == "stop_sequences":
            if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
                raise BadRequest("generation_config.stop_sequences: a list of non-empty strings")
            if len(value) > MAX_STOP_SEQUENCES:
                raise BadRequest(
                    f"generation_config.stop_sequences: at most {MAX_STOP_SEQUENCES} sequences"
                )
            out.stop = list(value) or None
        elif key == "thinking_level":
            if value not in THINKING_LEVELS:
                raise BadRequest(
                    f"generation_config.thinking_level: {value!r} is not one of "
                    + ", ".join(THINKING_LEVELS)
                )
            out.thinking_level = cast(ThinkingLevel, value)
        elif key == "thinking_summaries":
            if value not in ("auto", "none"):
                raise BadRequest("generation_config.thinking_summaries: 'auto' or 'none'")
            out.thinking_summaries = value == "auto"
        elif key == "tool_choice":
            out.tool_choice, out.allowed_tools = _tool_choice(value)
        else:
            raise BadRequest(f"generation_config.{key}: unknown field")
    out.response_schema, json_mode = response_format_of(response_format)
    if response_mime_type not in (None, "text/plain", "application/json"):
        raise BadRequest(
            f"response_mime_type: {response_mime_type!r} is not supported "
            "(text/plain or application/json)"
        )
    out.json_mode = json_mode or response_mime_type == "application/json"
    return out


def response_format_of(fmt: Any) -> tuple[dict[str, Any] | None, bool]:
    """`response_format` -> (JSON schema or None, JSON wanted). Text with `application/json`
    and a schema is structured output; image / audio / video output formats are refused."""
    if fmt is None:
        return None, False
    items = fmt if isinstance(fmt, list) else [fmt]
    schema: dict[str, Any] | None = None
    json_mode = False
    for item in items:
        if not isinstance(item, dict):
            raise BadRequest("response_format: an object or a list of objects")
        kind = item.get("type")
        if kind in (None, "object", "array") and ("properties" in item or kind is not None):
            schema = dict(item)  # a bare JSON schema, as older clients send it
            continue
        if kind != "text":
            raise BadRequest(
                f"response_format: {kind!r} output is not supported (text output only)"
            )
        mime = item.get("mime_type")
        if mime not in (None, "text/plain", "application/json"):
            raise BadRequest(f"response_format.mime_type: {mime!r} is not supported")
        if isinstance(item.get("schema"), dict):
            schema = dict(item["schema"])
        elif item.get("schema") is not None:
            raise BadRequest("response_format.schema: must be a JSON schema object")
        json_mode = json_mode or mime == "application/json"
    return schema, json_mode


def check_tool_choice(config: GenerationConfig, tools: list[ToolSpec]) -> None:
    """`allowed_tools` must name tools the request offers."""
    if config.allowed_tools is None:
        return
    known = {t.name for t in tools}
    unknown = [n for n in config.allowed_tools if n not in known]
    if unknown:
        raise BadRequest(
            f"generation_config.tool_choice.allowed_tools.tools: no tool named {unknown[0]!r}"
        )


def check_response_modalities(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, list) or any(str(m).lower() != "text" for m in value):
        raise BadRequest(f"response_modalities: only text output is supported (got {value!r})")


def check_media(steps: list[dict[str, Any]], model: str) -> None:
    """Every image / audio / video / document in the input is well formed and of a kind the
    model's provider takes; otherwise a 400 naming the content and the provider."""
    provider = provider_of(model)
    kinds = {str(k): v for k, v in MEDIA_KINDS.get(provider, {}).items()}
    for step in steps:
        content = step.get("content")
        items = content if isinstance(content, list) else [content]
        for item in items:
            if not isinstance(item, dict) or item.get("type") not in (
                "image",
                "audio",
                "video",
                "document",
            ):
                continue
            _check_one(item, provider, model, kinds)


def _check_one(
    item: dict[str, Any], provider: str, model: str, kinds: Mapping[str, frozenset[str]]
) -> None:
    kind = item["type"]
    data, uri, mime = item.get("data"), item.get("uri"), item.get("mime_type")
    if (data is None) == (uri is None):
        raise BadRequest(f"input: {kind} content needs exactly one of data or uri")
    if data is not None:
        if not isinstance(data, str):
            raise BadRequest(f"input: {kind} data must be base64 text")
        try:
            base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequest(f"input: {kind} data is not valid base64") from None
        if not isinstance(mime, str) or not mime:
            raise BadRequest(f"input: {kind} data needs a mime_type")
    elif not isinstance(uri, str) or not uri:
        raise BadRequest(f"input: {kind} uri must be a non-empty string")
    elif provider != "gemini" and not uri.startswith(("http://", "https://")):
        raise BadRequest(f"input: {kind} uri must be an http(s) URL for provider {provider}")
    accepted = kinds.get(kind)
    if accepted is None:
        raise BadRequest(f"input: {kind} content is not supported by model {model!r}")
    if mime is not None and "*" not in accepted and mime not in accepted:
        raise BadRequest(
            f"input: {kind} of type {mime!r} is not supported by model {model!r} "
            f"(accepted: {', '.join(sorted(accepted))})"
        )


REFUSED_TOOLS = {
    "google_search": "google_search is not supported with agent= (with model= it works when "
    "the operator sets CORRAL_SEARCH_URL)",
    "mcp_server": "mcp_server tools go with agent= (an agent run connects to them); model= "
    "does not support them yet",
    "url_context": "url_context is not supported with agent= yet (it works with model=)",
    "computer_use": "computer use is not supported",
    "file_search": "file search is not supported",
    "google_maps": "Google Maps is not supported",
    "retrieval": "retrieval is not supported",
    "tool_search": "tool search is not supported",
}
AGENT_BUILTINS = {"code_execution": "exec"}
"""Built-in tool types an agent honours with one of its own tools."""
MODEL_SERVER_TOOLS: frozenset[str] = frozenset()
"""Built-in tool types left for this check with `model=`: none. code_execution, url_context
and google_search are taken out of the request by runtime/server_tools before it."""
MODEL_REFUSED = {
    "code_execution": "code_execution with model= is not supported yet; use agent= "
    "(an agent with the exec tool runs code in its sandbox)",
}


def check_tools(
    tools: list[dict[str, Any]] | None, *, agent_tools: set[str] | None = None
) -> list[ToolSpec]:
    """Validate `tools`; returns the client `function` tools. Built-in types are honoured by
    Corral (`code_execution`: a sandbox with model=, the agent's exec tool with agent=) or
    refused naming the type."""
    specs = client_tools(tools)
    for i, tool in enumerate(tools or []):
        kind = tool.get("type")
        if kind == "function":
            continue
        where = f"tools[{i}] ({kind})"
        if kind == "mcp_server" and agent_tools is not None:
            continue  # honoured for agent= runs: validated by the service (mcp_tools)
        if kind in REFUSED_TOOLS:
            raise BadRequest(f"{where}: {REFUSED_TOOLS[kind]}")
        if agent_tools is None:
            if kind in MODEL_REFUSED:
                raise BadRequest(f"{where}: {MODEL_REFUSED[kind]}")
            if kind not in MODEL_SERVER_TOOLS:
                raise BadRequest(f"{where}: unknown tool type")
        elif kind in AGENT_BUILTINS:
            if AGENT_BUILTINS[kind] not in agent_tools:
                raise BadRequest(
                    f"{where}: this agent has no {AGENT_BUILTINS[kind]} tool to honour it"
                )
        else:
            raise BadRequest(f"{where}: unknown tool type")
    names = [t.name for t in specs]
    taken = set(agent_tools or ())
    for name in names:
        if names.count(name) > 1:
            raise BadRequest(f"tools: two function tools are named {name!r}")
        if name in taken:
            raise BadRequest(f"tools: function {name!r} clashes with a built-in tool")
    return specs


def client_tools(tools: list[dict[str, Any]] | None) -> list[ToolSpec]:
    """The `function` tools of `tools` (other types are checked by `check_tools`)."""
    specs: list[ToolSpec] = []
    for i, tool in enumerate(tools or []):
        if not isinstance(tool, dict):
            raise BadRequest(f"tools[{i}]: must be an object")
        if tool.get("type") != "function":
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"tools[{i}]: a function tool needs a name")
        params = tool.get("parameters") or {"type": "object", "properties": {}}
        if not isinstance(params, dict):
            raise BadRequest(f"tools[{i}].parameters: must be a JSON schema object")
        specs.append(ToolSpec(name, str(tool.get("description") or ""), params))
    return specs


def mcp_tools(
    tools: list[dict[str, Any]] | None, *, network: str, allow: Sequence[str]
) -> list[dict[str, Any]]:
    """The request's `mcp_server` tools for an agent= run, validated: remote servers only (a
    stdio server runs a command, which an API caller may not name), reachable under the
    agent's network policy. Raises BadRequest naming the tool."""
    from pydantic import ValidationError

    from runtime.agents.spec import McpServerTool
    from runtime.mcp.egress import check_host
    from runtime.mcp.errors import McpRefused

    chosen = []
    for i, tool in enumerate(tools or []):
        if tool.get("type") != "mcp_server":
            continue
        where = f"tools[{i}] (mcp_server)"
        try:
            server = McpServerTool.model_validate(tool)
        except ValidationError as exc:
            first = exc.errors()[0]
            field = ".".join(str(p) for p in first["loc"]) or "tool"
            raise BadRequest(f"{where}: {field}: {first['msg']}") from None
        if not server.url or server.command is not None:
            raise BadRequest(f"{where}: needs a url (stdio servers are set in agent specs)")
        try:
            check_host(server.name, server.url, network, allow)
        except McpRefused as exc:
            raise BadRequest(f"{where}: {exc}") from None
        chosen.append(tool)
    return chosen
