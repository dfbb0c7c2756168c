"""Tool-call ids: never empty, unique within a turn, whatever the server sent."""

from __future__ import annotations

import uuid


def new_call_id(prefix: str = "call") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def unique_id(candidate: str | None, seen: set[str], prefix: str = "call") -> str:
    """`candidate` when it is usable, else a fresh id; records the result in `seen`."""
    ident = candidate if candidate and candidate not in seen else new_call_id(prefix)
    seen.add(ident)
    return ident
