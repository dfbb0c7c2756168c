"""The safety net under the fan-out: a subscriber whose node hears no notification at all
still gets every event another process stores, in order, within its poll interval; without a
poll (a single node) it relies on its own bus as before."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.events import TERMINAL_EVENT, EventBus
from runtime.store.base import InteractionRecord
from runtime.store.sql import SqlStore


async def test_polling_subscriber_sees_another_writers_events_in_order(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    async with await SqlStore.open(url) as writer_store, await SqlStore.open(url) as reader_store:
        rec = await writer_store.create_interaction(InteractionRecord(id="int_poll", tenant="t"))
        writer = EventBus(writer_store)  # another node: nothing it publishes reaches `reader`
        reader = EventBus(reader_store)
        reader.attach(None, poll=0.05)
        got: list[tuple[int, str]] = []
        keepalives = 0

        async def follow() -> None:
            nonlocal keepalives
            async for ev in reader.subscribe(rec.id, heartbeat=0.2):
                if ev is None:
                    keepalives += 1
                else:
                    got.append((ev.event_id, ev.event_type))

        task = asyncio.create_task(follow())
        await writer.emit(rec.id, "step.start", {"index": 0, "step": {"type": "thought"}})
        await asyncio.sleep(0.5)  # quiet for longer than the heartbeat: keep-alives, no events
        await writer.emit_many(
            rec.id, [("step.stop", {"index": 0}), (TERMINAL_EVENT, {"interaction": {}})]
        )
        await asyncio.wait_for(task, 30)
    assert got == [(1, "step.start"), (2, "step.stop"), (3, TERMINAL_EVENT)]
    assert keepalives >= 1  # polling does not swallow the keep-alives
    # Counted for /metrics: the terminal batch at least came by a poll (the first event
    # may have been in the subscriber's first read); quiet polls are not counted.
    assert 1 <= reader.poll_found <= 2


async def test_remote_wake_sends_subscribers_back_to_the_store(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    async with await SqlStore.open(url) as writer_store, await SqlStore.open(url) as reader_store:
        rec = await writer_store.create_interaction(InteractionRecord(id="int_wake", tenant="t"))
        writer, reader = EventBus(writer_store), EventBus(reader_store)
        reader.attach(None, poll=3600)  # the poll never fires here: only the wake can deliver
        first = asyncio.Event()
        got: list[int] = []

        async def follow() -> None:
            async for ev in reader.subscribe(rec.id):
                if ev is not None:
                    got.append(ev.event_id)
                    first.set()

        task = asyncio.create_task(follow())
        await asyncio.sleep(0.1)
        await writer.emit_many(rec.id, [("step.start", {"index": 0, "step": {}})])
        reader.wake(rec.id)  # what the LISTEN connection does on a notification
        await asyncio.wait_for(first.wait(), 30)
        await writer.emit(rec.id, TERMINAL_EVENT, {"interaction": {}})
        reader.wake_all()  # what a reconnect does
        await asyncio.wait_for(task, 30)
    assert got == [1, 2]
    assert reader.poll_found == 0  # delivered by wake-ups, not by the poll
