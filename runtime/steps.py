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


class Step(dict[str, Any]):
    """A materialized step: the plain mapping the API shows, which also knows the model turn
    that made it (`turn`, counted from the loop's `interaction.status_update` after each model
    turn; None when the events do not say). Not part of the mapping, so never shown."""

    turn: int | None = None


TOOL_CALLS = ("function_call", "mcp_server_tool_call")


def materialize(events: Iterable[EventRecord]) -> list[dict[str, Any]]:
    steps: dict[int, dict[str, Any]] = {}
    turns = 0  # model turns ended so far: the calls that follow are that turn's
    for ev in events:
        p = ev.payload
        if ev.event_type == "interaction.status_update":
            turns += 1
        elif ev.event_type == "step.start":
            started = Step(copy.deepcopy(p["step"]))
            started.turn = turns or None
            steps[int(p["index"])] = started
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
    """Steps -> neutral conversation. Consecutive model steps form one assistant message, and
    so do the tool calls of one model turn (parallel calls): the loop records each call with
    its result before the next call, so a call of the turn whose message is already answered
    joins that message — `assistant(a, b), tool(a), tool(b)`, as the model sent it."""
    messages: list[Message] = []
    assistant: Message | None = None
    answered: Message | None = None  # the last assistant message, once a result followed it
    answered_turn: int | None = None

    def flush() -> None:
        nonlocal assistant, answered
        if assistant is not None:
            messages.append(assistant)
            answered, assistant = assistant, None

    names: dict[str, str] = {}  # call id -> tool name, for results that do not repeat it
    for given in steps:
        step = recorded_step(given)
        kind = step.get("type")
        if kind == "user_input":
            flush()
            answered = answered_turn = None
            content = step.get("content")
            messages.append(Message(role="user", content=text_of(content), media=media_of(content)))
        elif kind in ("model_output", "thought", *TOOL_CALLS):
            turn = getattr(given, "turn", None)
            if (
                kind in TOOL_CALLS
                and assistant is None
                and answered is not None
                and turn is not None
                and turn == answered_turn
            ):
                target = answered  # a parallel call of the turn whose message is answered
            else:
                if assistant is None:
                    assistant = Message(role="assistant")
                target = assistant
            if kind == "model_output":
                target.content += text_of(step.get("content"))
            elif kind == "thought":
                target.thought = (target.thought or "") + text_of(step.get("summary"))
                target.thought_signature = step.get("signature") or target.thought_signature
            else:
                answered_turn = turn
                args = step.get("arguments") or {}
                names[str(step.get("id"))] = _tool_name(step)
                target.tool_calls.append(
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
