"""Queued background runs: a full node gives a run up, exactly one node with room starts it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fleet.nodes import ServeNode, owner_of, sse_events

pytestmark = pytest.mark.docker

ONE_RUN_EACH = {"CORRAL_LEASE_TTL": "3", "CORRAL_NODE_CAPACITY": "1", "CORRAL_DRAIN_GRACE": "0"}


def node_id(node: ServeNode) -> str:
    return (node.home / "node_id").read_text().strip()


def test_a_run_queued_on_a_full_node_is_started_by_exactly_one_other(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    a = start_node("a", ONE_RUN_EACH)
    with a.client() as ca:
        for spec in (
            scripted_agent("holder", "echo holding; sleep 120"),
            scripted_agent("queued", "echo ran-once > /workspace/out/once.txt"),
        ):
            assert ca.post("/v1beta/agents", json=spec).status_code == 200
        body = {"input": "go", "background": True}
        ca.post("/v1beta/interactions", json={**body, "agent": "holder"}).raise_for_status()
        assert owner_of([a]) is a  # a is full now
        # Two idle nodes join; the next run created on a must go to one of them.
        b, c = start_node("b", ONE_RUN_EACH), start_node("c", ONE_RUN_EACH)
        queued = ca.post("/v1beta/interactions", json={**body, "agent": "queued"}).json()
        assert queued["status"] == "in_progress"
        with ca.stream(
            "GET",
            f"/v1beta/interactions/{queued['id']}",
            params={"stream": "true", "corral_events": "1"},
        ) as resp:
            seen = list(sse_events(resp))
    assert seen[-1]["event_type"] == "interaction.completed"
    assert seen[-1]["interaction"]["status"] == "completed"
    types = [e["event_type"] for e in seen]
    assert types.count("run.queued") == 1 and types.count("run.claimed") == 1
    assert next(e for e in seen if e["event_type"] == "run.queued")["node"] == node_id(a)
    runner = next(e for e in seen if e["event_type"] == "run.claimed")["node"]
    assert runner in (node_id(b), node_id(c))
    assert str(seen).count("ran-once") >= 1
    created = [e for e in seen if e["event_type"] == "artifact.created"]
    assert [e["artifact"]["path"] for e in created] == ["once.txt"]  # made once, by one node
    ids = [int(e["event_id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))
    assert a.runs_active() == 1  # still only its holder
