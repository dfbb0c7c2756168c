"""The schema as Corral shipped it before migrations (SCHEMA_VERSION 1).

A database created by that release has these tables and a `schema_version` row of 1 but no
`alembic_version`: `runtime.store.migrate` stamps it at this revision instead of running it.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

# Frozen column types: a migration must not change when models.py does.
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "schema_version",
        sa.Column("version", sa.Integer(), primary_key=True),
    )
    op.execute(sa.text("INSERT INTO schema_version (version) VALUES (1)"))
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("updated", TS, nullable=False),
        sa.Column("agent", sa.String(256), nullable=True),
        sa.Column("model", sa.String(256), nullable=True),
        sa.Column("input", sa.JSON(), nullable=True),
        sa.Column("previous_interaction_id", sa.String(64), nullable=True),
        sa.Column("sandbox_id", sa.String(64), nullable=True),
        sa.Column("usage", sa.JSON(), nullable=False),
        sa.Column("errors", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("output_dir", sa.Text(), nullable=True),
        sa.Column("background", sa.Boolean(), nullable=False),
        sa.Column("store", sa.Boolean(), nullable=False),
        sa.Column("last_event_id", sa.BigInteger(), nullable=False),
    )
    op.create_index("ix_interactions_tenant_created", "interactions", ["tenant", "created"])
    op.create_table(
        "events",
        sa.Column("interaction_id", sa.String(64), primary_key=True),
        sa.Column("event_id", sa.BigInteger(), primary_key=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created", TS, nullable=False),
    )
    op.create_table(
        "artifacts",
        sa.Column("interaction_id", sa.String(64), primary_key=True),
        sa.Column("path", sa.String(1024), primary_key=True),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("stored_path", sa.Text(), nullable=False),
        sa.Column("created", TS, nullable=False),
    )
    op.create_table(
        "agents",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("name", sa.String(128), primary_key=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("updated", TS, nullable=False),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("tenant", sa.String(128), primary_key=True),
        sa.Column("key", sa.String(255), primary_key=True),
        sa.Column("request_hash", sa.String(128), nullable=False),
        sa.Column("interaction_id", sa.String(64), nullable=False),
        sa.Column("created", TS, nullable=False),
    )
    op.create_index("ix_idempotency_interaction", "idempotency_keys", ["interaction_id"])
    op.create_table(
        "sandboxes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("container_id", sa.String(128), nullable=False),
        sa.Column("interaction_id", sa.String(64), nullable=True),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("created", TS, nullable=False),
        sa.Column("last_used", TS, nullable=False),
    )
    op.create_index("ix_sandboxes_tenant", "sandboxes", ["tenant"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("tenant", sa.String(128), nullable=False),
        sa.Column("interaction_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created", TS, nullable=False),
        sa.Column("updated", TS, nullable=False),
    )
    op.create_index("ix_webhook_pending", "webhook_deliveries", ["status", "next_attempt_at"])
    op.create_index("ix_webhook_interaction", "webhook_deliveries", ["interaction_id"])


def downgrade() -> None:
    for table in (
        "webhook_deliveries",
        "sandboxes",
        "idempotency_keys",
        "agents",
        "artifacts",
        "events",
        "interactions",
        "schema_version",
    ):
        op.drop_table(table)
