"""The fleet's reads on the shared tables that the `Store` interface does not carry.

Plain functions of a SQLAlchemy `Connection`, run through the store's own transaction runner
(`SqlStore._read`), so they use the same engine, pool and error mapping as every other store
operation. Tables come from `runtime.store.models`.

- `cancel_requests(store, ids)`: which of these interactions have a `cancel.requested` event
  (the durable cancel a non-owning node recorded), with their tenants.
- `sandbox_owner(store, sandbox_id, tenant)`: the node that runs a tenant's sandbox and the URL
  it registered (None when the sandbox is unknown to that tenant, or has no recorded node).
- `run_owner(store, interaction_id, tenant)`: the same for the node that last held a run.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, select

from runtime.events import CANCEL_REQUESTED
from runtime.store.models import EventRow, InteractionRow, NodeRow, SandboxRow
from runtime.store.sql import SqlStore

E = EventRow.__table__.c
I = InteractionRow.__table__.c  # noqa: E741 - the store's short names
N = NodeRow.__table__.c
S = SandboxRow.__table__.c


@dataclass(frozen=True)
class Owner:
    """Where a sandbox lives: its node's id, the URL it registered (None: the node row is
    gone) and that node's last heartbeat."""

    node: str
    url: str | None
    heartbeat_at: datetime | None


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


async def sandbox_owner(store: SqlStore, sandbox_id: str, tenant: str | None) -> Owner | None:
    """With `tenant` None the sandbox is found by id alone (the caller proves access to the
    owner some other way, e.g. the E2B door's per-sandbox token)."""
    return await store._read(_sandbox_owner, sandbox_id, tenant)


def _sandbox_owner(conn: Connection, sandbox_id: str, tenant: str | None) -> Owner | None:
    q = (
        select(S.node, N.url, N.heartbeat_at)
        .select_from(SandboxRow.__table__.outerjoin(NodeRow.__table__, N.id == S.node))
        .where(S.id == sandbox_id)
    )
    if tenant is not None:
        q = q.where(S.tenant == tenant)
    row = conn.execute(q).first()
    if row is None or row[0] is None:
        return None
    return Owner(str(row[0]), row[1], row[2])


async def run_owner(store: SqlStore, interaction_id: str, tenant: str) -> Owner | None:
    """The node that last held the tenant's run (it collected its newest artifact copies)."""
    return await store._read(_run_owner, interaction_id, tenant)


def _run_owner(conn: Connection, interaction_id: str, tenant: str) -> Owner | None:
    q = (
        select(I.owner_node, N.url, N.heartbeat_at)
        .select_from(InteractionRow.__table__.outerjoin(NodeRow.__table__, N.id == I.owner_node))
        .where(I.id == interaction_id, I.tenant == tenant)
    )
    row = conn.execute(q).first()
    if row is None or row[0] is None:
        return None
    return Owner(str(row[0]), row[1], row[2])
