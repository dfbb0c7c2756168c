from __future__ import annotations

from collections.abc import Iterator

import pytest

from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.fakes import FakeServer


class RecordingSleep:
    """Stands in for asyncio.sleep: records the delays asked for, waits for nothing."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def policy(sleep: RecordingSleep) -> RetryPolicy:
    return RetryPolicy(max_attempts=3, sleep=sleep)
