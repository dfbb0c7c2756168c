"""A node dies mid-run (kill -9) and another node continues the run to the end.

Two real `corral serve` processes on one PostgreSQL, each with its own home (as if on two
machines sharing the Docker engine here), short leases so that the takeover comes quickly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.fleet.nodes import ServeNode, fleet_metrics, owner_of, sse_events

pytestmark = pytest.mark.docker

FAST_LEASES = {"CORRAL_LEASE_TTL": "3"}


def test_a_run_survives_the_kill_of_its_node(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    a = start_node("a", FAST_LEASES)
    b = start_node("b", FAST_LEASES)
    spec = scripted_agent(
        "survivor",
        "mkdir -p /workspace/out && echo one > /workspace/out/one.txt",
        "echo in-flight; sleep 4; echo two > /workspace/out/two.txt",
        # one.txt changes after the takeover, keeping its size: a new version, announced.
        "cat /workspace/out/one.txt /workspace/out/two.txt > /workspace/out/three.txt"
        " && echo ONE > /workspace/out/one.txt",
    )
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        run = ca.post(
            "/v1beta/interactions", json={"agent": "survivor", "input": "go", "background": True}
        ).json()
    rid = run["id"]
    assert owner_of([a, b]) is a  # created on a: leased to a from birth

    seen: list[dict[str, Any]] = []
    with (
        b.client() as cb,
        cb.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        # Followed from node b all along: the stream goes on across the takeover.
        assert resp.status_code == 200
        killed = False
        for ev in sse_events(resp):
            seen.append(ev)
            delta = ev.get("delta") or {}
            if not killed and "in-flight" in str(delta.get("result")):
                a.kill()  # mid-command: its call is recorded, its result is not
                killed = True
        assert killed
        final = cb.get(f"/v1beta/interactions/{rid}").json()
        assert final["status"] == "completed", final
        listed = cb.get(f"/v1beta/interactions/{rid}/artifacts").json()["artifacts"]
        assert {x["path"] for x in listed} >= {"one.txt", "two.txt", "three.txt"}
        three = cb.get(f"/v1beta/interactions/{rid}/artifacts/three.txt")
        assert three.status_code == 200 and three.text == "one\ntwo\n"

    types = [e["event_type"] for e in seen]
    assert types[-1] == "interaction.completed"
    assert types.count("interaction.completed") == 1
    resumed = [e for e in seen if e["event_type"] == "run.resumed"]
    assert len(resumed) == 1, resumed
    info = resumed[0]
    assert info["from_node"] == (a.home / "node_id").read_text().strip()
    assert info["node"] == (b.home / "node_id").read_text().strip()
    assert info["sandbox"] == "new" and "one.txt" in info["restored"]
    assert len(info["rerun"]) == 1  # the command in flight ran again, and says so
    after = seen[seen.index(info) :]
    rerun = [e for e in after if e["event_type"] == "step.start" and "in-flight" in str(e)]
    assert len(rerun) == 1  # the re-run's result, recorded by node b
    ids = [int(e["event_id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))  # contiguous across the two nodes

    # Restored files are announced again only when their content changed: one.txt once
    # before (its first version) and once after (changed); unchanged restores stay quiet.
    created = [
        (seen.index(e) > seen.index(info), e["artifact"]["path"], e["artifact"]["sha256"])
        for e in seen
        if e["event_type"] == "artifact.created"
    ]
    before = [(path, sha) for late, path, sha in created if not late]
    late_paths = sorted(path for late, path, _ in created if late)
    assert [p for p, _ in before] == ["one.txt"]
    assert late_paths == ["one.txt", "three.txt", "two.txt"]
    [changed] = [sha for late, path, sha in created if late and path == "one.txt"]
    assert changed != before[0][1]

    # The survivor's /metrics counts the takeover; the dead node lost nothing it knew of.
    metrics = fleet_metrics(b)
    assert metrics['corral_fleet_takeovers_total{lease="expired"}'] == 1
    assert metrics['corral_fleet_takeovers_total{lease="released"}'] == 0
    assert metrics["corral_fleet_leases_lost_total"] == 0
    assert metrics['corral_fleet_notifications_received_total{channel="events"}'] >= 1
    assert metrics['corral_fleet_nodes{draining="false"}'] == 1  # a is dead: only b beats
    assert metrics["corral_fleet_runs_leased"] == 0  # the run ended
    assert metrics["corral_fleet_runs_queued"] == 0


def test_sigterm_drains_and_hands_the_run_to_another_node(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    quick_drain = {**FAST_LEASES, "CORRAL_DRAIN_GRACE": "1"}
    a = start_node("a", quick_drain)
    b = start_node("b", quick_drain)
    spec = scripted_agent(
        "handoff",
        "echo before > /workspace/out/before.txt",
        "echo draining; sleep 6; echo after > /workspace/out/after.txt",
    )
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        rid = ca.post(
            "/v1beta/interactions", json={"agent": "handoff", "input": "go", "background": True}
        ).json()["id"]
    assert owner_of([a, b]) is a
    seen: list[dict[str, Any]] = []
    with (
        b.client() as cb,
        cb.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        stopped = False
        for ev in sse_events(resp):
            seen.append(ev)
            if not stopped and "draining" in str((ev.get("delta") or {}).get("result")):
                a.stop()  # SIGTERM: the command outlasts the 1 s grace, so the run moves
                stopped = True
        assert stopped
        assert {
            x["path"] for x in cb.get(f"/v1beta/interactions/{rid}/artifacts").json()["artifacts"]
        } == {"before.txt", "after.txt"}
    assert seen[-1]["interaction"]["status"] == "completed"
    [resumed] = [e for e in seen if e["event_type"] == "run.resumed"]
    # Released, not expired: the lease had no owner when b claimed it.
    assert resumed["from_node"] is None and len(resumed["rerun"]) == 1
    assert '"fleet.handed_off"' in a.logs()  # a let go of it; nobody took it for dead
    metrics = fleet_metrics(b)
    assert metrics['corral_fleet_takeovers_total{lease="released"}'] == 1
    assert metrics['corral_fleet_takeovers_total{lease="expired"}'] == 0
    ids = [int(e["event_id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))


def test_a_node_restarted_on_its_home_adopts_its_sandbox_and_continues(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    a = start_node("a", FAST_LEASES)
    spec = scripted_agent(
        "phoenix",
        # scratch.txt is outside out/: only the old sandbox has it; early.txt is announced once
        "echo kept > /workspace/scratch.txt && echo early > /workspace/out/early.txt",
        "echo restart-me; sleep 5",
        "cp /workspace/scratch.txt /workspace/out/scratch.txt",
    )
    with a.client() as ca:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        rid = ca.post(
            "/v1beta/interactions", json={"agent": "phoenix", "input": "go", "background": True}
        ).json()["id"]
        with ca.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp:
            for ev in sse_events(resp):
                if "restart-me" in str((ev.get("delta") or {}).get("result")):
                    break
    a.kill()
    again = start_node("a", FAST_LEASES)  # same home, so the same node id and engine label
    with (
        again.client() as c,
        c.stream(
            "GET", f"/v1beta/interactions/{rid}", params={"stream": "true", "corral_events": "1"}
        ) as resp,
    ):
        seen = list(sse_events(resp))
        scratch = c.get(f"/v1beta/interactions/{rid}/artifacts/scratch.txt")
    assert seen[-1]["interaction"]["status"] == "completed"
    [resumed] = [e for e in seen if e["event_type"] == "run.resumed"]
    node = (again.home / "node_id").read_text().strip()
    assert (resumed["from_node"], resumed["node"], resumed["sandbox"]) == (node, node, "adopted")
    assert scratch.status_code == 200 and scratch.text == "kept\n"
    created = [e["artifact"]["path"] for e in seen if e["event_type"] == "artifact.created"]
    assert sorted(created) == ["early.txt", "scratch.txt"]  # the adopted out/ is not news
    # early.txt was copied again on the restarted node: its superseded copy is gone.
    assert len(list((again.home / "artifacts" / rid).iterdir())) == 2
