"""Run leases in the store: claims, renewal, fencing, racing claimants, node rows.

On SQLite always; on PostgreSQL (a database of its own) when CORRAL_TEST_POSTGRES_URL is set.
Leases are expired by writing `lease_expires_at` in the past, never by waiting."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import update

from runtime.errors import NotFound
from runtime.ids import new_id
from runtime.store.base import (
    ArtifactRecord,
    InteractionRecord,
    NodeRecord,
    SandboxRecord,
    utcnow,
)
from runtime.store.leases import LeaseLost
from runtime.store.models import InteractionRow
from runtime.store.sql import SqlStore, _append_events_tx
from tests.fleet.nodes import fresh_database

PG_URL = os.environ.get("CORRAL_TEST_POSTGRES_URL")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"
        return
    if not PG_URL:
        pytest.skip("set CORRAL_TEST_POSTGRES_URL to run the lease tests on PostgreSQL")
    with fresh_database(PG_URL) as url:
        yield url


@pytest.fixture
async def open_node(db_url: str) -> AsyncIterator[Callable[..., asyncio.Future[SqlStore]]]:
    """`await open_node("a")`: a store acting as node `a` (closed at the end)."""
    stores: list[SqlStore] = []

    async def make(node: str, ttl: float = 30.0) -> SqlStore:
        store = await SqlStore.open(db_url)
        store.set_node(node, ttl)
        stores.append(store)
        return store

    yield make  # type: ignore[misc]
    for s in stores:
        await s.aclose()


async def expire(store: SqlStore, interaction_id: str) -> None:
    """The owner stopped renewing: its lease is in the past."""
    past = utcnow() - timedelta(seconds=1)
    stmt = update(InteractionRow).where(InteractionRow.__table__.c.id == interaction_id)
    await store._write(lambda c: c.execute(stmt.values(lease_expires_at=past)))


async def new_run(store: SqlStore) -> InteractionRecord:
    return await store.create_interaction(InteractionRecord(id=new_id("int"), tenant="t1"))


async def test_a_run_is_born_leased_to_its_node(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    assert (rec.owner_node, rec.lease_epoch) == ("a", 1)
    assert rec.lease_expires_at is not None and rec.lease_expires_at > utcnow()
    assert await b.claim_interaction(rec.id) is None  # live lease: not B's to take
    assert await b.claim_expired(set(), limit=10) == []


async def test_a_taken_over_run_refuses_the_old_owners_writes(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    assert (await a.append_event(rec.id, "step.start", {"index": 0})).event_id == 1
    await expire(a, rec.id)
    [(taken, previous)] = await b.claim_expired(set(), limit=10)
    assert (taken.id, taken.owner_node, taken.lease_epoch, previous) == (rec.id, "b", 2, "a")
    # A stalled, then wakes up: none of its writes land.
    with pytest.raises(LeaseLost):
        await a.append_event(rec.id, "step.start", {"index": 1})
    with pytest.raises(LeaseLost):
        await a.update_interaction("t1", rec.id, status="completed")
    with pytest.raises(LeaseLost):  # nor its artifact copies
        await a.add_artifact(ArtifactRecord(rec.id, "out.txt", 1, "a" * 64))
    await b.add_artifact(ArtifactRecord(rec.id, "out.txt", 2, "b" * 64))
    assert [x.sha256 for x in await b.list_artifacts(rec.id)] == ["b" * 64]
    # B continues with contiguous event ids and ends the run.
    assert (await b.append_event(rec.id, "run.resumed", {})).event_id == 2
    assert (await b.update_interaction("t1", rec.id, status="completed")).status == "completed"
    assert [e.event_id for e in await b.list_events(rec.id)] == [1, 2]
    # Another tenant's id is still plain NotFound, fenced or not.
    with pytest.raises(NotFound):
        await b.update_interaction("t2", rec.id, usage={})


async def test_heartbeat_renews_only_runs_executing_here(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    b = await open_node("b")
    await a.upsert_node(NodeRecord("a", "http://a"))
    await b.upsert_node(NodeRecord("b", "http://b"))
    mine, orphan = await new_run(a), await new_run(a)
    assert await a.heartbeat({mine.id}) == {mine.id}
    await expire(a, mine.id)
    await expire(a, orphan.id)
    # B takes both (A's loop for `orphan` is gone; `mine` is treated as lost too).
    got = await b.claim_expired(set(), limit=10)
    assert {r.id for r, _ in got} == {mine.id, orphan.id}
    assert await a.heartbeat({mine.id}) == set()  # A learns it lost `mine`
    # Its loop still runs until A stops it: the fence stays, so what it writes meanwhile is
    # refused rather than written unfenced over B's steps.
    assert a.holds(mine.id) == 1
    with pytest.raises(LeaseLost):
        await a.append_event(mine.id, "step.start", {"index": 9})
    with pytest.raises(LeaseLost):
        await a.add_artifact(ArtifactRecord(mine.id, "out.txt", 1, "a" * 64))
    a.drop_fence(mine.id)  # A stopped the run: what it writes now is any node's write
    assert a.holds(mine.id) is None
    assert not await a.release_interaction(mine.id)  # B's lease is not A's to give up
    assert await b.heartbeat({mine.id, orphan.id}) == {mine.id, orphan.id}
    assert await b.list_events(mine.id) == [] and await b.list_artifacts(mine.id) == []


async def test_heartbeat_without_a_node_row_says_so(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    assert await a.heartbeat(set()) is None
    await a.upsert_node(NodeRecord("a", "http://a", capacity=3))
    assert await a.heartbeat(set(), draining=True) == set()
    node = await a.get_node("a")
    assert (node.url, node.capacity, node.draining) == ("http://a", 3, True)


async def test_released_lease_is_free_at_once(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    assert await a.release_interaction(rec.id)
    assert a.holds(rec.id) is None  # the fence went with the lease
    got = await b.claim_interaction(rec.id)
    # The release moved the epoch (1 -> 2), the claim again.
    assert got is not None and (got.owner_node, got.lease_epoch) == ("b", 3)
    assert not await a.release_interaction(rec.id)  # B's lease is not A's to give up


async def test_a_write_sent_under_a_released_lease_is_refused(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    """A's event writer read its fence (epoch 1) and sent the batch, which reached the database
    only after A released the run: refused, before any claim as after one, so nothing A
    wrote as the run's owner lands once the run is free."""
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    assert (await a.append_event(rec.id, "step.start", {"index": 0})).event_id == 1
    assert await a.release_interaction(rec.id)
    late = [("step.delta", {"index": 0, "delta": {"text": "late"}})]
    with pytest.raises(LeaseLost):
        await a._write(_append_events_tx, rec.id, late, 1)  # the transaction sent late
    assert await b.claim_interaction(rec.id) is not None
    with pytest.raises(LeaseLost):
        await a._write(_append_events_tx, rec.id, late, 1)
    assert (await b.append_event(rec.id, "run.resumed", {})).event_id == 2
    assert [e.event_type for e in await b.list_events(rec.id)] == ["step.start", "run.resumed"]


