"""The fleet's reads on the shared tables that the `Store` interface does not carry.

Plain functions of a SQLAlchemy `Connection`, run through the store's own transaction runner
(`SqlStore._read`), so they use the same engine, pool and error mapping as every other store
operation. Tables come from `runtime.store.models`.

- `cancel_requests(store, ids)`: which of these interactions have a `cancel.requested` event
  (the durable cancel a non-owning node recorded), with their tenants.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import Connection, select

from runtime.events import CANCEL_REQUESTED
from runtime.store.models import EventRow, InteractionRow
from runtime.store.sql import SqlStore

E = EventRow.__table__.c
I = InteractionRow.__table__.c  # noqa: E741 - the store's short names


async def cancel_requests(store: SqlStore, ids: Collection[str]) -> list[tuple[str, str]]:
    """(interaction id, tenant) of those among `ids` whose cancel was requested."""
    if not ids:
        return []
    return await store._read(_cancel_requests, sorted(ids))


def _cancel_requests(conn: Connection, ids: list[str]) -> list[tuple[str, str]]:
    q = (
        select(I.id, I.tenant)
        .where(I.id.in_(ids))
        .where(
            select(E.event_id)
            .where(E.interaction_id == I.id, E.event_type == CANCEL_REQUESTED)
            .exists()
        )
    )
    return [(str(r[0]), str(r[1])) for r in conn.execute(q)]

