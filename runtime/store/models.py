"""The tables of the SQL store (SQLAlchemy 2 declarative; portable across SQLite and PostgreSQL).

No foreign keys: deletes cascade explicitly in `SqlStore.delete_interaction`, which keeps the
behaviour identical on SQLite (where FK enforcement is a per-connection pragma) and PostgreSQL.
Every change to a table here comes with an Alembic revision in `runtime/store/migrations/versions`
(applied at startup by `runtime.store.migrate`); a test checks that the migrated schema equals
these models on SQLite and PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, DateTime, Dialect, Index, Integer, String, Text, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Always timezone-aware UTC in Python, whatever the database keeps.

    SQLite has no timezone-aware type: values are stored as naive UTC there and re-labelled UTC
    on the way out. PostgreSQL stores `timestamptz`.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use datetime.now(UTC)")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON}


class SchemaVersionRow(Base):
    """Kept for releases from before migrations: they refuse a version other than 1."""

    __tablename__ = "schema_version"

    version: Mapped[int] = mapped_column(Integer, primary_key=True)


class InteractionRow(Base):
    __tablename__ = "interactions"
    __table_args__ = (
        Index("ix_interactions_tenant_created", "tenant", "created"),
        Index("ix_interactions_status_lease", "status", "lease_expires_at"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime]
    updated: Mapped[datetime]
    agent: Mapped[str | None] = mapped_column(String(256))
    model: Mapped[str | None] = mapped_column(String(256))
    input: Mapped[Any] = mapped_column(JSON, nullable=True)
    previous_interaction_id: Mapped[str | None] = mapped_column(String(64))
    sandbox_id: Mapped[str | None] = mapped_column(String(64))
    usage: Mapped[dict[str, Any]]
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    config: Mapped[dict[str, Any]]
    output_dir: Mapped[str | None] = mapped_column(Text)
    background: Mapped[bool]
    store: Mapped[bool]
    # The per-interaction event counter: incremented under the row lock by every append, which
    # is what makes event ids gap-free and monotonic across processes.
    last_event_id: Mapped[int] = mapped_column(BigInteger, default=0)
    # The run's lease (runtime/fleet/leases.py): the node running it and until when; the epoch
    # grows with every claim and fences step writes of an owner that lost the lease.
    owner_node: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[datetime | None]
    lease_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))


class EventRow(Base):
    __tablename__ = "events"

    interaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]]
    created: Mapped[datetime]


class ArtifactRow(Base):
    __tablename__ = "artifacts"

    interaction_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    media_type: Mapped[str] = mapped_column(String(255))
    stored_path: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime]


class AgentRow(Base):
    __tablename__ = "agents"

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[dict[str, Any]]
    created: Mapped[datetime]
    updated: Mapped[datetime]


class IdempotencyRow(Base):
    __tablename__ = "idempotency_keys"
    __table_args__ = (Index("ix_idempotency_interaction", "interaction_id"),)

    tenant: Mapped[str] = mapped_column(String(128), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(128))
    interaction_id: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime]


class SandboxRow(Base):
    __tablename__ = "sandboxes"
    __table_args__ = (Index("ix_sandboxes_tenant", "tenant"), Index("ix_sandboxes_node", "node"))

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    container_id: Mapped[str] = mapped_column(String(128))
    interaction_id: Mapped[str | None] = mapped_column(String(64))
    spec: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(32))
    created: Mapped[datetime]
    last_used: Mapped[datetime]
    # The node whose Docker engine runs it; None before the fleet (one node owned everything).
    node: Mapped[str | None] = mapped_column(String(64))


class NodeRow(Base):
    """One `corral serve` process sharing this database (runtime/fleet/node.py)."""

    __tablename__ = "nodes"
    __table_args__ = (Index("ix_nodes_heartbeat", "heartbeat_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    started_at: Mapped[datetime]
    heartbeat_at: Mapped[datetime]
    draining: Mapped[bool]
    capacity: Mapped[int] = mapped_column(Integer)


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_pending", "status", "next_attempt_at"),
        Index("ix_webhook_interaction", "interaction_id"),
    )

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(128))
    interaction_id: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    created: Mapped[datetime]
    updated: Mapped[datetime]
