"""Directory watches on a sandbox: the guest's `watch` method (guest/watch.py) as batches.

    async for batch in watch(sb, "/workspace/src", recursive=True):
        batch.events   # [("create", "a.txt"), ("write", "a.txt"), ...]
        batch.dropped  # events lost before this batch (rescan when > 0)

The first batch is empty and comes once the watch is armed: events after it are seen. The
iteration ends when the watched folder goes away; leaving it cancels the watch in the guest.
A batch is the guest's JSON: parsed strictly (known kinds, string names, bounded counts) and
a malformed one is a ProtocolError, never passed on.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Literal, cast

from sandbox.api import Sandbox
from sandbox.errors import ProtocolError

Kind = Literal["create", "write", "remove", "rename", "chmod"]
KINDS: frozenset[str] = frozenset(("create", "write", "remove", "rename", "chmod"))
NAME_MAX = 4096


@dataclass(frozen=True)
class WatchBatch:
    events: list[tuple[Kind, str]]
    dropped: int


async def watch(
    sb: Sandbox, path: str, *, recursive: bool = False
) -> AsyncGenerator[WatchBatch, None]:
    if sb.rpc.closed:
        raise ProtocolError(f"sandbox {sb.id}: not connected")
    stream = cast(
        AsyncGenerator[bytes, None],
        sb.rpc._stream("watch", {"path": path, "recursive": recursive}, None),
    )
    try:
        async for chunk in stream:
            yield parse(chunk)
    finally:
        await stream.aclose()


def parse(chunk: bytes) -> WatchBatch:
    try:
        raw = json.loads(chunk)
    except ValueError:
        raise ProtocolError("guest sent a watch batch that is not JSON") from None
    if not isinstance(raw, dict):
        raise ProtocolError("guest sent a watch batch that is not an object")
    events, dropped = raw.get("events"), raw.get("dropped", 0)
    if not isinstance(events, list) or not isinstance(dropped, int) or dropped < 0:
        raise ProtocolError("guest sent a malformed watch batch")
    out: list[tuple[Kind, str]] = []
    for ev in events:
        if (
            not isinstance(ev, list)
            or len(ev) != 2
            or ev[0] not in KINDS
            or not isinstance(ev[1], str)
            or len(ev[1]) > NAME_MAX
        ):
            raise ProtocolError("guest sent a malformed watch event")
        out.append((cast(Kind, ev[0]), ev[1]))
    return WatchBatch(out, dropped)
