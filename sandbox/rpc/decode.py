"""Turning guest replies into typed results, defensively.

The guest runs untrusted code, so a reply is checked field by field; anything unexpected is a
`ProtocolError`, never a TypeError deep in the caller. Error codes map through the fixed
table in `sandbox.errors` (the guest cannot make us instantiate a class it names).
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from sandbox.errors import ProtocolError, RpcError, tool_error
from sandbox.types import FileInfo, ProcessStatus

T = TypeVar("T")
_MESSAGE_MAX = 8192


def field(r: dict[str, Any], name: str, kind: type[T] | tuple[type, ...]) -> T:
    value = r.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, float)):
        raise ProtocolError(f"guest reply field {name!r} has an unexpected value {value!r:.80}")
    return value  # type: ignore[return-value]


def number(r: dict[str, Any], name: str) -> float:
    return float(field(r, name, (int, float)))


def opt_int(r: dict[str, Any], name: str) -> int | None:
    return None if r.get(name) is None else field(r, name, int)


def opt_str(r: dict[str, Any], name: str) -> str | None:
    return None if r.get(name) is None else field(r, name, str)


def error_from(header: dict[str, Any]) -> RpcError:
    """The host exception for an ``error`` frame."""
    code, message = header.get("code"), header.get("message")
    code = code if isinstance(code, str) else "tool_error"
    message = message[:_MESSAGE_MAX] if isinstance(message, str) else "(no message)"
    if code in ("protocol", "unauthorized"):
        return ProtocolError(f"guest refused the connection: {message}", reason=code)
    return tool_error(code, message)


def json_list(payload: bytes) -> list[dict[str, Any]]:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"guest sent invalid JSON: {exc}") from None
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise ProtocolError("guest sent a malformed list")
    return value


def json_object(payload: bytes) -> dict[str, Any]:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise ProtocolError(f"guest sent invalid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError("guest sent a malformed object")
    return value


def file_info(r: dict[str, Any]) -> FileInfo:
    return FileInfo(
        path=field(r, "path", str),
        size=field(r, "size", int),
        is_dir=field(r, "is_dir", bool),
        mode=field(r, "mode", int),
        mtime=number(r, "mtime"),
        is_symlink=field(r, "is_symlink", bool),
    )


def process_status(r: dict[str, Any]) -> ProcessStatus:
    command = field(r, "command", list)
    return ProcessStatus(
        running=field(r, "running", bool),
        exit_code=opt_int(r, "exit_code"),
        handle=field(r, "handle", str),
        pid=field(r, "pid", int),
        command=tuple(str(c) for c in command),
        signal=opt_int(r, "signal"),
        started=number(r, "started"),
        output_end=field(r, "output_end", int),
    )
