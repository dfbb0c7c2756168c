"""Steps: the Interactions-style timeline of a run, and the conversation it implies.

Events are the source of truth; `materialize` folds them into the `steps` list of the
interaction object, and `to_messages` turns steps back into the provider-neutral conversation
(for follow-ups with `previous_interaction_id`).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from runtime.mcp.names import qualified_name
from runtime.providers.base import Media, Message, ToolCall
from runtime.store.base import EventRecord
from runtime.views import recorded_step


def materialize(events: Iterable[EventRecord]) -> list[dict[str, Any]]:
    steps: dict[int, dict[str, Any]] = {}
    for ev in events:
        p = ev.payload
        if ev.event_type == "step.start":
            steps[int(p["index"])] = copy.deepcopy(p["step"])
        elif ev.event_type == "step.delta":
            step = steps.get(int(p["index"]))
            if step is not None:
                _apply_delta(step, p.get("delta") or {})
    return [steps[i] for i in sorted(steps)]


def _apply_delta(step: dict[str, Any], delta: dict[str, Any]) -> None:
    kind = delta.get("type")
    if kind == "text" and step.get("type") == "model_output":
        content = step.setdefault("content", [])
        if content and content[-1].get("type") == "text":
            content[-1]["text"] += delta.get("text", "")
        else:
            content.append({"type": "text", "text": delta.get("text", "")})
    elif kind == "thought_summary" and step.get("type") == "thought":
        summary = step.setdefault("summary", [])
        summary.append({"type": "text", "text": delta.get("text", "")})
    # tool_output deltas are live progress only; the result step carries the outcome.


def text_of(content: Any) -> str:
    """Plain text of an Interactions `content` (a string, a content object, or a list)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, dict):
        if content.get("type") == "text":
            return str(content.get("text", ""))
        return ""
    if isinstance(content, list):
        return "".join(text_of(c) for c in content)
    return str(content)


MEDIA_TYPES = ("image", "audio", "video", "document")


def media_of(content: Any) -> list[Media]:
    """The image / audio / video / document parts of an Interactions `content`."""
    items = content if isinstance(content, list) else [content]
    return [
        Media(
            kind=c["type"],
            mime_type=c.get("mime_type"),
            data=c.get("data"),
            uri=c.get("uri"),
        )
        for c in items
        if isinstance(c, dict) and c.get("type") in MEDIA_TYPES
    ]


def to_messages(steps: Iterable[dict[str, Any]]) -> list[Message]:
    """Steps -> neutral conversation. Consecutive model steps form one assistant message."""
    messages: list[Message] = []
    assistant: Message | None = None

    def flush() -> None:
        nonlocal assistant
        if assistant is not None:
            messages.append(assistant)
            assistant = None

    names: dict[str, str] = {}  # call id -> tool name, for results that do not repeat it
    for given in steps:
        step = recorded_step(given)
        kind = step.get("type")
        if kind == "user_input":
            flush()
            content = step.get("content")
            messages.append(Message(role="user", content=text_of(content), media=media_of(content)))
        elif kind in ("model_output", "thought", "function_call", "mcp_server_tool_call"):
            if assistant is None:
                assistant = Message(role="assistant")
            if kind == "model_output":
                assistant.content += text_of(step.get("content"))
            elif kind == "thought":
                assistant.thought = (assistant.thought or "") + text_of(step.get("summary"))
                assistant.thought_signature = step.get("signature") or assistant.thought_signature
            else:
                args = step.get("arguments") or {}
                names[str(step.get("id"))] = _tool_name(step)
                assistant.tool_calls.append(
                    ToolCall(
                        id=str(step.get("id")),
                        name=_tool_name(step),
                        arguments=args if isinstance(args, dict) else {"value": args},
                        thought_signature=step.get("signature"),
                    )
                )
        elif kind in ("function_result", "mcp_server_tool_result"):
            flush()
            result = step.get("result")
            messages.append(
                Message(
                    role="tool",
                    content=result if isinstance(result, str) else json.dumps(result),
                    tool_call_id=str(step.get("call_id")),
                    name=_tool_name(step)
                    if step.get("name")
                    else names.get(str(step.get("call_id")), "tool"),
                    is_error=bool(step.get("is_error")),
                )
            )
    flush()
    return messages


def _tool_name(step: dict[str, Any]) -> str:
    """The name the model called: MCP steps carry server and tool, the model saw both."""
    name = str(step.get("name"))
    if str(step.get("type", "")).startswith("mcp_server_tool") and step.get("server_name"):
        return qualified_name(str(step["server_name"]), name)
    return name
