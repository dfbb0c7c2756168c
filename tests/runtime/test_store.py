"""SqlStore against a real SQLite file (and PostgreSQL when CORRAL_TEST_POSTGRES_URL is set)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from runtime.errors import ConfigError, Conflict, NotFound
from runtime.ids import new_id
from runtime.settings import Settings
from runtime.store.base import (
    ArtifactRecord,
    InteractionRecord,
    SandboxRecord,
    WebhookDeliveryRecord,
)
from runtime.store.sql import SqlStore, open_store
from tests.fleet.nodes import fresh_database

PG_URL = os.environ.get("CORRAL_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
        return
    if not PG_URL:
        pytest.skip("set CORRAL_TEST_POSTGRES_URL to run the store tests on PostgreSQL")
    with fresh_database(PG_URL) as url:  # a database of its own, dropped afterwards
        yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[SqlStore]:
    s = await SqlStore.open(store_url)
    yield s
    await s.aclose()


def interaction(tenant: str = "t1", **kw: object) -> InteractionRecord:
    return InteractionRecord(id=new_id("int"), tenant=tenant, **kw)  # type: ignore[arg-type]


async def test_create_get_round_trip_keeps_json_and_utc(store: SqlStore) -> None:
    rec = interaction(
        agent="researcher",
        input=[{"type": "user_input", "content": [{"type": "text", "text": "hi"}]}],
        usage={"total_tokens": 3},
        errors=[{"code": "x", "message": "y"}],
        config={"generation_config": {"temperature": 0.2}},
        output_dir="/workspace/out",
        background=True,
        store=False,
    )
    await store.create_interaction(rec)
    got = await store.get_interaction("t1", rec.id)
    assert got == rec
    assert got.created.tzinfo is not None and got.created.utcoffset() == timedelta(0)


async def test_create_twice_is_conflict(store: SqlStore) -> None:
    rec = await store.create_interaction(interaction())
    with pytest.raises(Conflict, match=rec.id):
        await store.create_interaction(rec)


async def test_another_tenant_gets_not_found_everywhere(store: SqlStore) -> None:
    rec = await store.create_interaction(interaction("t1"))
    with pytest.raises(NotFound):
        await store.get_interaction("t2", rec.id)
    with pytest.raises(NotFound):
        await store.update_interaction("t2", rec.id, status="failed")
    with pytest.raises(NotFound):
        await store.delete_interaction("t2", rec.id)
    assert await store.list_interactions("t2") == []
    assert (await store.get_interaction("t1", rec.id)).status == "in_progress"


async def test_update_sets_fields_and_bumps_updated(store: SqlStore) -> None:
    rec = await store.create_interaction(
        interaction(
            created=datetime(2024, 1, 1, tzinfo=UTC), updated=datetime(2024, 1, 1, tzinfo=UTC)
        )
    )
    got = await store.update_interaction(
        "t1", rec.id, status="completed", usage={"total_tokens": 9}, sandbox_id="sbx_1"
    )
    assert (got.status, got.usage, got.sandbox_id) == ("completed", {"total_tokens": 9}, "sbx_1")
    assert got.updated > rec.updated
    assert got.created == rec.created
    assert await store.get_interaction("t1", rec.id) == got
    with pytest.raises(TypeError, match="tenant"):
        await store.update_interaction("t1", rec.id, tenant="t2")
    with pytest.raises(NotFound):
        await store.update_interaction("t1", "int_missing", status="failed")


async def test_list_interactions_newest_first_with_filters(store: SqlStore) -> None:
    base = datetime(2025, 1, 1, tzinfo=UTC)
    recs = [
        await store.create_interaction(
            interaction(
                created=base + timedelta(minutes=i), status="completed" if i % 2 else "failed"
            )
        )
        for i in range(5)
    ]
    await store.create_interaction(interaction("t2"))
    listed = await store.list_interactions("t1")
    assert [r.id for r in listed] == [r.id for r in reversed(recs)]
    assert [r.id for r in await store.list_interactions("t1", limit=2)] == [recs[4].id, recs[3].id]
    assert {r.id for r in await store.list_interactions("t1", status="completed")} == {
        recs[1].id,
        recs[3].id,
    }
    older = await store.list_interactions("t1", before=recs[2].created)
    assert [r.id for r in older] == [recs[1].id, recs[0].id]


async def test_events_are_numbered_from_one_and_listed_in_order(store: SqlStore) -> None:
    rec = await store.create_interaction(interaction())
    first = await store.append_event(rec.id, "interaction.created", {"a": 1})
    batch = await store.append_events(rec.id, [("step.start", {"i": 0}), ("step.stop", {"i": 0})])
    assert [first.event_id, *(e.event_id for e in batch)] == [1, 2, 3]
    assert await store.append_events(rec.id, []) == []
    events = await store.list_events(rec.id)
    assert [(e.event_id, e.event_type, e.payload) for e in events] == [
        (1, "interaction.created", {"a": 1}),
        (2, "step.start", {"i": 0}),
        (3, "step.stop", {"i": 0}),
    ]
    assert [e.event_id for e in await store.list_events(rec.id, after=1)] == [2, 3]
    assert [e.event_id for e in await store.list_events(rec.id, after=1, limit=1)] == [2]
    assert (await store.get_interaction("t1", rec.id)).last_event_id == 3
    with pytest.raises(NotFound):
        await store.append_event("int_missing", "x", {})


async def test_event_ids_monotonic_under_concurrent_appenders_on_two_stores(
    store_url: str,
) -> None:
    a = await SqlStore.open(store_url)
    b = await SqlStore.open(store_url)
    try:
        rec = await a.create_interaction(interaction())
        per_task = 4

        async def appender(s: SqlStore, n: int) -> list[int]:
            ids = []
            for i in range(per_task):
                ids.append(
                    (await s.append_event(rec.id, "step.delta", {"task": n, "i": i})).event_id
                )
            return ids

        results = await asyncio.gather(*(appender(a if n % 2 else b, n) for n in range(50)))
        for ids in results:
            assert ids == sorted(ids)
        all_ids = sorted(i for ids in results for i in ids)
        assert all_ids == list(range(1, 50 * per_task + 1))
        stored = await b.list_events(rec.id)
        assert [e.event_id for e in stored] == all_ids
        # Each event's payload is the one its appender wrote under that id.
        by_id = {e.event_id: (e.payload["task"], e.payload["i"]) for e in stored}
        for n, ids in enumerate(results):
            assert [by_id[i] for i in ids] == [(n, i) for i in range(per_task)]
    finally:
        await a.aclose()
        await b.aclose()


async def test_delete_cascades_to_events_artifacts_keys_and_webhooks(store: SqlStore) -> None:
    doomed = await store.create_interaction(interaction())
    kept = await store.create_interaction(interaction())
    for rec in (doomed, kept):
        await store.append_event(rec.id, "step.start", {})
        await store.add_artifact(ArtifactRecord(rec.id, "a.txt", 1, "0" * 64))
        await store.put_idempotency("t1", f"key-{rec.id}", "h", rec.id)
        await store.add_webhook_delivery(
            WebhookDeliveryRecord(new_id("whd"), "t1", rec.id, "http://hook", {})
        )
    await store.delete_interaction("t1", doomed.id)
    with pytest.raises(NotFound):
        await store.get_interaction("t1", doomed.id)
    assert await store.list_events(doomed.id) == []
    assert await store.list_artifacts(doomed.id) == []
    assert await store.get_idempotency("t1", f"key-{doomed.id}") is None
    pending = await store.list_pending_webhook_deliveries()
    assert [d.interaction_id for d in pending] == [kept.id]
    assert len(await store.list_events(kept.id)) == 1
    assert len(await store.list_artifacts(kept.id)) == 1
    with pytest.raises(NotFound):
        await store.delete_interaction("t1", doomed.id)


async def test_artifacts_upsert_by_path(store: SqlStore) -> None:
    rec = await store.create_interaction(interaction())
    await store.add_artifact(
        ArtifactRecord(rec.id, "report.md", 10, "a" * 64, "text/markdown", "/s/1")
    )
    await store.add_artifact(
        ArtifactRecord(rec.id, "report.md", 20, "b" * 64, "text/markdown", "/s/2")
    )
    await store.add_artifact(ArtifactRecord(rec.id, "data/x.csv", 5, "c" * 64, "text/csv", "/s/3"))
    listed = await store.list_artifacts(rec.id)
    assert [(a.path, a.size) for a in listed] == [("data/x.csv", 5), ("report.md", 20)]
    got = await store.get_artifact(rec.id, "report.md")
    assert (got.sha256, got.stored_path) == ("b" * 64, "/s/2")
    with pytest.raises(NotFound):
        await store.get_artifact(rec.id, "nope")


async def test_agents_crud_and_tenant_isolation(store: SqlStore) -> None:
    first = await store.put_agent("t1", "helper", {"name": "helper", "model": "openai:a"})
    second = await store.put_agent("t1", "helper", {"name": "helper", "model": "openai:b"})
    assert second.spec["model"] == "openai:b"
    assert second.created == first.created and second.updated >= first.updated
    await store.put_agent("t1", "another", {"name": "another"})
    assert [a.name for a in await store.list_agents("t1")] == ["another", "helper"]
    assert await store.list_agents("t2") == []
    with pytest.raises(NotFound):
        await store.get_agent("t2", "helper")
    with pytest.raises(NotFound):
        await store.delete_agent("t2", "helper")
    await store.delete_agent("t1", "helper")
    with pytest.raises(NotFound):
        await store.get_agent("t1", "helper")


async def test_idempotency_first_writer_wins(store: SqlStore) -> None:
    assert await store.get_idempotency("t1", "k") is None
    assert await store.put_idempotency("t1", "k", "hash-1", "int_first") == "int_first"
    assert await store.put_idempotency("t1", "k", "hash-2", "int_second") == "int_first"
    assert await store.get_idempotency("t1", "k") == ("hash-1", "int_first")
    # Keys are per tenant.
    assert await store.put_idempotency("t2", "k", "hash-3", "int_other") == "int_other"
    racers = await asyncio.gather(
        *(store.put_idempotency("t1", "race", f"h{i}", f"int_{i}") for i in range(10))
    )
    assert len(set(racers)) == 1


async def test_sandboxes_record_get_list_delete(store: SqlStore) -> None:
    sb = SandboxRecord("sbx_1", "t1", "c0ffee", None, {"image": "corral/base"})
    await store.record_sandbox(sb)
    await store.record_sandbox(SandboxRecord("sbx_2", "t2", "beef"))
    sb.state = "idle"
    sb.interaction_id = "int_1"
    await store.record_sandbox(sb)  # replaces
    assert await store.get_sandbox("sbx_1") == sb
    assert await store.get_sandbox("sbx_1", tenant="t1") == sb
    with pytest.raises(NotFound):
        await store.get_sandbox("sbx_1", tenant="t2")
    assert [s.id for s in await store.list_sandboxes()] == ["sbx_1", "sbx_2"]
    assert [s.id for s in await store.list_sandboxes("t2")] == ["sbx_2"]
    with pytest.raises(NotFound):
        await store.delete_sandbox("sbx_1", tenant="t2")
    await store.delete_sandbox("sbx_1")
    with pytest.raises(NotFound):
        await store.get_sandbox("sbx_1")


async def test_webhook_deliveries_pending_until_due_and_updated(store: SqlStore) -> None:
    now = datetime.now(UTC)
    due = WebhookDeliveryRecord("whd_1", "t1", "int_1", "http://a", {"x": 1}, next_attempt_at=now)
    later = WebhookDeliveryRecord(
        "whd_2", "t1", "int_1", "http://b", {}, next_attempt_at=now + timedelta(hours=1)
    )
    await store.add_webhook_delivery(due)
    await store.add_webhook_delivery(later)
    assert [d.id for d in await store.list_pending_webhook_deliveries(now=now)] == ["whd_1"]
    got = await store.update_webhook_delivery("whd_1", status="delivered", attempts=1)
    assert (got.status, got.attempts) == ("delivered", 1)
    assert await store.list_pending_webhook_deliveries(now=now) == []
    soon = now + timedelta(hours=2)
    assert [d.id for d in await store.list_pending_webhook_deliveries(now=soon)] == ["whd_2"]
    with pytest.raises(NotFound):
        await store.update_webhook_delivery("whd_x", attempts=2)
    with pytest.raises(TypeError):
        await store.update_webhook_delivery("whd_2", tenant="t9")


async def test_reopening_the_file_keeps_everything(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
    async with await SqlStore.open(url) as s:
        rec = await s.create_interaction(interaction())
        await s.append_events(rec.id, [("a", {"n": 1}), ("b", {"n": 2})])
        await s.add_artifact(ArtifactRecord(rec.id, "out.txt", 3, "d" * 64))
        await s.put_agent("t1", "mine", {"name": "mine"})
        await s.put_idempotency("t1", "k", "h", rec.id)
        await s.record_sandbox(SandboxRecord("sbx_9", "t1", "cid"))
    async with await SqlStore.open(url) as s:
        assert (await s.get_interaction("t1", rec.id)).last_event_id == 2
        assert [e.event_type for e in await s.list_events(rec.id)] == ["a", "b"]
        assert (await s.append_event(rec.id, "c", {})).event_id == 3
        assert (await s.get_artifact(rec.id, "out.txt")).size == 3
        assert (await s.get_agent("t1", "mine")).spec == {"name": "mine"}
        assert await s.get_idempotency("t1", "k") == ("h", rec.id)
        assert (await s.get_sandbox("sbx_9")).container_id == "cid"


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = tmp_path / "corral.db"
    async with await SqlStore.open(f"sqlite+aiosqlite:///{db}"):
        pass
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_newer_schema_revision_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "corral.db"
    async with await SqlStore.open(f"sqlite+aiosqlite:///{db}"):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ConfigError, match="revision 9999 is newer"):
        await SqlStore.open(f"sqlite+aiosqlite:///{db}")


async def test_unusable_url_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot be used"):
        await SqlStore.open("nosuchdb+driver://x/y")


async def test_open_store_uses_corral_home(corral_home: Path) -> None:
    async with await open_store(Settings.from_env()) as s:
        await s.create_interaction(interaction())
    assert (corral_home / "corral.db").is_file()


async def test_in_memory_sqlite_works() -> None:
    async with await SqlStore.open("sqlite+aiosqlite://") as s:
        rec = await s.create_interaction(interaction())
        assert (await s.append_event(rec.id, "x", {})).event_id == 1
        assert (await s.get_interaction("t1", rec.id)).last_event_id == 1
