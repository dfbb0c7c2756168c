"""Run events: persisted first, then fanned out live.

Every event a run produces is appended to the store (which assigns the monotonic `event_id`)
and then published on the in-process `EventBus`. A subscriber replays from the store after the
id it has seen and then follows live. Each live subscriber has a bounded queue: one that falls
behind is not buffered without limit — it is marked lagging and catches up from the store, so a
stalled client can never grow controller memory.

Several nodes (`runtime.fleet`): a `Fanout` attached with `attach()` is told after every commit
(it NOTIFYs the other nodes); events another node stored arrive as `wake(id)`, which sends the
local subscribers of that interaction back to the store (the store is the one source, so ids
stay contiguous). With `poll` set, a subscriber also re-reads the store after that many quiet
seconds, so a lost notification costs at most `poll` seconds.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from runtime.store.base import EventRecord, Store

TERMINAL_EVENT = "interaction.completed"
CANCEL_REQUESTED = "cancel.requested"
"""Corral's own event: a node that does not run the interaction recorded a cancel for it."""
QUEUE_LIMIT = 256


class Fanout(Protocol):
    def published(self, interaction_id: str, last_event_id: int) -> None:
        """Events up to `last_event_id` are committed (tell the other nodes; never blocks)."""
        ...


@dataclass(eq=False)  # identity semantics: subscribers live in a set
class _Subscriber:
    queue: asyncio.Queue[EventRecord] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    lagging: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class EventBus:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._subs: dict[str, set[_Subscriber]] = defaultdict(set)
        self._finished: set[str] = set()
        self._fanout: Fanout | None = None
        self.poll: float | None = None
        self.poll_found = 0
        """Polls that found events no wake-up had announced (a notification lost or late)."""

    def attach(self, fanout: Fanout | None, *, poll: float | None) -> None:
        """Share events with other nodes through `fanout`; subscribers re-read the store after
        `poll` quiet seconds (the safety net for a lost notification)."""
        self._fanout, self.poll = fanout, poll

    async def emit(
        self, interaction_id: str, event_type: str, payload: dict[str, Any]
    ) -> EventRecord:
        """Persist, then publish. Returns the stored record (with its event_id)."""
        rec = await self.store.append_event(interaction_id, event_type, payload)
        self.publish(rec)
        if self._fanout is not None:
            self._fanout.published(interaction_id, rec.event_id)
        return rec

    async def emit_many(
        self, interaction_id: str, events: list[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        """Persist several events in one transaction, then publish them in order."""
        recs = await self.store.append_events(interaction_id, events)
        for rec in recs:
            self.publish(rec)
        if self._fanout is not None and recs:
            self._fanout.published(interaction_id, recs[-1].event_id)
        return recs

    def publish(self, rec: EventRecord) -> None:
        for sub in self._subs.get(rec.interaction_id, ()):
            if sub.lagging:
                continue
            try:
                sub.queue.put_nowait(rec)
            except asyncio.QueueFull:
                sub.lagging = True  # it will re-read from the store
            sub.wake.set()

    def wake(self, interaction_id: str) -> None:
        """Another node stored events for this interaction: local subscribers re-read."""
        for sub in self._subs.get(interaction_id, ()):
            sub.lagging = True
            sub.wake.set()

    def wake_all(self) -> None:
        """Notifications may have been missed (the fan-out reconnected): everyone re-reads."""
        for interaction_id in list(self._subs):
            self.wake(interaction_id)

    def finish(self, interaction_id: str) -> None:
        """No more events will come for this interaction (wakes subscribers so they can end)."""
        self._finished.add(interaction_id)
        for sub in self._subs.get(interaction_id, ()):
            sub.wake.set()

    async def subscribe(
        self, interaction_id: str, *, after: int = 0, heartbeat: float | None = None
    ) -> AsyncIterator[EventRecord | None]:
        """Events with id > `after`, replayed then live, ending after the terminal event.

        With `heartbeat`, yields None when nothing happened for that many seconds (keep-alive).
        """
        sub = _Subscriber()
        self._subs[interaction_id].add(sub)
        last = after
        idle = 0.0  # quiet seconds since the last event or keep-alive (when polling)
        polled = False  # this catch-up is a poll's, not a wake-up's
        try:
            while True:
                # Catch up from the store (first pass, and whenever we fell behind).
                sub.lagging = False
                _drain(sub.queue)
                news = await self.store.list_events(interaction_id, after=last)
                if polled and news:
                    self.poll_found += 1
                polled = False
                for rec in news:
                    last, idle = rec.event_id, 0.0
                    yield rec
                    if rec.event_type == TERMINAL_EVENT:
                        return
                if interaction_id in self._finished:
                    return
                while not sub.lagging:
                    if sub.queue.empty():
                        sub.wake.clear()
                        if interaction_id in self._finished:
                            break
                        wait = _wait(heartbeat, self.poll)
                        try:
                            await asyncio.wait_for(sub.wake.wait(), wait)
                        except TimeoutError:
                            if self.poll is None:
                                yield None
                                continue
                            idle += wait or 0.0
                            if heartbeat is not None and idle >= heartbeat:
                                idle = 0.0
                                yield None
                            sub.lagging = polled = True  # poll: a notification may be lost
                        continue
                    rec = sub.queue.get_nowait()
                    if rec.event_id <= last:
                        continue
                    if rec.event_id != last + 1:
                        sub.lagging = True  # a gap: re-read from the store
                        break
                    last, idle = rec.event_id, 0.0
                    yield rec
                    if rec.event_type == TERMINAL_EVENT:
                        return
                if interaction_id in self._finished and not sub.lagging:
                    # Final catch-up so nothing persisted after our last read is missed.
                    for rec in await self.store.list_events(interaction_id, after=last):
                        last = rec.event_id
                        yield rec
                    return
        finally:
            self._subs[interaction_id].discard(sub)
            if not self._subs[interaction_id]:
                del self._subs[interaction_id]

    def subscriber_count(self, interaction_id: str) -> int:
        return len(self._subs.get(interaction_id, ()))


def _wait(heartbeat: float | None, poll: float | None) -> float | None:
    """How long a subscriber sleeps before its next keep-alive or poll, whichever is first."""
    if poll is None:
        return heartbeat
    return poll if heartbeat is None else min(poll, heartbeat)


def _drain(q: asyncio.Queue[EventRecord]) -> None:
    while not q.empty():
        q.get_nowait()
