"""Logging and the server's reaper survive what a host does around them: a swapped and closed
stderr (a CLI runner, an embedding app), or one reaper pass failing in an unexpected way."""

from __future__ import annotations

import asyncio
import io
import sys
from typing import Any

import pytest
import structlog

from runtime.api.app import tend_forever
from runtime.logs import configure_logging


def test_logs_follow_the_current_stderr(monkeypatch: pytest.MonkeyPatch) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("json", "info")
    try:
        first.close()  # the stream logging was configured with is gone
        second = io.StringIO()
        monkeypatch.setattr(sys, "stderr", second)
        structlog.get_logger("t").warning("still.logging", n=1)
        assert '"event": "still.logging"' in second.getvalue()
    finally:
        monkeypatch.undo()
        configure_logging("console", "warning")


class FlakyHub:
    def __init__(self) -> None:
        self.calls = 0
        self.done = asyncio.Event()

    async def tend(self) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ValueError("I/O operation on closed file.")  # not a SandboxError
        self.done.set()


async def test_the_reaper_survives_an_unexpected_error() -> None:
    hub: Any = FlakyHub()
    task = asyncio.create_task(tend_forever(hub, 0.01))
    try:
        await asyncio.wait_for(hub.done.wait(), 10)
    finally:
        task.cancel()
    assert hub.calls >= 2
