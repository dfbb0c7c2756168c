"""An in-memory stand-in for the store, for `store=false` interactions.

Such an interaction runs exactly like a stored one (same events, same bus, same view) but its
record and events live in this object only, which is dropped when the response ends: nothing
reaches the database. Only the parts of `Store` that `Inference` and `EventBus` use exist here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from runtime.errors import NotFound
from runtime.events import EventBus
from runtime.store.base import EventRecord, InteractionRecord, Store, utcnow


class EphemeralStore:
    def __init__(self) -> None:
        self.interactions: dict[str, InteractionRecord] = {}
        self.events: dict[str, list[EventRecord]] = {}

    async def create_interaction(self, rec: InteractionRecord) -> InteractionRecord:
        self.interactions[rec.id] = rec
        self.events[rec.id] = []
        return rec

    async def get_interaction(self, tenant: str, interaction_id: str) -> InteractionRecord:
        rec = self.interactions.get(interaction_id)
        if rec is None or rec.tenant != tenant:
            raise NotFound(f"interaction {interaction_id} not found")
        return rec

    async def update_interaction(
        self, tenant: str, interaction_id: str, **fields: Any
    ) -> InteractionRecord:
        rec = await self.get_interaction(tenant, interaction_id)
        rec = dataclasses.replace(rec, **fields, updated=utcnow())
        self.interactions[interaction_id] = rec
        return rec

    async def append_event(
        self, interaction_id: str, event_type: str, payload: dict[str, Any]
    ) -> EventRecord:
        events = self.events.setdefault(interaction_id, [])
        rec = EventRecord(interaction_id, len(events) + 1, event_type, payload)
        events.append(rec)
        return rec

    async def append_events(
        self, interaction_id: str, events: list[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        return [await self.append_event(interaction_id, t, p) for t, p in events]

    async def list_events(
        self, interaction_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        found = self.events.get(interaction_id, [])[after:]
        return found if limit is None else found[:limit]


def ephemeral_pair() -> tuple[Store, EventBus]:
    """A throwaway (store, bus) for one `store=false` interaction."""
    # Structurally only the subset of `Store` used by Inference and EventBus; the cast says so.
    store = cast(Store, EphemeralStore())
    return store, EventBus(store)
