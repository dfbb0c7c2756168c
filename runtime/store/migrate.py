"""Bring a database to the schema this Corral needs: Alembic migrations, applied once, under a lock.

Called by `SqlStore.open` inside one write transaction, so every node (or CLI process) that
opens the store runs this; only the first to get the lock does any work:
- PostgreSQL: `pg_advisory_xact_lock` on a fixed key, held until the transaction commits. Two
  `corral serve` starting together on a fresh database used to race in `CREATE TABLE` and fail
  with `duplicate key ... pg_type_typname_nsp_index`; now the second waits and finds the
  schema at head. PostgreSQL's DDL is transactional: an upgrade commits whole or not at all.
- SQLite: the store's write transactions begin with `BEGIN IMMEDIATE`, which holds the file's
  write lock for the whole upgrade.

A database from before migrations (tables plus `schema_version` = 1, no `alembic_version`) is
stamped at revision 0001 and upgraded, keeping its rows. A database at a revision this Corral
does not know (written by a newer release) is refused with a message naming the revision.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

from runtime.errors import ConfigError

MIGRATIONS = Path(__file__).with_name("migrations")
# Any fixed 64-bit number: every Corral node must use the same one ("corral" in ASCII).
PG_MIGRATION_LOCK_KEY = 0x636F7272616C
PRE_ALEMBIC_REVISION = "0001"
PRE_ALEMBIC_SCHEMA_VERSION = 1


def alembic_config(conn: Connection) -> Config:
    """A Config for the packaged migrations, bound to `conn` (no alembic.ini involved)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def upgrade(conn: Connection, target: str = "head") -> None:
    """Lock, adopt a pre-migration database, refuse an unknown revision, upgrade to `target`."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_MIGRATION_LOCK_KEY})
    cfg = alembic_config(conn)
    script = ScriptDirectory.from_config(cfg)
    current = current_revision(conn)
    if current is None and _pre_alembic_version(conn) is not None:
        version = _pre_alembic_version(conn)
        if version != PRE_ALEMBIC_SCHEMA_VERSION:
            raise ConfigError(
                f"database schema version {version} is not one this Corral can upgrade "
                f"(it knows {PRE_ALEMBIC_SCHEMA_VERSION}); use a new database "
                "(CORRAL_DATABASE_URL or CORRAL_HOME)"
            )
        command.stamp(cfg, PRE_ALEMBIC_REVISION)
        current = PRE_ALEMBIC_REVISION
    if current is not None and not _known(script, current):
        raise ConfigError(
            f"database schema revision {current} is newer than this Corral knows "
            f"(head {script.get_current_head()}); upgrade Corral or use another database"
        )
    if current != target and not (target == "head" and current == script.get_current_head()):
        command.upgrade(cfg, target)


def _known(script: ScriptDirectory, revision: str) -> bool:
    return any(rev.revision == revision for rev in script.walk_revisions())


def _pre_alembic_version(conn: Connection) -> int | None:
    if not inspect(conn).has_table("schema_version"):
        return None
    found = conn.execute(text("SELECT max(version) FROM schema_version")).scalar()
    return None if found is None else int(found)
