"""Alembic environment: always online, on the connection `runtime.store.migrate` hands over.

The store opens its own transaction (and takes the migration lock) before calling Alembic, so
the migrations run inside that transaction: on PostgreSQL the whole upgrade commits or nothing
does; on SQLite the write lock held since `BEGIN IMMEDIATE` keeps other processes out.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from runtime.store.models import Base

conn = context.config.attributes.get("connection")
if not isinstance(conn, Connection):  # pragma: no cover - only runtime.store.migrate calls us
    raise RuntimeError(
        "Corral's migrations run from the store (runtime.store.migrate), not the CLI"
    )
context.configure(connection=conn, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
