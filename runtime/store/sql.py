"""SqlStore: the `Store` on SQLAlchemy 2 — a SQLite file by default, PostgreSQL for replicas.

Each operation is one transaction written as a plain function of a `Connection`; a runner
(`runtime.store.engines`) executes it on a thread (SQLite) or through the async engine
(PostgreSQL/asyncpg). Only portable SQL is used (`UPDATE ... RETURNING` works on SQLite >= 3.35
and PostgreSQL).

Event ids come from a counter column on the interaction row, incremented by the same transaction
that inserts the events: the row lock (PostgreSQL) or the write lock (SQLite) serialises
appenders, so ids are gap-free and monotonic across any number of processes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime
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
from runtime.store.base import (
    AgentRecord,
    ArtifactRecord,
    EventRecord,
    InteractionRecord,
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
_INSERT_EVENTS = insert(EventRow)


def _record(cls: type[R], row: Any) -> R:
    # Column names equal dataclass field names by construction (see models.py).
    return cls(**dict(row._mapping))


class SqlStore:
    """`Store` over SQLAlchemy. Create with `await SqlStore.open(url)` or `open_store(settings)`."""

    def __init__(self, runner: TxRunner) -> None:
        self._runner = runner

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

    async def _read(
        self, fn: Callable[Concatenate[Connection, P], R], *args: P.args, **kwargs: P.kwargs
    ) -> R:
        try:
            return await self._runner.read(fn, *args, **kwargs)
        except DBAPIError as e:
            raise _store_error(e) from e

    async def _upsert(
        self,
        table: type[Base],
        key: dict[str, Any],
        values: dict[str, Any],
        insert_only: dict[str, Any] | None = None,
    ) -> None:
        """UPDATE, else INSERT; a concurrent INSERT of the same key makes the retry an UPDATE."""
        for _ in range(3):
            try:
                await self._write(_upsert_tx, table, key, values, insert_only or {})
                return
            except Conflict:
                continue
        raise Conflict(f"could not upsert {table.__tablename__} {key}")

    async def _rows(self, query: Any) -> list[Any]:
        return await self._read(_all_rows, query)

    # Interactions -----------------------------------------------------------------------------
    async def create_interaction(self, rec: InteractionRecord) -> InteractionRecord:
        values = dataclasses.asdict(rec) | {"last_event_id": 0}
        try:
            await self._write(_execute, insert(InteractionRow).values(**values))
        except Conflict as e:
            raise Conflict(f"interaction {rec.id} already exists") from e
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
        stmt = (
            update(InteractionRow)
            .where(_interaction(tenant, interaction_id))
            .values(**fields, updated=utcnow())
            .returning(*InteractionRow.__table__.c)
        )
        rows = await self._write(_all_rows, stmt)
        if not rows:
            raise NotFound(f"interaction {interaction_id} not found")
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
        return await self._write(_append_events_tx, interaction_id, events)

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
        await self._upsert(ArtifactRow, key, values)
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


def _upsert_tx(
    conn: Connection,
    table: type[Base],
    key: dict[str, Any],
    values: dict[str, Any],
    insert_only: dict[str, Any],
) -> None:
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
    conn: Connection, interaction_id: str, events: list[tuple[str, dict[str, Any]]]
) -> list[EventRecord]:
    n = len(events)
    last = conn.execute(_BUMP_EVENT_COUNTER, {"iid": interaction_id, "n": n}).scalar_one_or_none()
    if last is None:
        raise NotFound(f"interaction {interaction_id} not found")
    now = utcnow()
    recs = [
        EventRecord(interaction_id, last - n + 1 + i, event_type, payload, now)
        for i, (event_type, payload) in enumerate(events)
    ]
    conn.execute(_INSERT_EVENTS, [dataclasses.asdict(r) for r in recs])
    return recs
