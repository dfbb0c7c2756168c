"""The Interactions-style JSON view of an interaction (used by events, the CLI and the API).

Runs record their sandbox tool calls as `function_call` / `function_result` steps (the
conversation a model sees). On the wire, the shell and Python tools are shown the way the
Interactions API shows code execution: `code_execution_call {id, arguments: {code, language}}`
and `code_execution_result {call_id, result, is_error}` (`exec` is language `bash`, `python`
is `python`: the two values the SDK's `Language` has). `public_step` does that translation; it
is idempotent, so views stored before (or after) it read the same. Steps of the `url_context`
and `google_search` tools of `model=` interactions carry `server_tool` and are shown as
`<tool>_call {id, arguments}` / `<tool>_result {call_id, result: details, is_error}`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from runtime.store.base import ArtifactRecord, InteractionRecord


def iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


CODE_TOOLS = {"exec": ("bash", "command"), "python": ("python", "code")}
"""Sandbox tools shown as code execution: name -> (language, argument holding the code)."""


def public_step(step: dict[str, Any]) -> dict[str, Any]:
    """A recorded step as the Interactions API shows it (exec/python as code execution)."""
    kind = step.get("type")
    name = step.get("name")
    if step.get("server_tool") in SERVER_TOOLS:
        return _server_tool_step(step)
    if not isinstance(name, str) or name not in CODE_TOOLS:
        return step
    language, field = CODE_TOOLS[name]
    out: dict[str, Any]
    if kind == "function_call":
        args = step.get("arguments")
        args = dict(args) if isinstance(args, dict) else {}
        code = args.pop(field, "")
        out = {
            "type": "code_execution_call",
            "id": step.get("id"),
            "arguments": {"code": str(code), "language": language, **args},
        }
    elif kind == "function_result":
        result = step.get("result")
        out = {
            "type": "code_execution_result",
            "call_id": step.get("call_id"),
            "result": result if isinstance(result, str | list) else str(result),
            "is_error": bool(step.get("is_error")),
        }
    else:
        return step
    if step.get("signature"):
        out["signature"] = step["signature"]
    return out


SERVER_TOOLS = ("url_context", "google_search")
"""Server-side tools of `model=` interactions recorded with a `server_tool` marker."""


def _server_tool_step(step: dict[str, Any]) -> dict[str, Any]:
    tool = step["server_tool"]
    out: dict[str, Any]
    if step.get("type") == "function_call":
        args = step.get("arguments")
        out = {"type": f"{tool}_call", "id": step.get("id"), "arguments": args or {}}
    elif step.get("type") == "function_result":
        details = step.get("details")
        out = {
            "type": f"{tool}_result",
            "call_id": step.get("call_id"),
            "result": details if isinstance(details, list) else [],
            "is_error": bool(step.get("is_error")),
        }
    else:
        return step
    if step.get("signature"):
        out["signature"] = step["signature"]
    return out


def recorded_step(step: dict[str, Any]) -> dict[str, Any]:
    """The inverse of `public_step`: a step a client sends back (stateless `store=false`
    history, follow-up input) as Corral records it, so the model sees the same tool calls."""
    kind = step.get("type")
    if kind == "code_execution_call":
        args = step.get("arguments")
        args = dict(args) if isinstance(args, dict) else {}
        language = args.pop("language", "python")
        name = "python" if language == "python" else "exec"
        args = {CODE_TOOLS[name][1]: str(args.pop("code", "")), **args}
        out = {"type": "function_call", "id": step.get("id"), "name": name, "arguments": args}
    elif kind in ("code_execution_result", *(f"{t}_result" for t in SERVER_TOOLS)):
        out = {
            "type": "function_result",
            "call_id": step.get("call_id"),
            "result": step.get("result"),
            "is_error": bool(step.get("is_error")),
        }
    elif kind in tuple(f"{t}_call" for t in SERVER_TOOLS):
        tool = str(kind).removesuffix("_call")
        out = {"type": "function_call", "id": step.get("id"), "name": tool,
               "arguments": step.get("arguments") or {}}  # fmt: skip
    else:
        return step
    if step.get("signature"):
        out["signature"] = step["signature"]
    return out


def public_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [public_step(s) for s in steps]


def interaction_view(
    rec: InteractionRecord, steps: list[dict[str, Any]], *, include_input: bool = False
) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": rec.id,
        "object": "interaction",
        "status": rec.status,
        "created": iso(rec.created),
        "updated": iso(rec.updated),
        "steps": public_steps(steps),
    }
    if rec.agent:
        view["agent"] = rec.agent
    if rec.model:
        view["model"] = rec.model
    if rec.previous_interaction_id:
        view["previous_interaction_id"] = rec.previous_interaction_id
    if rec.usage:
        view["usage"] = rec.usage
    if rec.config.get("labels"):
        view["labels"] = rec.config["labels"]
    if rec.errors:
        view["errors"] = [{"code": e.get("code"), "message": e.get("message")} for e in rec.errors]
    if include_input:
        view["input"] = rec.input
    return view


def artifact_view(rec: ArtifactRecord) -> dict[str, Any]:
    """An artifact as events, the CLI and the API show it (never its path on our disk)."""
    return {
        "path": rec.path,
        "size": rec.size,
        "sha256": rec.sha256,
        "media_type": rec.media_type,
        "created": iso(rec.created),
    }
