"""EventBus: persisted then published; replay + live; bounded memory for slow subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from runtime import events as events_mod
from runtime.events import EventBus
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import SqlStore, open_store


@pytest.fixture
async def store(corral_home: Path) -> AsyncIterator[SqlStore]:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    s = await open_store(settings)
    await s.create_interaction(InteractionRecord(id="int_1", tenant="t"))
    yield s
    await s.aclose()


async def test_replay_then_live_then_end(store: SqlStore) -> None:
    bus = EventBus(store)
    for i in range(3):
        await bus.emit("int_1", "step.delta", {"i": i})
    got: list[int] = []

    async def consume() -> None:
        async for ev in bus.subscribe("int_1", after=1):
            assert ev is not None
            got.append(ev.event_id)

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.05)
    await bus.emit("int_1", "step.delta", {"i": 3})
    await bus.emit("int_1", "interaction.completed", {})
    await asyncio.wait_for(task, 5)
    assert got == [2, 3, 4, 5]
    assert bus.subscriber_count("int_1") == 0


async def test_stalled_subscriber_is_bounded_and_catches_up(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_mod, "QUEUE_LIMIT", 4)
    bus = EventBus(store)
    it = bus.subscribe("int_1").__aiter__()
    first = asyncio.create_task(it.__anext__())
    await asyncio.sleep(0.05)
    for i in range(50):  # the subscriber does not read while these arrive
        await bus.emit("int_1", "step.delta", {"i": i})
    await bus.emit("int_1", "interaction.completed", {})
    (sub,) = bus._subs["int_1"]
    assert sub.queue.qsize() <= 4  # bounded: it fell behind and was marked lagging
    ids = [(await first).event_id]  # type: ignore[union-attr]
    async for ev in it:
        ids.append(ev.event_id)  # type: ignore[union-attr]
    assert ids == list(range(1, 52))  # nothing lost: caught up from the store


async def test_heartbeat_when_idle(store: SqlStore) -> None:
    bus = EventBus(store)
    it = bus.subscribe("int_1", heartbeat=0.05).__aiter__()
    assert await asyncio.wait_for(it.__anext__(), 5) is None
    await it.aclose()


async def test_finished_interaction_ends_subscription(store: SqlStore) -> None:
    bus = EventBus(store)
    await bus.emit("int_1", "step.start", {"index": 0, "step": {"type": "user_input"}})
    bus.finish("int_1")
    got = [ev async for ev in bus.subscribe("int_1")]
    assert [e.event_id for e in got if e] == [1]
