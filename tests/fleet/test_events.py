"""Events from any node: SSE on one node while the run executes on another, ids contiguous,
`last_event_id` resume on a third view; and the LISTEN/NOTIFY fan-out itself."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from runtime.fleet.notify import PgFanout, asyncpg_dsn
from tests.fleet.nodes import ServeNode, owner_of, sse_events

TICKS = "for i in 1 2 3 4 5 6; do echo tick $i; sleep 0.5; done"


@pytest.mark.docker
def test_sse_from_another_node_while_the_run_executes(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    a, b = start_node("a"), start_node("b")
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=scripted_agent("ticker", TICKS)).status_code == 200
        run = ca.post(
            "/v1beta/interactions", json={"agent": "ticker", "input": "tick", "background": True}
        ).json()
    owner = owner_of([a, b])
    viewer = b if owner is a else a
    live: list[str] = []  # the run's status on its owner when each tick reached the viewer
    seen: list[dict[str, Any]] = []
    with (
        viewer.client() as cv,
        owner.client() as co,
        cv.stream(
            "GET",
            f"/v1beta/interactions/{run['id']}",
            params={"stream": "true", "corral_events": "1"},
        ) as resp,
    ):
        assert resp.status_code == 200
        for ev in sse_events(resp):
            seen.append(ev)
            delta = ev.get("delta") or {}
            if ev["event_type"] == "step.delta" and "tick 1" in str(delta.get("result")):
                live.append(co.get(f"/v1beta/interactions/{run['id']}").json()["status"])
        final = co.get(
            f"/v1beta/interactions/{run['id']}", params={"stream": "true", "corral_events": "1"}
        )
    # The viewer saw the run's output while it was still running on the other node.
    assert live == ["in_progress"]
    ids = [int(e["event_id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))  # contiguous from 1, nothing lost or repeated
    assert seen[-1]["event_type"] == "interaction.completed"
    assert seen[-1]["interaction"]["status"] == "completed"
    on_owner = [e for e in final.text.split("\n") if e.startswith("data: ")]
    assert len(on_owner) == len(seen)  # the owner's own view of the log is the same length

    # Resume on the viewer from an id in the middle: exactly the rest, in order.
    with viewer.client() as cv:
        rest = cv.get(
            f"/v1beta/interactions/{run['id']}",
            params={"stream": "true", "corral_events": "1", "last_event_id": "5"},
        )
    tail = [int(e["event_id"]) for e in sse_events(rest)]
    assert tail == ids[5:]


async def test_fanout_wakes_other_nodes_and_skips_its_own() -> None:
    base = os.environ.get("CORRAL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CORRAL_TEST_POSTGRES_URL is not set")
    dsn = asyncpg_dsn(base)
    assert dsn is not None and asyncpg_dsn("sqlite:///x.db") is None
    got: dict[str, list[str]] = {"a": [], "b": [], "a-cancel": [], "b-cancel": []}
    arrived = asyncio.Event()

    def note(key: str) -> Callable[[str], None]:
        def on(iid: str) -> None:
            got[key].append(iid)
            arrived.set()

        return on

    a = PgFanout(
        dsn, origin="a", on_events=note("a"), on_cancel=note("a-cancel"), on_reconnect=lambda: None
    )
    b = PgFanout(
        dsn, origin="b", on_events=note("b"), on_cancel=note("b-cancel"), on_reconnect=lambda: None
    )
    await a.start()
    await b.start()
    try:
        assert a.connected and b.connected
        a.published("int_1", 3)
        a.published("int_1", 7)  # coalesced with the first when still pending
        a.cancel("int_2")
        async with asyncio.timeout(30):
            while not (got["b"] and got["b-cancel"] and got["a-cancel"]):
                arrived.clear()
                await arrived.wait()
        assert set(got["b"]) == {"int_1"}
        assert got["a"] == []  # a node's own events were published locally already
        assert got["b-cancel"] == ["int_2"] and got["a-cancel"] == ["int_2"]
    finally:
        await a.aclose()
        await b.aclose()


async def test_fanout_comes_back_after_its_connection_is_killed() -> None:
    base = os.environ.get("CORRAL_TEST_POSTGRES_URL")
    if not base:
        pytest.skip("CORRAL_TEST_POSTGRES_URL is not set")
    dsn = asyncpg_dsn(base)
    assert dsn is not None
    got: list[str] = []
    reconnects: list[bool] = []
    arrived = asyncio.Event()

    def on_events(iid: str) -> None:
        got.append(iid)
        arrived.set()

    def on_reconnect() -> None:
        reconnects.append(True)
        arrived.set()

    a = PgFanout(
        dsn,
        origin="ka",
        on_events=lambda _i: None,
        on_cancel=lambda _i: None,
        on_reconnect=lambda: None,
    )
    b = PgFanout(
        dsn, origin="kb", on_events=on_events, on_cancel=lambda _i: None, on_reconnect=on_reconnect
    )
    await a.start()
    await b.start()
    admin = await asyncpg.connect(dsn)
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE application_name = 'corral-fleet kb'"
        )
        assert killed == 1
        async with asyncio.timeout(30):
            while not reconnects:  # subscribers are told to re-read the store
                arrived.clear()
                await arrived.wait()
            a.published("int_after", 1)
            while "int_after" not in got:
                arrived.clear()
                await arrived.wait()
        assert b.connected
    finally:
        await admin.close()
        await a.aclose()
        await b.aclose()