async def test_a_node_that_released_a_run_can_still_ask_for_its_cancel(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    """A run queued (or drained) by A and claimed by B: A's cancel request is a write any node
    may make for a run it does not hold, so a stale fence must not refuse it; B's own fenced
    writes go on, and a node that lost (not released) a lease is still refused."""
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    assert await a.release_interaction(rec.id)
    assert await b.claim_interaction(rec.id) is not None
    asked = await a.append_event(rec.id, "cancel.requested", {"node": "a"})
    assert asked.event_id == 1
    assert (await b.append_event(rec.id, "step.start", {"index": 0})).event_id == 2
    await expire(b, rec.id)
    assert await a.claim_interaction(rec.id) is not None  # B stalled: A takes it, epoch 3
    with pytest.raises(LeaseLost):
        await b.append_event(rec.id, "step.start", {"index": 1})


async def test_finished_runs_are_never_claimed(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    b = await open_node("b")
    rec = await new_run(a)
    await a.update_interaction("t1", rec.id, status="completed")
    await expire(a, rec.id)
    assert await b.claim_expired(set(), limit=10) == []
    assert await b.claim_interaction(rec.id) is None


async def test_racing_nodes_claim_a_free_run_exactly_once(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    creator = await open_node("creator")
    nodes = [await open_node(f"n{i}") for i in range(4)]
    for _ in range(10):
        rec = await new_run(creator)
        await creator.release_interaction(rec.id)  # queued: nobody holds it
        sweeps = await asyncio.gather(*(n.claim_expired(set(), limit=5) for n in nodes))
        singles = await asyncio.gather(*(n.claim_interaction(rec.id) for n in nodes))
        winners = [n.node for n, got in zip(nodes, sweeps, strict=True) if got]
        assert len(winners) == 1, winners
        assert all(s is None for s in singles)  # already held by the winner
        final = await creator.get_interaction("t1", rec.id)
        assert (final.owner_node, final.lease_epoch) == (winners[0], 3)  # released, claimed once


async def test_nodes_and_the_node_of_a_sandbox(
    open_node: Callable[..., asyncio.Future[SqlStore]],
) -> None:
    a = await open_node("a")
    await a.upsert_node(NodeRecord("a", "http://a:1"))
    await a.upsert_node(
        NodeRecord("old", "http://old:1", heartbeat_at=utcnow() - timedelta(hours=1))
    )
    assert {n.id for n in await a.list_nodes()} == {"a", "old"}
    assert [n.id for n in await a.list_nodes(alive_within=60)] == ["a"]
    await a.record_sandbox(SandboxRecord("sbx_1", "t1", "cid"))
    await a.record_sandbox(SandboxRecord("sbx_2", "t1", "cid", node="elsewhere"))
    assert await a.sandbox_node("sbx_1") == "a"
    assert await a.sandbox_node("sbx_2") == "elsewhere"
    with pytest.raises(NotFound):
        await a.sandbox_node("sbx_none")
    await a.delete_node("old")
    with pytest.raises(NotFound):
        await a.get_node("old")
