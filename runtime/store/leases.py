"""The fleet's rows in the SQL store: nodes, run leases and the fencing of step writes.

Transactions here are plain functions of a `Connection`, run by `SqlStore` like the others.

A lease is three columns of `interactions`: `owner_node`, `lease_expires_at`, `lease_epoch`.
Claiming bumps the epoch, and so does releasing. The claiming store remembers the epoch it got
(its *fence*) and every later write it makes for that interaction (events, fields, the verdict)
carries `WHERE lease_epoch = fence`: a node that lost the lease (it stalled, was cut off from the
database, was taken for dead) or gave it up finds its next write refused with `LeaseLost`
instead of interleaving steps with its successor's.

Claims of expired leases select candidates with `FOR UPDATE SKIP LOCKED` on PostgreSQL, so
nodes sweeping together never block on, or both take, the same row; the UPDATE re-checks the
expiry, so even without the row lock (SQLite ignores FOR UPDATE; its write lock serialises
writers) a lease is granted to exactly one claimant.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, insert, or_, select, update

from runtime.errors import Conflict, NotFound
from runtime.store.base import InteractionRecord, NodeRecord
from runtime.store.models import InteractionRow, NodeRow, SandboxRow

I = InteractionRow.__table__.c  # noqa: E741
N = NodeRow.__table__.c
S = SandboxRow.__table__.c
IN_PROGRESS = "in_progress"


class LeaseLost(Conflict):
    """This node no longer holds the run's lease: another node took it over."""

    code = "lease_lost"


def record(row: Any) -> InteractionRecord:
    return InteractionRecord(**dict(row._mapping))


def node_record(row: Any) -> NodeRecord:
    return NodeRecord(**dict(row._mapping))


def upsert_node(conn: Connection, rec: NodeRecord) -> None:
    values = {
        "url": rec.url,
        "started_at": rec.started_at,
        "heartbeat_at": rec.heartbeat_at,
        "draining": rec.draining,
        "capacity": rec.capacity,
    }
    if conn.execute(update(NodeRow).where(N.id == rec.id).values(**values)).rowcount == 0:
        conn.execute(insert(NodeRow).values(id=rec.id, **values))


def heartbeat(
    conn: Connection, node: str, running: set[str], now: datetime, ttl: float, draining: bool
) -> set[str] | None:
    """Mark the node alive and renew the leases of the runs it executes (`running`): the ids
    renewed (the others were lost), None if the node has no row (it was deleted).

    Only runs executing here are renewed: a node restarted under the same id must let its
    predecessor's runs expire so that they are taken over, not kept alive with no loop."""
    touched = conn.execute(
        update(NodeRow).where(N.id == node).values(heartbeat_at=now, draining=draining)
    ).rowcount
    if touched == 0:
        return None
    if not running:
        return set()
    renewed = conn.execute(
        update(InteractionRow)
        .where(I.owner_node == node, I.status == IN_PROGRESS, I.id.in_(running))
        .values(lease_expires_at=now + timedelta(seconds=ttl))
        .returning(I.id)
    )
    return set(renewed.scalars().all())


def claim(
    conn: Connection, interaction_id: str, node: str, now: datetime, ttl: float
) -> InteractionRecord | None:
    """Take the lease of one in-progress run if nobody holds it or it expired."""
    free = or_(I.owner_node.is_(None), I.lease_expires_at < now)
    rows = conn.execute(
        update(InteractionRow)
        .where(I.id == interaction_id, I.status == IN_PROGRESS, free)
        .values(
            owner_node=node,
            lease_expires_at=now + timedelta(seconds=ttl),
            lease_epoch=I.lease_epoch + 1,
        )
        .returning(*InteractionRow.__table__.c)
    ).all()
    return record(rows[0]) if rows else None


def claim_expired(
    conn: Connection, node: str, running: set[str], now: datetime, ttl: float, limit: int
) -> list[tuple[InteractionRecord, str | None]]:
    """Take up to `limit` in-progress runs whose owner stopped renewing (or that have none),
    except those this node executes (`running`).

    Returns each claimed run with the node that held it before (None: it had no owner)."""
    expired = or_(I.owner_node.is_(None), I.lease_expires_at < now)
    candidates = conn.execute(
        select(I.id, I.owner_node)
        .where(I.status == IN_PROGRESS, expired, I.id.not_in(running))
        .order_by(I.created)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    claimed = []
    for iid, previous in candidates:
        rec = claim(conn, iid, node, now, ttl)
        if rec is not None:
            claimed.append((rec, previous))
    return claimed


def release(conn: Connection, interaction_id: str, node: str, epoch: int) -> bool:
    """Give the lease up (drain, queueing): the run is free for any node at once.

    The epoch moves on too, so the release is a fence of its own: a write this node still had
    in flight under the epoch it gave up (sent before, reaching the database after) is refused
    rather than landing before (or, had the epoch stayed, between) the next claim."""
    done = conn.execute(
        update(InteractionRow)
        .where(I.id == interaction_id, I.owner_node == node, I.lease_epoch == epoch)
        .values(owner_node=None, lease_expires_at=None, lease_epoch=I.lease_epoch + 1)
    ).rowcount
    return bool(done)


def lost_or_missing(
    conn: Connection, interaction_id: str, epoch: int | None, tenant: str | None = None
) -> Exception:
    """Why a write (fenced by `epoch`, or not) matched no row: the run is not there (or is
    another tenant's), or its lease moved on to another node."""
    q = select(I.lease_epoch).where(I.id == interaction_id)
    if tenant is not None:
        q = q.where(I.tenant == tenant)
    now = conn.execute(q).scalar()
    if now is None or epoch is None:
        return NotFound(f"interaction {interaction_id} not found")
    return LeaseLost(f"interaction {interaction_id} is now run by another node (epoch {now})")


def check_fence(conn: Connection, interaction_id: str, epoch: int) -> None:
    """Refuse the rest of this transaction unless the run's lease is still at `epoch`; the row
    lock (PostgreSQL) keeps a claim from slipping in before the transaction commits."""
    q = select(I.lease_epoch).where(I.id == interaction_id).with_for_update()
    now = conn.execute(q).scalar()
    if now is None:
        raise NotFound(f"interaction {interaction_id} not found")
    if now != epoch:
        raise LeaseLost(f"interaction {interaction_id} is now run by another node (epoch {now})")


def fenced(epoch: int | None) -> Any:
    """The extra WHERE of a fenced write (true when the store holds no fence)."""
    return and_(True) if epoch is None else I.lease_epoch == epoch


def list_nodes(conn: Connection, since: datetime | None) -> list[NodeRecord]:
    q = select(NodeRow.__table__).order_by(N.started_at, N.id)
    if since is not None:
        q = q.where(N.heartbeat_at >= since)
    return [node_record(r) for r in conn.execute(q).all()]


def sandbox_node(conn: Connection, sandbox_id: str) -> str | None:
    rows = conn.execute(select(S.node).where(S.id == sandbox_id)).all()
    if not rows:
        raise NotFound(f"sandbox {sandbox_id} not found")
    return rows[0][0]  # type: ignore[no-any-return]
