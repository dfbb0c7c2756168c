"""What a node continuing a run takes from its event log (no database, no sandbox)."""

from __future__ import annotations

from typing import Any

from runtime.fleet.resume import artifact_source, plan_resume
from runtime.steps import to_messages
from runtime.store.base import ArtifactRecord, EventRecord


class Log:
    """Events as the agent loop records them, numbered like the store does."""

    def __init__(self) -> None:
        self.events: list[EventRecord] = []
        self.index = 0

    def add(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append(EventRecord("int_x", len(self.events) + 1, event_type, payload))

    def step(self, step: dict[str, Any], *, stop: bool = True) -> int:
        index = self.index
        self.index += 1
        self.add("step.start", {"index": index, "step": step})
        if stop:
            self.add("step.stop", {"index": index})
        return index

    def turn_ends(self, total_tokens: int = 10) -> None:
        usage = {"total_input_tokens": total_tokens - 2, "total_output_tokens": 2}
        self.add("interaction.status_update", {"status": "in_progress", "usage": usage})

    def call(self, cid: str, command: str, *, answered: bool) -> int:
        index = self.step(
            {"type": "function_call", "id": cid, "name": "exec", "arguments": {"command": command}},
            stop=answered,
        )
        if answered:
            self.step({"type": "function_result", "call_id": cid, "name": "exec", "result": "ok"})
        return index


def started() -> Log:
    log = Log()
    log.step({"type": "user_input", "content": [{"type": "text", "text": "go"}]})
    log.step({"type": "model_output", "content": [{"type": "text", "text": "first"}]})
    log.turn_ends()
    log.call("c1", "echo one", answered=True)
    return log


def test_a_run_with_only_its_input_is_not_a_resumption() -> None:
    log = Log()
    log.step({"type": "user_input", "content": [{"type": "text", "text": "go"}]})
    plan = plan_resume(log.events, n_input=1)
    assert not plan.resumed and plan.next_index == 1 and plan.rerun == []


def test_the_call_in_flight_is_run_again_and_the_rest_replayed() -> None:
    log = started()
    log.step({"type": "model_output", "content": [{"type": "text", "text": "second"}]})
    log.turn_ends(total_tokens=25)
    in_flight = log.call("c2", "sleep 5", answered=False)
    plan = plan_resume(log.events, n_input=1)
    assert plan.resumed
    assert [(i, c.id, c.arguments) for i, c, _ in plan.rerun] == [
        (in_flight, "c2", {"command": "sleep 5"})
    ]
    assert (plan.turns, plan.tool_calls, plan.discarded) == (2, 2, [])
    assert (plan.usage.input_tokens, plan.usage.output_tokens, plan.usage.total) == (23, 2, 25)
    assert plan.next_index == log.index
    roles = [(m.role, [c.id for c in m.tool_calls]) for m in to_messages(plan.steps)]
    # The open call sits in the last assistant message, waiting for its (re-run) result.
    assert roles == [("user", []), ("assistant", ["c1"]), ("tool", []), ("assistant", ["c2"])]


def test_an_unfinished_model_turn_is_asked_again() -> None:
    log = started()
    partial = log.step({"type": "model_output", "content": []}, stop=False)
    log.add("step.delta", {"index": partial, "delta": {"type": "text", "text": "half a tho"}})
    plan = plan_resume(log.events, n_input=1)
    assert plan.discarded == [partial] and plan.rerun == [] and plan.turns == 1
    messages = to_messages(plan.steps)
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert "half a tho" not in str(messages)
    # A scripted model counts assistant messages: it replays turn 2, not turn 3.
    assert sum(m.role == "assistant" for m in messages) == 1


def test_a_finished_turn_without_tool_calls_is_kept() -> None:
    log = started()
    log.step({"type": "model_output", "content": [{"type": "text", "text": "done"}]})
    log.turn_ends()
    plan = plan_resume(log.events, n_input=1)
    assert plan.discarded == [] and plan.rerun == [] and plan.turns == 2
    assert to_messages(plan.steps)[-1].content == "done"


def test_only_a_collector_copy_is_restored_from_a_stored_path() -> None:
    good = "/data/node-a/artifacts/int_x/" + "0123456789abcdef" * 2
    assert artifact_source(ArtifactRecord("int_x", "a.txt", 1, "0", stored_path=good)) == good
    for hostile in (
        "/etc/shadow",
        "/data/node-a/artifacts/int_other/" + "0" * 32,  # another run's copy
        "/data/node-a/artifacts/int_x/../int_x/" + "0" * 32,
        "/data/node-a/artifacts/int_x/notes.txt",
        "artifacts/int_x/" + "0" * 32,  # relative
        "",
    ):
        rec = ArtifactRecord("int_x", "a.txt", 1, "0", stored_path=hostile)
        assert artifact_source(rec) is None, hostile
