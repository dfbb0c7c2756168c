"""SqlStore: the `Store` on SQLAlchemy 2 — a SQLite file by default, PostgreSQL for replicas.

Each operation is one transaction written as a plain function of a `Connection`; a runner
(`runtime.store.engines`) executes it on a thread (SQLite) or through the async engine
(PostgreSQL/asyncpg). Only portable SQL is used (`UPDATE ... RETURNING` works on SQLite >= 3.35
and PostgreSQL).

Event ids come from a counter column on the interaction row, incremented by the same transaction
that inserts the events: the row lock (PostgreSQL) or the write lock (SQLite) serialises
appenders, so ids are gap-free and monotonic across any number of processes.

In a fleet (several nodes on one PostgreSQL) the store knows its node (`set_node`): the runs it
creates are leased to that node from birth, and its writes for a run are fenced by the lease
epoch it holds (`runtime.store.leases`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError

from runtime.errors import Conflict, NotFound, StorageFull, StoreUnavailable
from runtime.settings import Settings
from runtime.store import leases
from runtime.store.base import (
    AgentRecord,
    ArtifactRecord,
    EventRecord,
    InteractionRecord,
    NodeRecord,
    SandboxRecord,
    WebhookDeliveryRecord,
    utcnow,
)
from runtime.store.engines import TxRunner, open_runner
from runtime.store.migrate import upgrade
from runtime.store.models import (
    AgentRow,
    ArtifactRow,
    Base,
    EventRow,
    IdempotencyRow,
    InteractionRow,
    NodeRow,
    SandboxRow,
    WebhookDeliveryRow,
)

P = ParamSpec("P")
R = TypeVar("R")

# Fields a caller may change after creation; `updated` is always set by the store.
_INTERACTION_MUTABLE = frozenset(f.name for f in dataclasses.fields(InteractionRecord)) - {
    "id",
    "tenant",
    "created",
    "updated",
    "last_event_id",
    # Leases change only through the lease methods, which check the epoch.
    "owner_node",
    "lease_expires_at",
    "lease_epoch",
}
_WEBHOOK_MUTABLE = frozenset({"status", "attempts", "next_attempt_at", "last_error", "payload"})

I = InteractionRow.__table__.c  # noqa: E741 - short names keep the statements readable
E = EventRow.__table__.c
A = ArtifactRow.__table__.c
G = AgentRow.__table__.c
K = IdempotencyRow.__table__.c
S = SandboxRow.__table__.c
W = WebhookDeliveryRow.__table__.c

# The append hot path, built once: statement construction costs more than SQLite's work.
_BUMP_EVENT_COUNTER = (
    update(InteractionRow)
    .where(I.id == bindparam("iid"))
    .values(last_event_id=I.last_event_id + bindparam("n"))
    .returning(I.last_event_id)
)
_BUMP_EVENT_COUNTER_FENCED = _BUMP_EVENT_COUNTER.where(I.lease_epoch == bindparam("epoch"))
_INSERT_EVENTS = insert(EventRow)


def _record(cls: type[R], row: Any) -> R:
    # Column names equal dataclass field names by construction (see models.py).
    return cls(**dict(row._mapping))


class SqlStore:
    """`Store` over SQLAlchemy. Create with `await SqlStore.open(url)` or `open_store(settings)`."""

    def __init__(self, runner: TxRunner) -> None:
        self._runner = runner
        self.node: str | None = None
        """This process's node id in a fleet (None: leases are not used)."""
        self.lease_ttl = 15.0
        # interaction id -> the lease epoch this node holds for it (see runtime.store.leases).
        self._fences: dict[str, int] = {}

    def set_node(self, node: str, lease_ttl: float) -> None:
        """Lease the runs this store creates to `node`, for `lease_ttl` seconds per renewal."""
        self.node, self.lease_ttl = node, lease_ttl

    @classmethod
    async def open(cls, url: str) -> SqlStore:
        """Connect and bring the schema to this release's head (`runtime.store.migrate`)."""
        store = cls(open_runner(url))
        try:
            await store._write(upgrade)
        except BaseException:
            await store.aclose()
            raise
        return store

    async def __aenter__(self) -> SqlStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._runner.aclose()

    @property
    def dialect(self) -> str:
        return self._runner.dialect

    # Transactions -----------------------------------------------------------------------------
    async def _write(
        self, fn: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """One committed transaction. A unique-key clash becomes `Conflict`."""
        try:
            return await self._runner.write(fn, *args, **kwargs)
        except IntegrityError as e:
            raise Conflict(f"already exists: {e.orig}") from e
        except DBAPIError as e:
            raise _store_error(e) from e
        except OSError as e:  # the database server cannot be reached (asyncpg connects raw)
            raise StoreUnavailable(f"store unavailable: {e}") from e

    async def _read(
        self, fn: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        try:
            return await self._runner.read(fn, *args, **kwargs)
        except DBAPIError as e:
            raise _store_error(e) from e
        except OSError as e:
            raise StoreUnavailable(f"store unavailable: {e}") from e

    async def _upsert(
        self,
        table: type[Base],
        key: dict[str, Any],
        values: dict[str, Any],
        insert_only: dict[str, Any] | None = None,
        fence: tuple[str, int] | None = None,
    ) -> None:
        """UPDATE, else INSERT; a concurrent INSERT of the same key makes the retry an UPDATE.
        `fence` (interaction id, epoch): only while this node still holds that run's lease."""
        for _ in range(3):
            try:
                await self._write(_upsert_tx, table, key, values, insert_only or {}, fence)
                return
            except leases.LeaseLost:
                raise
            except Conflict:
                continue
        raise Conflict(f"could not upsert {table.__tablename__} {key}")

    async def _rows(self, query: Any) -> list[Any]:
        return await self._read(_all_rows, query)

    # Interactions -----------------------------------------------------------------------------
    async def create_interaction(self, rec: InteractionRecord) -> InteractionRecord:
        values = dataclasses.asdict(rec) | {"last_event_id": 0}
        if self.node is not None and rec.status == leases.IN_PROGRESS:
            # Born leased to this node: no other node may take it while we renew the lease.
            expires = utcnow() + timedelta(seconds=self.lease_ttl)
            values |= {"owner_node": self.node, "lease_expires_at": expires, "lease_epoch": 1}
        try:
            await self._write(_execute, insert(InteractionRow).values(**values))
        except Conflict as e:
            raise Conflict(f"interaction {rec.id} already exists") from e
        if self.node is not None and rec.status == leases.IN_PROGRESS:
            self._fences[rec.id] = 1
        return InteractionRecord(**values)

    async def get_interaction(self, tenant: str, interaction_id: str) -> InteractionRecord:
        q = select(InteractionRow.__table__).where(_interaction(tenant, interaction_id))
        rows = await self._rows(q)
        if not rows:
            raise NotFound(f"interaction {interaction_id} not found")
        return _record(InteractionRecord, rows[0])

    async def update_interaction(
        self, tenant: str, interaction_id: str, **fields: Any
    ) -> InteractionRecord:
        unknown = set(fields) - _INTERACTION_MUTABLE
        if unknown:
            raise TypeError(f"cannot update interaction field(s): {', '.join(sorted(unknown))}")
        epoch = self._fences.get(interaction_id)
        stmt = (
            update(InteractionRow)
            .where(_interaction(tenant, interaction_id), leases.fenced(epoch))
            .values(**fields, updated=utcnow())
            .returning(*InteractionRow.__table__.c)
        )
        rows = await self._write(_fenced_rows, stmt, interaction_id, epoch, tenant)
        if fields.get("status", leases.IN_PROGRESS) != leases.IN_PROGRESS:
            self._fences.pop(interaction_id, None)  # ended: the lease no longer matters
        return _record(InteractionRecord, rows[0])

    async def list_interactions(
        self,
        tenant: str,
        *,
        limit: int = 50,
        status: str | None = None,
        before: datetime | None = None,
    ) -> list[InteractionRecord]:
        q = select(InteractionRow.__table__).where(I.tenant == tenant)
        if status is not None:
            q = q.where(I.status == status)
        if before is not None:
            q = q.where(I.created < before)
        q = q.order_by(I.created.desc(), I.id.desc()).limit(limit)
        return [_record(InteractionRecord, r) for r in await self._rows(q)]

    async def list_unfinished_interactions(self) -> list[InteractionRecord]:
        q = select(InteractionRow.__table__).where(I.status == "in_progress").order_by(I.created)
        return [_record(InteractionRecord, r) for r in await self._rows(q)]

    async def delete_interaction(self, tenant: str, interaction_id: str) -> None:
        await self._write(_delete_interaction_tx, tenant, interaction_id)

    # Events -----------------------------------------------------------------------------------
    async def append_event(
        self, interaction_id: str, event_type: str, payload: dict[str, Any]
    ) -> EventRecord:
        (rec,) = await self.append_events(interaction_id, [(event_type, payload)])
        return rec

    async def append_events(
        self, interaction_id: str, events: list[tuple[str, dict[str, Any]]]
    ) -> list[EventRecord]:
        if not events:
            return []
        epoch = self._fences.get(interaction_id)
        return await self._write(_append_events_tx, interaction_id, events, epoch)

    async def list_events(
        self, interaction_id: str, *, after: int = 0, limit: int | None = None
    ) -> list[EventRecord]:
        q = (
            select(EventRow.__table__)
            .where(E.interaction_id == interaction_id, E.event_id > after)
            .order_by(E.event_id)
        )
        if limit is not None:
            q = q.limit(limit)
        return [_record(EventRecord, r) for r in await self._rows(q)]

    # Artifacts --------------------------------------------------------------------------------
    async def add_artifact(self, rec: ArtifactRecord) -> ArtifactRecord:
        values = dataclasses.asdict(rec)
        key = {"interaction_id": values.pop("interaction_id"), "path": values.pop("path")}
        epoch = self._fences.get(rec.interaction_id)
        fence = None if epoch is None else (rec.interaction_id, epoch)
        await self._upsert(ArtifactRow, key, values, fence=fence)
        return rec

    async def list_artifacts(self, interaction_id: str) -> list[ArtifactRecord]:
        q = select(ArtifactRow.__table__).where(A.interaction_id == interaction_id).order_by(A.path)
        return [_record(ArtifactRecord, r) for r in await self._rows(q)]

    async def get_artifact(self, interaction_id: str, path: str) -> ArtifactRecord:
        q = select(ArtifactRow.__table__).where(A.interaction_id == interaction_id, A.path == path)
        rows = await self._rows(q)
        if not rows:
            raise NotFound(f"artifact {path!r} not found")
        return _record(ArtifactRecord, rows[0])

    # Agents -----------------------------------------------------------------------------------
    async def put_agent(self, tenant: str, name: str, spec: dict[str, Any]) -> AgentRecord:
        now = utcnow()
        await self._upsert(
            AgentRow,
            {"tenant": tenant, "name": name},
            {"spec": spec, "updated": now},
            insert_only={"created": now},
        )
        return await self.get_agent(tenant, name)

    async def get_agent(self, tenant: str, name: str) -> AgentRecord:
        q = select(AgentRow.__table__).where(G.tenant == tenant, G.name == name)
        rows = await self._rows(q)
        if not rows:
            raise NotFound(f"agent {name!r} not found")
        return _record(AgentRecord, rows[0])

    async def list_agents(self, tenant: str) -> list[AgentRecord]:
        q = select(AgentRow.__table__).where(G.tenant == tenant).order_by(G.name)
        return [_record(AgentRecord, r) for r in await self._rows(q)]

    async def delete_agent(self, tenant: str, name: str) -> None:
        stmt = delete(AgentRow).where(G.tenant == tenant, G.name == name)
        if await self._write(_rowcount, stmt) == 0:
            raise NotFound(f"agent {name!r} not found")

    # Idempotency keys -------------------------------------------------------------------------
    async def put_idempotency(
        self, tenant: str, key: str, request_hash: str, interaction_id: str
    ) -> str:
        row = {
            "tenant": tenant,
            "key": key,
            "request_hash": request_hash,
            "interaction_id": interaction_id,
            "created": utcnow(),
        }
        for _ in range(3):
            try:
                await self._write(_execute, insert(IdempotencyRow).values(**row))
                return interaction_id
            except Conflict:
                existing = await self.get_idempotency(tenant, key)
                if existing is not None:
                    return existing[1]
                # Deleted between the two statements (its interaction went away): try again.
        raise Conflict(f"idempotency key {key!r} is contended")

    async def get_idempotency(self, tenant: str, key: str) -> tuple[str, str] | None:
        q = select(K.request_hash, K.interaction_id).where(K.tenant == tenant, K.key == key)
        rows = await self._rows(q)
        return None if not rows else (rows[0][0], rows[0][1])

    # Sandboxes --------------------------------------------------------------------------------
    async def record_sandbox(self, rec: SandboxRecord) -> None:
        values = dataclasses.asdict(rec)
        if values["node"] is None:
            values["node"] = self.node  # the node recording it is the one whose engine runs it
        await self._upsert(SandboxRow, {"id": values.pop("id")}, values)

    async def get_sandbox(self, sandbox_id: str, *, tenant: str | None = None) -> SandboxRecord:
        rows = await self._rows(select(SandboxRow.__table__).where(_sandbox(sandbox_id, tenant)))
        if not rows:
            raise NotFound(f"sandbox {sandbox_id} not found")
        return _record(SandboxRecord, rows[0])

    async def list_sandboxes(self, tenant: str | None = None) -> list[SandboxRecord]:
        q = select(SandboxRow.__table__).order_by(S.created, S.id)
        if tenant is not None:
            q = q.where(S.tenant == tenant)
        return [_record(SandboxRecord, r) for r in await self._rows(q)]

    async def delete_sandbox(self, sandbox_id: str, *, tenant: str | None = None) -> None:
        stmt = delete(SandboxRow).where(_sandbox(sandbox_id, tenant))
        if await self._write(_rowcount, stmt) == 0:
            raise NotFound(f"sandbox {sandbox_id} not found")

    async def sandbox_node(self, sandbox_id: str) -> str | None:
        """The node whose engine runs the sandbox (None: recorded without a node id)."""
        return await self._read(leases.sandbox_node, sandbox_id)

    # Nodes and leases (runtime/store/leases.py) ----------------------------------------------
    async def upsert_node(self, rec: NodeRecord) -> None:
        await self._write(leases.upsert_node, rec)

    async def get_node(self, node_id: str) -> NodeRecord:
        rows = await self._rows(select(NodeRow.__table__).where(NodeRow.__table__.c.id == node_id))
        if not rows:
            raise NotFound(f"node {node_id} not found")
        return leases.node_record(rows[0])

    async def list_nodes(self, *, alive_within: float | None = None) -> list[NodeRecord]:
        """All nodes, or those whose last heartbeat is at most `alive_within` seconds old."""
        since = None if alive_within is None else utcnow() - timedelta(seconds=alive_within)
        return await self._read(leases.list_nodes, since)

    async def delete_node(self, node_id: str) -> None:
        await self._write(_execute, delete(NodeRow).where(NodeRow.__table__.c.id == node_id))

    async def heartbeat(
        self, running: set[str], *, draining: bool = False, capacity: int | None = None
    ) -> set[str] | None:
        """Renew this node's row and the leases of the runs it executes (`running`).

        Returns the ids still leased to it: a run in `running` but not returned was taken by
        another node. None when this node's row is gone (re-register with `upsert_node`).

        A lost run keeps its fence: its loop is still going here until the caller stops it,
        and whatever it writes meanwhile must be refused, not written unfenced. The caller
        drops the fence (`drop_fence`) once nothing of the run can write."""
        assert self.node is not None, "set_node first"
        return await self._write(
            leases.heartbeat, self.node, set(running), utcnow(), self.lease_ttl, draining
        )

    async def claim_interaction(self, interaction_id: str) -> InteractionRecord | None:
        """Lease an in-progress run nobody holds (or whose lease expired) to this node."""
        assert self.node is not None, "set_node first"
        rec = await self._write(leases.claim, interaction_id, self.node, utcnow(), self.lease_ttl)
        if rec is not None:
            self._fences[rec.id] = rec.lease_epoch
        return rec

    async def claim_expired(
        self, running: set[str], *, limit: int
    ) -> list[tuple[InteractionRecord, str | None]]:
        """Lease up to `limit` in-progress runs whose owner stopped renewing to this node (never
        one of `running`); each with the node that held it (None: it had no owner)."""
        assert self.node is not None, "set_node first"
        if limit <= 0:
            return []
        got = await self._write(
            leases.claim_expired, self.node, set(running), utcnow(), self.lease_ttl, limit
        )
        for rec, _ in got:
            self._fences[rec.id] = rec.lease_epoch
        return got

    async def release_interaction(self, interaction_id: str) -> bool:
        """Give up this node's lease on a run (drain, queueing): any node may claim it at once.
        False when the lease was not this node's to give (any more).

        The caller first stops everything that writes for the run here (`Recorder.revoke`):
        the fence goes with the lease, and what this node writes for the run afterwards is
        what any node may write for a run it does not hold (a cancel request), which a stale
        fence would refuse once another node claimed the run. A write still in flight under
        the given-up epoch is refused by the database (`leases.release` moves the epoch)."""
        epoch = self._fences.get(interaction_id)
        if self.node is None or epoch is None:
            return False
        released = await self._write(leases.release, interaction_id, self.node, epoch)
        # Released, or already another node's: either way this node holds it no more.
        self._fences.pop(interaction_id, None)
        return released

    def drop_fence(self, interaction_id: str) -> None:
        """Forget a lost lease's fence: the caller stopped every writer of the run here first
        (until then the heartbeat keeps it, so those writers are refused, not unfenced)."""
        self._fences.pop(interaction_id, None)

    def holds(self, interaction_id: str) -> int | None:
        """The lease epoch this store writes `interaction_id` under (None: unfenced)."""
        return self._fences.get(interaction_id)

    # Webhook deliveries -----------------------------------------------------------------------
    async def add_webhook_delivery(self, rec: WebhookDeliveryRecord) -> WebhookDeliveryRecord:
        await self._write(_execute, insert(WebhookDeliveryRow).values(**dataclasses.asdict(rec)))
        return rec

    async def list_pending_webhook_deliveries(
        self, *, now: datetime | None = None, limit: int = 100
    ) -> list[WebhookDeliveryRecord]:
        q = (
            select(WebhookDeliveryRow.__table__)
            .where(W.status == "pending", W.next_attempt_at <= (now or utcnow()))
            .order_by(W.next_attempt_at, W.id)
            .limit(limit)
        )
        return [_record(WebhookDeliveryRecord, r) for r in await self._rows(q)]

    async def update_webhook_delivery(
        self, delivery_id: str, **fields: Any
    ) -> WebhookDeliveryRecord:
        unknown = set(fields) - _WEBHOOK_MUTABLE
        if unknown:
            raise TypeError(f"cannot update webhook field(s): {', '.join(sorted(unknown))}")
        stmt = (
            update(WebhookDeliveryRow)
            .where(W.id == delivery_id)
            .values(**fields, updated=utcnow())
            .returning(*WebhookDeliveryRow.__table__.c)
        )
        rows = await self._write(_all_rows, stmt)
        if not rows:
            raise NotFound(f"webhook delivery {delivery_id} not found")
        return _record(WebhookDeliveryRecord, rows[0])


async def open_store(settings: Settings) -> SqlStore:
    """The store configured by `settings` (a SQLite file in `$CORRAL_HOME` by default)."""
    return await SqlStore.open(settings.db_url)


# Transactions (sync functions of a Connection; see runtime/store/engines.py) -----------------


SQLITE_FULL = 13
PG_DISK_FULL = "53100"


def _store_error(exc: DBAPIError) -> StoreUnavailable | StorageFull:
    """A full disk under the database is `StorageFull`; anything else `StoreUnavailable`."""
    orig = exc.orig
    reason = str(orig) if orig is not None else str(exc)
    code = getattr(orig, "sqlite_errorcode", None)
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    if (code is not None and code & 0xFF == SQLITE_FULL) or state == PG_DISK_FULL:
        return StorageFull(f"no space left for the store: {reason}")
    return StoreUnavailable(f"store unavailable: {reason}")


def _interaction(tenant: str, interaction_id: str) -> ColumnElement[bool]:
    return and_(I.id == interaction_id, I.tenant == tenant)


def _sandbox(sandbox_id: str, tenant: str | None) -> ColumnElement[bool]:
    if tenant is None:
        return S.id == sandbox_id
    return and_(S.id == sandbox_id, S.tenant == tenant)


def _execute(conn: Connection, stmt: Any) -> None:
    conn.execute(stmt)


def _rowcount(conn: Connection, stmt: Any) -> int:
    return conn.execute(stmt).rowcount


def _all_rows(conn: Connection, stmt: Any) -> list[Any]:
    return list(conn.execute(stmt).all())


def _fenced_rows(
    conn: Connection, stmt: Any, interaction_id: str, epoch: int | None, tenant: str
) -> list[Any]:
    rows = list(conn.execute(stmt).all())
    if not rows:
        raise leases.lost_or_missing(conn, interaction_id, epoch, tenant)
    return rows


def _upsert_tx(
    conn: Connection,
    table: type[Base],
    key: dict[str, Any],
    values: dict[str, Any],
    insert_only: dict[str, Any],
    fence: tuple[str, int] | None = None,
) -> None:
    if fence is not None:
        leases.check_fence(conn, *fence)
    cols = table.__table__.c
    where = and_(*(cols[k] == v for k, v in key.items()))
    if conn.execute(update(table).where(where).values(**values)).rowcount == 0:
        conn.execute(insert(table).values(**key, **values, **insert_only))


def _delete_interaction_tx(conn: Connection, tenant: str, interaction_id: str) -> None:
    res = conn.execute(delete(InteractionRow).where(_interaction(tenant, interaction_id)))
    if res.rowcount == 0:
        raise NotFound(f"interaction {interaction_id} not found")
    for table in (EventRow, ArtifactRow, IdempotencyRow, WebhookDeliveryRow):
        conn.execute(delete(table).where(table.__table__.c.interaction_id == interaction_id))


def _append_events_tx(
    conn: Connection,
    interaction_id: str,
    events: list[tuple[str, dict[str, Any]]],
    epoch: int | None,
) -> list[EventRecord]:
    n = len(events)
    if epoch is None:
        bumped = conn.execute(_BUMP_EVENT_COUNTER, {"iid": interaction_id, "n": n})
    else:
        params = {"iid": interaction_id, "n": n, "epoch": epoch}
        bumped = conn.execute(_BUMP_EVENT_COUNTER_FENCED, params)
    last = bumped.scalar_one_or_none()
    if last is None:
        raise leases.lost_or_missing(conn, interaction_id, epoch)
    now = utcnow()
    recs = [
        EventRecord(interaction_id, last - n + 1 + i, event_type, payload, now)
        for i, (event_type, payload) in enumerate(events)
    ]
    conn.execute(_INSERT_EVENTS, [dataclasses.asdict(r) for r in recs])
    return recs
