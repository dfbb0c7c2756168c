from __future__ import annotations

import pytest

from runtime.agents.truncate import estimate_tokens, fit_context, head_tail
from runtime.artifacts import safe_relpath
from runtime.providers.base import Message, ToolCall
from runtime.steps import materialize, to_messages
from runtime.store.base import EventRecord


def ev(i: int, kind: str, payload: dict) -> EventRecord:
    return EventRecord(interaction_id="x", event_id=i, event_type=kind, payload=payload)


def test_materialize_folds_deltas_and_to_messages_round_trips() -> None:
    events = [
        ev(
            1,
            "step.start",
            {
                "index": 0,
                "step": {"type": "user_input", "content": [{"type": "text", "text": "hi"}]},
            },
        ),
        ev(2, "step.start", {"index": 1, "step": {"type": "model_output", "content": []}}),
        ev(3, "step.delta", {"index": 1, "delta": {"type": "text", "text": "Hel"}}),
        ev(4, "step.delta", {"index": 1, "delta": {"type": "text", "text": "lo"}}),
        ev(5, "step.stop", {"index": 1}),
        ev(
            6,
            "step.start",
            {
                "index": 2,
                "step": {
                    "type": "function_call",
                    "id": "c1",
                    "name": "exec",
                    "arguments": {"command": "ls"},
                },
            },
        ),
        ev(
            7,
            "step.delta",
            {"index": 2, "delta": {"type": "tool_output", "stream": "stdout", "text": "a\n"}},
        ),
        ev(
            8,
            "step.start",
            {
                "index": 3,
                "step": {
                    "type": "function_result",
                    "call_id": "c1",
                    "name": "exec",
                    "result": "a",
                    "is_error": False,
                },
            },
        ),
    ]
    steps = materialize(events)
    assert [s["type"] for s in steps] == [
        "user_input",
        "model_output",
        "function_call",
        "function_result",
    ]
    assert steps[1]["content"] == [{"type": "text", "text": "Hello"}]
    msgs = to_messages(steps)
    assert [m.role for m in msgs] == ["user", "assistant", "tool"]
    assert msgs[1].content == "Hello" and msgs[1].tool_calls == [
        ToolCall("c1", "exec", {"command": "ls"})
    ]
    assert msgs[2].tool_call_id == "c1" and msgs[2].content == "a"


def test_head_tail_keeps_both_ends_with_marker() -> None:
    text = "A" * 1000 + "B" * 1000
    out = head_tail(text, 300)
    assert out.startswith("A") and out.endswith("B") and "truncated" in out and len(out) < 400
    assert head_tail("short", 300) == "short"


def test_fit_context_shortens_old_results_then_drops_whole_exchanges() -> None:
    msgs = [Message(role="user", content="task")]
    for i in range(30):
        msgs.append(
            Message(role="assistant", tool_calls=[ToolCall(f"c{i}", "exec", {"command": "x"})])
        )
        msgs.append(Message(role="tool", content="y" * 4000, tool_call_id=f"c{i}", name="exec"))
    fitted = fit_context(msgs, 5000)
    assert estimate_tokens(fitted) <= 5000 or len(fitted) <= 8
    assert fitted[0].content == "task"
    # every tool result still follows the assistant message that asked for it
    for i, m in enumerate(fitted):
        if m.role == "tool":
            prev = fitted[i - 1]
            assert prev.role in ("assistant", "tool")
    ids_called = {c.id for m in fitted if m.role == "assistant" for c in m.tool_calls}
    assert {m.tool_call_id for m in fitted if m.role == "tool"} <= ids_called


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "", "..", "a/.."])
def test_safe_relpath_refuses(bad: str) -> None:
    with pytest.raises(ValueError):
        safe_relpath(bad)


def test_safe_relpath_accepts_and_normalizes() -> None:
    assert str(safe_relpath("sub/dir/file.txt")) == "sub/dir/file.txt"
    assert str(safe_relpath("a//b")) == "a/b" and str(safe_relpath("./a")) == "a"


def test_steps_as_the_sdk_shows_them_reach_the_model_as_the_tool_calls_they_were() -> None:
    """A client sending history back (store=false) sends the public step types: code
    execution, url_context and google_search steps must not be dropped on the way in."""
    from runtime.steps import to_messages
    from runtime.views import public_steps

    recorded = [
        {"type": "user_input", "content": [{"type": "text", "text": "go"}]},
        {"type": "function_call", "id": "c1", "name": "python", "arguments": {"code": "1+1"}},
        {"type": "function_result", "call_id": "c1", "name": "python", "result": "2"},
        {"type": "function_call", "id": "c2", "name": "exec", "arguments": {"command": "ls"}},
        {"type": "function_result", "call_id": "c2", "name": "exec", "result": "a.txt"},
        {"type": "function_call", "id": "c3", "name": "url_context", "server_tool":
         "url_context", "arguments": {"urls": ["http://x.test/"]}},
        {"type": "function_result", "call_id": "c3", "name": "url_context", "server_tool":
         "url_context", "result": "page text", "details": [{"url": "http://x.test/",
                                                          "status": "success"}]},
        {"type": "model_output", "content": [{"type": "text", "text": "done"}]},
    ]  # fmt: skip
    shown = public_steps(recorded)
    assert [s["type"] for s in shown][1:7] == [
        "code_execution_call", "code_execution_result", "code_execution_call",
        "code_execution_result", "url_context_call", "url_context_result",
    ]  # fmt: skip
    messages = to_messages(shown)
    calls = [c for m in messages for c in m.tool_calls]
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("c1", "python", {"code": "1+1"}),
        ("c2", "exec", {"command": "ls"}),
        ("c3", "url_context", {"urls": ["http://x.test/"]}),
    ]
    results = [(m.tool_call_id, m.name, m.content) for m in messages if m.role == "tool"]
    assert results[:2] == [("c1", "python", "2"), ("c2", "exec", "a.txt")]
    assert results[2][:2] == ("c3", "url_context")
    assert messages[-1].content == "done"
