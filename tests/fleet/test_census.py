"""The fleet census `/metrics` reads at each scrape (`queries.census`), on PostgreSQL: nodes
alive by draining state, runs leased to this node, runs no node holds."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from runtime.fleet import queries
from runtime.ids import new_id
from runtime.store.base import InteractionRecord, NodeRecord, utcnow
from runtime.store.models import InteractionRow
from runtime.store.sql import SqlStore


async def test_census_counts_live_nodes_leased_and_unclaimed_runs(pg_url: str) -> None:
    async with await SqlStore.open(pg_url) as a, await SqlStore.open(pg_url) as b:
        a.set_node("a", 30)
        b.set_node("b", 30)
        now = utcnow()
        await a.upsert_node(NodeRecord("a", "http://a"))
        await b.upsert_node(NodeRecord("b", "http://b", draining=True))
        await a.upsert_node(
            NodeRecord("gone", "http://gone", heartbeat_at=now - timedelta(seconds=60))
        )

        async def run(store: SqlStore) -> str:
            rec = InteractionRecord(id=new_id("int"), tenant="t")
            return (await store.create_interaction(rec)).id

        await run(a), await run(b)  # in progress: leased to a, to b
        queued, expired, ended = await run(a), await run(a), await run(a)
        assert await a.release_interaction(queued)
        past = now - timedelta(seconds=1)
        table = InteractionRow.__table__
        await a._write(
            lambda c: c.execute(
                update(table).where(table.c.id == expired).values(lease_expires_at=past)
            )
        )
        await a.update_interaction("t", ended, status="completed")

        seen = await queries.census(a, "a", alive_within=15)
    assert seen.nodes == {False: 1, True: 1}  # "gone" beat a minute ago: not counted
    assert seen.leased == 1  # a's first (queued was released, expired lapsed, ended is over)
    assert seen.unclaimed == 2  # queued and expired
