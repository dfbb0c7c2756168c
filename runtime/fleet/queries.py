"""The fleet's reads on the shared tables that the `Store` interface does not carry.

Plain functions of a SQLAlchemy `Connection`, run through the store's own transaction runner
(`SqlStore._read`), so they use the same engine, pool and error mapping as every other store
operation. Tables come from `runtime.store.models`.

- `cancel_requests(store, ids)`: which of these interactions have a `cancel.requested` event
  (the durable cancel a non-owning node recorded), with their tenants.
- `sandbox_owner(store, sandbox_id, tenant)`: the node that runs a tenant's sandbox and the URL
  it registered (None when the sandbox is unknown to that tenant, or has no recorded node).
- `run_owner(store, interaction_id, tenant)`: the same for the node that last held a run.
- `census(store, node, alive_within)`: the fleet as `/metrics` shows it (nodes alive by
  draining state, runs leased to this node, runs no node holds).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, func, or_, select

from runtime.events import CANCEL_REQUESTED
from runtime.store.base import utcnow
from runtime.store.leases import IN_PROGRESS
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


@dataclass(frozen=True)
class Census:
    """The fleet seen from one node, read at one moment."""

    nodes: dict[bool, int]
    """Nodes whose heartbeat is recent, by draining state (False: taking runs)."""
    leased: int
    """In-progress runs whose live lease this node holds."""
    unclaimed: int
    """In-progress runs no node holds: queued (or handed off) runs and runs whose node stopped
    renewing, which the next sweep of a node with room claims."""


async def census(store: SqlStore, node: str, alive_within: float) -> Census:
    return await store._read(_census, node, utcnow(), timedelta(seconds=alive_within))


def _census(conn: Connection, node: str, now: datetime, alive_within: timedelta) -> Census:
    by_draining = conn.execute(
        select(N.draining, func.count())
        .where(N.heartbeat_at >= now - alive_within)
        .group_by(N.draining)
    ).all()
    nodes = {False: 0, True: 0} | {bool(d): int(n) for d, n in by_draining}
    running = I.status == IN_PROGRESS
    leased = conn.execute(
        select(func.count()).where(running, I.owner_node == node, I.lease_expires_at >= now)
    ).scalar_one()
    free = or_(I.owner_node.is_(None), I.lease_expires_at < now)
    unclaimed = conn.execute(select(func.count()).where(running, free)).scalar_one()
    return Census(nodes, int(leased), int(unclaimed))
