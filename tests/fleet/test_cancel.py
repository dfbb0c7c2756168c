"""Cancel from any node: the run executes on one node, a second streams it, a third cancels it.
Another tenant's key cannot cancel it from any node."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fleet.nodes import OTHER_HEADERS, ServeNode, owner_of, sse_events

pytestmark = pytest.mark.docker


def test_run_on_one_node_streamed_on_another_cancelled_from_a_third(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    nodes = [start_node("a"), start_node("b"), start_node("c")]
    with nodes[0].client() as c0:
        spec = scripted_agent("sleeper", "echo started; sleep 300", "echo never-reached")
        assert c0.post("/v1beta/agents", json=spec).status_code == 200
        run = c0.post(
            "/v1beta/interactions", json={"agent": "sleeper", "input": "wait", "background": True}
        ).json()
    rid = run["id"]
    owner = owner_of(nodes)
    viewer, canceller = [n for n in nodes if n is not owner]
    seen: list[dict[str, Any]] = []
    with (
        viewer.client() as cv,
        canceller.client() as cc,
        cv.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        assert resp.status_code == 200
        cancelled: dict[str, Any] = {}
        for ev in sse_events(resp):
            seen.append(ev)
            delta = ev.get("delta") or {}
            if not cancelled and "started" in str(delta.get("result")):
                # Another tenant is refused on the non-owning node and changes nothing.
                other = cc.post(f"/v1beta/interactions/{rid}/cancel", headers=OTHER_HEADERS)
                assert other.status_code == 404
                cancelled = cc.post(f"/v1beta/interactions/{rid}/cancel").json()
    assert cancelled["status"] == "cancelled"
    types = [e["event_type"] for e in seen]
    assert types.count("cancel.requested") == 1
    assert types[-1] == "interaction.completed"
    assert seen[-1]["interaction"]["status"] == "cancelled"
    assert "never-reached" not in str(seen)  # the run stopped in its first command
    ids = [int(e["event_id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))
    assert owner.runs_active() == 0
    with owner.client() as co:
        assert co.get(f"/v1beta/interactions/{rid}").json()["status"] == "cancelled"


def test_cancel_while_the_owner_is_dead_is_honoured_by_the_node_that_takes_the_run_over(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    fast = {"CORRAL_LEASE_TTL": "3"}  # a dead node's runs are free after 3 s
    nodes = [start_node("a", fast), start_node("b", fast)]
    with nodes[0].client() as c0:
        spec = scripted_agent("sleeper", "echo started; sleep 300", "echo never-reached")
        assert c0.post("/v1beta/agents", json=spec).status_code == 200
        run = c0.post(
            "/v1beta/interactions", json={"agent": "sleeper", "input": "wait", "background": True}
        ).json()
    rid = run["id"]
    owner = owner_of(nodes)
    survivor = next(n for n in nodes if n is not owner)
    with survivor.client() as cs:
        with cs.stream("GET", f"/v1beta/interactions/{rid}", params={"stream": "true"}) as resp:
            for ev in sse_events(resp):
                if "started" in str((ev.get("delta") or {}).get("result")):
                    break
        owner.kill()
        # Recorded at once; honoured once the survivor has taken the run over (lease expiry).
        cancelled = cs.post(f"/v1beta/interactions/{rid}/cancel").json()
        assert cancelled["status"] == "cancelled"
        events = cs.get(
            f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ).text
    assert "cancel.requested" in events and "never-reached" not in events
    assert survivor.runs_active() == 0


def test_a_model_interaction_is_cancelled_from_another_node(
    start_node: Callable[..., ServeNode], tmp_path: Path
) -> None:
    a, b = start_node("a"), start_node("b")
    script = tmp_path / "slow.yaml"
    script.write_text(yaml.safe_dump({"turns": [{"text": "too late", "delay": 300}]}))
    with a.client() as ca, b.client() as cb:
        created = ca.post(
            "/v1beta/interactions",
            json={"model": f"scripted:{script}", "input": "hi", "background": True},
        ).json()
        assert created["status"] == "in_progress"
        assert a.runs_active() == 1  # the model call is waiting on a
        cancelled = cb.post(f"/v1beta/interactions/{created['id']}/cancel").json()
        assert cancelled["status"] == "cancelled"
        assert a.runs_active() == 0
        assert ca.get(f"/v1beta/interactions/{created['id']}").json()["status"] == "cancelled"


def test_a_queued_run_is_cancelled_at_once_and_never_starts(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    one = {"CORRAL_NODE_CAPACITY": "1"}
    a, b = start_node("a", one), start_node("b", one)
    with a.client() as ca, b.client() as cb:
        spec = scripted_agent("sleeper", "echo started; sleep 300")
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        body = {"agent": "sleeper", "input": "wait", "background": True}
        busy = [ca.post("/v1beta/interactions", json=body).json()["id"] for _ in range(2)]
        deadline = time.monotonic() + 120
        while a.runs_active() + b.runs_active() < 2:  # one run on each node: both full
            assert time.monotonic() < deadline
            time.sleep(0.1)
        queued = ca.post("/v1beta/interactions", json=body).json()["id"]
        cancelled = cb.post(f"/v1beta/interactions/{queued}/cancel").json()
        assert cancelled["status"] == "cancelled"
        events = cb.get(
            f"/v1beta/interactions/{queued}", params={"stream": "true", "corral_events": "1"}
        ).text
        assert "cancel.requested" in events and "started" not in events
        for rid in busy:
            assert cb.post(f"/v1beta/interactions/{rid}/cancel").json()["status"] == "cancelled"
        assert a.runs_active() + b.runs_active() == 0


def test_a_dead_nodes_run_is_cancelled_when_no_node_has_room_to_take_it(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    """The run's lease is still live when the cancel arrives (its node was just killed), and
    the only live node is full, so no sweep takes the run over: the cancelling node claims it
    once the lease expires, within its wait, and ends it without starting it."""
    full = {"CORRAL_NODE_CAPACITY": "1", "CORRAL_LEASE_TTL": "3"}
    a, b = start_node("a", full), start_node("b", full)
    spec = scripted_agent("sleeper", "echo started; sleep 300")
    body = {"agent": "sleeper", "input": "wait", "background": True}
    with a.client() as ca, b.client() as cb:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        orphan = ca.post("/v1beta/interactions", json=body).json()["id"]
        busy = cb.post("/v1beta/interactions", json=body).json()["id"]
        deadline = time.monotonic() + 120
        while a.runs_active() + b.runs_active() < 2:  # each node runs its own: both full
            assert time.monotonic() < deadline
            time.sleep(0.1)
        a.kill()
        cancelled = cb.post(f"/v1beta/interactions/{orphan}/cancel").json()
        assert cancelled["status"] == "cancelled"  # not still in_progress after the wait
        events = cb.get(
            f"/v1beta/interactions/{orphan}", params={"stream": "true", "corral_events": "1"}
        ).text
        assert "cancel.requested" in events
        assert "run.resumed" not in events  # b ended it, it never continued there
        assert b.runs_active() == 1  # b's own run goes on
        assert cb.post(f"/v1beta/interactions/{busy}/cancel").json()["status"] == "cancelled"
        assert b.runs_active() == 0


def test_the_node_that_queued_a_run_can_cancel_it_once_another_node_runs_it(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    """a queues a run (it is full); b claims and runs it. a gave its lease (and its fence) up
    when queueing, so its cancel request is recorded and b honours it."""
    a = start_node("a", {"CORRAL_NODE_CAPACITY": "1"})
    b = start_node("b")
    spec = scripted_agent("sleeper", "echo started; sleep 300")
    body = {"agent": "sleeper", "input": "wait", "background": True}
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        first = ca.post("/v1beta/interactions", json=body).json()["id"]
        deadline = time.monotonic() + 120
        while a.runs_active() < 1:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        queued = ca.post("/v1beta/interactions", json=body).json()["id"]
        with ca.stream("GET", f"/v1beta/interactions/{queued}", params={"stream": "true"}) as resp:
            for ev in sse_events(resp):
                if "started" in str((ev.get("delta") or {}).get("result")):
                    break  # running on b now
        assert b.runs_active() == 1
        cancelled = ca.post(f"/v1beta/interactions/{queued}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert b.runs_active() == 0
        assert ca.post(f"/v1beta/interactions/{first}/cancel").json()["status"] == "cancelled"
