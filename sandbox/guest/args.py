"""Validation of call arguments (the JSON ``a`` object of a call frame)."""

from __future__ import annotations

import math
from typing import Any

from .errors import INVALID_ARGUMENT, ToolFailure


def _bad(name: str, want: str, value: Any) -> ToolFailure:
    return ToolFailure(INVALID_ARGUMENT, f"argument {name!r} must be {want}, got {value!r:.80}")


def string(args: dict[str, Any], name: str, default: str | None = None) -> str:
    value = args.get(name, default)
    if not isinstance(value, str):
        raise _bad(name, "a string", value)
    return value


def opt_string(args: dict[str, Any], name: str) -> str | None:
    value = args.get(name)
    return None if value is None else string(args, name)


def boolean(args: dict[str, Any], name: str, default: bool = False) -> bool:
    value = args.get(name, default)
    if not isinstance(value, bool):
        raise _bad(name, "a boolean", value)
    return value


def integer(args: dict[str, Any], name: str, default: int, *, low: int = 0) -> int:
    value = args.get(name, default)
    if value is None:
        value = default
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise _bad(name, f"an integer >= {low}", value)
    return value


def opt_seconds(args: dict[str, Any], name: str) -> float | None:
    value = args.get(name)
    if value is None:
        return None
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise _bad(name, "a positive number of seconds", value)
    return float(value)


def env(args: dict[str, Any], name: str = "env") -> dict[str, str]:
    value = args.get(name) or {}
    if not isinstance(value, dict):
        raise _bad(name, "an object of strings", value)
    for k, v in value.items():
        if not isinstance(v, str) or not k or "=" in k or "\0" in k or "\0" in v:
            raise _bad(name, "an object of strings (names without '=')", {k: v})
    return value


def command(args: dict[str, Any], name: str = "command") -> list[str]:
    """argv of a command: a string runs through ``/bin/sh -c``, a list is the argv."""
    value = args.get(name)
    if isinstance(value, str):
        argv = ["/bin/sh", "-c", value]
    elif isinstance(value, list) and value and all(isinstance(a, str) for a in value):
        argv = list(value)
    else:
        raise _bad(name, "a string or a non-empty list of strings", value)
    if any("\0" in a for a in argv):
        raise ToolFailure(INVALID_ARGUMENT, "command contains a NUL byte")
    return argv
