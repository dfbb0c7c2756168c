"""The runner continuing a run another node left half done (in process, SQLite, real sandbox).

The dead node's progress is written as its agent loop writes it (a Recorder on the store), then
this node's runner starts the run as a sweep would."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.agents.loop import Recorder
from runtime.agents.registry import resolve_agent
from runtime.controller import Controller, open_controller
from runtime.runner import RunOptions
from runtime.settings import Settings
from runtime.steps import materialize
from runtime.store.base import InteractionRecord

pytestmark = pytest.mark.docker


def agent_file(tmp_path: Path, turns: list[dict[str, Any]]) -> Path:
    script = tmp_path / "turns.yaml"
    script.write_text(yaml.safe_dump({"turns": turns}))
    path = tmp_path / "agent.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "model": f"scripted:{script}",
                "tools": ["exec", "files"],
                "resources": {"memory": "256m"},
            }
        )
    )
    return path


async def half_done(ctl: Controller, rec: InteractionRecord, calls: list[dict[str, Any]]) -> None:
    """What the dead node recorded: turn 1 ended, its calls started, none answered."""
    rec_ = Recorder(ctl.bus, rec.id, next_index=1)
    await rec_.step({"type": "model_output", "content": [{"type": "text", "text": "on it"}]})
    await rec_.emit("interaction.status_update", {"status": "in_progress", "usage": {}})
    for call in calls:
        await rec_.start({"type": "function_call", **call})
    await rec_.drain()


async def test_client_functions_in_flight_are_left_to_the_caller(
    tmp_path: Path, corral_home: Path
) -> None:
    spec = resolve_agent(str(agent_file(tmp_path, [{"text": "never asked"}])))
    options = RunOptions(client_tools=[{"type": "function", "name": "ask_user"}])
    async with open_controller(Settings(home=corral_home)) as ctl:
        rec = await ctl.runner.create(spec, "x", options=options, background=True)
        await half_done(
            ctl,
            rec,
            [
                {"id": "c1", "name": "ask_user", "arguments": {"q": "?"}},
                {"id": "c2", "name": "exec", "arguments": {"command": "echo again > out/r.txt"}},
            ],
        )
        ctl.runner.resumed_from[rec.id] = "node_dead"
        final = await ctl.runner.run(rec)
        evs = await ctl.store.list_events(rec.id)
        arts = [a.path for a in await ctl.store.list_artifacts(rec.id)]
    assert final.status == "requires_action", final.errors
    [resumed] = [e.payload for e in evs if e.event_type == "run.resumed"]
    assert resumed["from_node"] == "node_dead" and resumed["rerun"] == [3]  # exec only
    results = [
        e.payload["step"]
        for e in evs
        if e.event_type == "step.start" and e.payload["step"]["type"] == "function_result"
    ]
    assert [(r["call_id"], r["is_error"]) for r in results] == [("c2", False)]
    assert arts == ["r.txt"]
    assert "never asked" not in str([e.payload for e in evs])  # the model was not called


async def test_a_call_to_a_tool_the_agent_lacks_is_answered_with_an_error(
    tmp_path: Path, corral_home: Path
) -> None:
    turns = [{"text": "on it"}, {"text": "finished"}]  # turn 1 was the dead node's
    spec = resolve_agent(str(agent_file(tmp_path, turns)))
    async with open_controller(Settings(home=corral_home)) as ctl:
        rec = await ctl.runner.create(spec, "x", background=True)
        # A recorded call naming a tool this agent does not have (or a tampered row): refused.
        await half_done(ctl, rec, [{"id": "c9", "name": "browser_goto", "arguments": {}}])
        ctl.runner.resumed_from[rec.id] = "node_dead"
        final = await ctl.runner.run(rec)
        evs = await ctl.store.list_events(rec.id)
    assert final.status == "completed", final.errors
    results = [
        e.payload["step"]
        for e in evs
        if e.event_type == "step.start" and e.payload["step"]["type"] == "function_result"
    ]
    assert len(results) == 1 and results[0]["is_error"] and "unknown tool" in results[0]["result"]
    last = materialize(evs)[-1]
    assert last["type"] == "model_output" and last["content"][0]["text"] == "finished"
