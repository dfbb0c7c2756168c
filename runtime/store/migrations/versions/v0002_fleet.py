"""Fleet: a `nodes` table, run leases on `interactions`, the owning node of each sandbox.

- `nodes`: one row per `corral serve` process sharing the database; `heartbeat_at` says it is
  alive, `draining` that it claims nothing new, `capacity` how many runs it takes at once.
- `interactions.owner_node` / `lease_expires_at` / `lease_epoch`: who runs an interaction and
  until when. Every claim bumps the epoch, and step writes are fenced on it, so an owner that
  lost its lease cannot write behind its successor's back.
- `sandboxes.node`: whose Docker engine runs the sandbox (calls elsewhere are forwarded).

`schema_version` moves to 2 so a release from before migrations refuses this database with its
own clear message instead of writing rows without the new columns.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("heartbeat_at", TS, nullable=False),
        sa.Column("draining", sa.Boolean(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
    )
    op.create_index("ix_nodes_heartbeat", "nodes", ["heartbeat_at"])
    with op.batch_alter_table("interactions") as batch:
        batch.add_column(sa.Column("owner_node", sa.String(64), nullable=True))
        batch.add_column(sa.Column("lease_expires_at", TS, nullable=True))
        batch.add_column(
            sa.Column("lease_epoch", sa.BigInteger(), nullable=False, server_default="0")
        )
    op.create_index("ix_interactions_status_lease", "interactions", ["status", "lease_expires_at"])
    with op.batch_alter_table("sandboxes") as batch:
        batch.add_column(sa.Column("node", sa.String(64), nullable=True))
    op.create_index("ix_sandboxes_node", "sandboxes", ["node"])
    op.execute(sa.text("UPDATE schema_version SET version = 2"))


def downgrade() -> None:
    op.execute(sa.text("UPDATE schema_version SET version = 1"))
    op.drop_index("ix_sandboxes_node", "sandboxes")
    with op.batch_alter_table("sandboxes") as batch:
        batch.drop_column("node")
    op.drop_index("ix_interactions_status_lease", "interactions")
    with op.batch_alter_table("interactions") as batch:
        batch.drop_column("lease_epoch")
        batch.drop_column("lease_expires_at")
        batch.drop_column("owner_node")
    op.drop_table("nodes")
