"""Schema migrations: fresh databases, pre-migration databases, concurrent startup.

Runs on SQLite always and on PostgreSQL when CORRAL_TEST_POSTGRES_URL is set (CI starts one with
.ci/postgres.sh). Every PostgreSQL test gets an empty database of its own.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from runtime.store.migrate import head_revision
from runtime.store.models import Base
from runtime.store.sql import SqlStore
from tests.fleet.nodes import fresh_database
from tests.runtime.store.pg import reset_postgres

PG_URL = os.environ.get("CORRAL_TEST_POSTGRES_URL")
FIXTURES = Path(__file__).with_name("fixtures")
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
        return
    if not PG_URL:
        pytest.skip("set CORRAL_TEST_POSTGRES_URL to run the migration tests on PostgreSQL")
    with fresh_database(PG_URL) as url:  # a database of its own, dropped afterwards
        yield url


async def run_sql(url: str, fn: Any) -> Any:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def schema_diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return list(compare_metadata(ctx, Base.metadata))


def revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


async def test_fresh_database_is_migrated_to_exactly_the_models(db_url: str) -> None:
    async with await SqlStore.open(db_url):
        pass
    assert await run_sql(db_url, schema_diff) == []
    assert await run_sql(db_url, revision) == head_revision()


async def test_reopening_is_a_no_op(db_url: str) -> None:
    for _ in range(2):
        async with await SqlStore.open(db_url):
            pass
    assert await run_sql(db_url, revision) == head_revision()


def create_pre_alembic_database(conn: Connection) -> None:
    """What the last release before migrations left: its tables and one run's rows."""
    ddl = (FIXTURES / f"pre_alembic_{conn.dialect.name}.sql").read_text()
    for stmt in ddl.split(";"):
        body = "\n".join(x for x in stmt.splitlines() if not x.startswith("--")).strip()
        if body:
            conn.execute(text(body))
    conn.execute(
        text(
            "INSERT INTO interactions (id, tenant, status, created, updated, agent, usage, errors,"
            " config, background, store, last_event_id) VALUES ('int_old', 't1', 'completed',"
            " :t, :t, 'researcher', '{}', '[]', '{\"kind\": \"agent\"}', false, true, 2)"
        ),
        {"t": T0 if conn.dialect.name == "postgresql" else T0.replace(tzinfo=None)},
    )
    for n in (1, 2):
        conn.execute(
            text(
                "INSERT INTO events (interaction_id, event_id, event_type, payload, created)"
                " VALUES ('int_old', :n, 'step.start', '{\"index\": 1}', :t)"
            ),
            {"n": n, "t": T0 if conn.dialect.name == "postgresql" else T0.replace(tzinfo=None)},
        )
    conn.execute(
        text(
            "INSERT INTO sandboxes (id, tenant, container_id, interaction_id, spec, state,"
            " created, last_used) VALUES ('sbx_old', 't1', 'cid', 'int_old', '{}', 'running',"
            " :t, :t)"
        ),
        {"t": T0 if conn.dialect.name == "postgresql" else T0.replace(tzinfo=None)},
    )


async def test_pre_migration_database_is_upgraded_keeping_its_rows(db_url: str) -> None:
    await run_sql(db_url, create_pre_alembic_database)
    async with await SqlStore.open(db_url) as store:
        rec = await store.get_interaction("t1", "int_old")
        assert (rec.status, rec.agent, rec.created, rec.last_event_id) == (
            "completed",
            "researcher",
            T0,
            2,
        )
        assert (rec.owner_node, rec.lease_expires_at, rec.lease_epoch) == (None, None, 0)
        assert [e.event_id for e in await store.list_events("int_old")] == [1, 2]
        assert (await store.append_event("int_old", "x", {})).event_id == 3
        sbx = await store.get_sandbox("sbx_old")
        assert (sbx.container_id, sbx.node) == ("cid", None)
    assert await run_sql(db_url, schema_diff) == []
    assert await run_sql(db_url, revision) == head_revision()
    version = await run_sql(
        db_url, lambda c: c.execute(text("SELECT version FROM schema_version")).scalar_one()
    )
    assert version == 2  # the pre-migration release refuses this database rather than misuse it


async def test_unknown_pre_migration_version_is_refused(tmp_path: Path) -> None:
    from runtime.errors import ConfigError

    url = f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
    await run_sql(url, create_pre_alembic_database)
    await run_sql(url, lambda c: c.execute(text("UPDATE schema_version SET version = 7")))
    with pytest.raises(ConfigError, match="schema version 7 is not one this Corral can upgrade"):
        await SqlStore.open(url)


# Each process imports everything, says it is ready, then waits for the go line on stdin, so
# the opens really overlap (Python start-up takes longer than the migration itself).
OPEN_STORE = """
import asyncio, sys
from runtime.store.sql import SqlStore

async def main() -> None:
    print("ready", flush=True)
    sys.stdin.readline()
    store = await SqlStore.open(sys.argv[1])
    await store.aclose()

asyncio.run(main())
"""


async def open_in_processes(url: str, n: int) -> list[tuple[int, str]]:
    """Open the store from `n` Python processes released at the same moment."""
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            OPEN_STORE,
            url,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(n)
    ]
    for p in procs:
        assert p.stdout is not None
        assert await p.stdout.readline() == b"ready\n"
    for p in procs:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        await p.stdin.drain()
    results = []
    for p in procs:
        _, err = await p.communicate()
        results.append((p.returncode or 0, err.decode()[-2000:]))
    return results


async def test_concurrent_startup_on_one_fresh_database_all_succeed(db_url: str) -> None:
    # Before migrations ran under a lock, the second of two PostgreSQL nodes failed here with
    # `duplicate key value violates unique constraint "pg_type_typname_nsp_index"`.
    for _ in range(2):
        if db_url.startswith("postgresql"):
            await reset_postgres(db_url)
        else:
            Path(db_url.split("///", 1)[1]).unlink(missing_ok=True)
        results = await open_in_processes(db_url, 3)
        assert [code for code, _ in results] == [0] * 3, [err for _, err in results]
        assert await run_sql(db_url, revision) == head_revision()
        assert await run_sql(db_url, schema_diff) == []
