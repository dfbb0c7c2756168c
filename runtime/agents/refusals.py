"""`network.refused` events: requests the egress proxy refused, surfaced while a run goes on."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sandbox.api import Sandbox

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]


class RefusalWatcher:
    """Reads the sandbox's refusals since the last look and emits one event per refusal.

    Cheap when nothing happened (one stat-and-read of the proxy's log), so it runs after every
    tool call of an allowlist run. The offset starts at the log's end when the run starts:
    refusals of earlier runs in the same (reused) sandbox are not repeated.
    """

    def __init__(self, sandbox: Sandbox, emit: Emit) -> None:
        self.sandbox = sandbox
        self.emit = emit
        self.offset: int | None = None

    async def start(self) -> None:
        # Everything logged before this run belongs to someone else's story.
        _, self.offset = await self.sandbox.network_refusals(_END)

    async def scan(self) -> int:
        if self.offset is None:
            self.offset = 0
        refusals, self.offset = await self.sandbox.network_refusals(self.offset)
        for r in refusals:
            await self.emit(
                "network.refused",
                {
                    "sandbox_id": r.sandbox,
                    "host": r.host,
                    "port": r.port,
                    "reason": r.reason,
                    "message": r.detail,
                },
            )
        return len(refusals)


_END = 1 << 62
"""An offset past any log: `read_refusals` returns the log's real end for it."""
