"""`model=` interactions driven by the official google-genai SDK against a real server."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest
from google.genai._interactions.core.error import APIStatusError

from runtime.providers.base import Message, ModelProvider
from runtime.providers.registry import make_provider
from tests.runtime.api.conftest import ServerThread, sdk


class Recording:
    """Wraps the real provider factory and keeps every conversation a model was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[list[Message], str | None, list[str]]] = []

    def __call__(self, model: str, **kw: Any) -> ModelProvider:
        inner = make_provider(model, **kw)
        calls = self.calls

        class Wrapped:
            name = inner.name
            model = inner.model

            async def complete(self, messages: Sequence[Message], **k: Any) -> Any:
                calls.append(
                    (list(messages), k.get("system"), [t.name for t in k.get("tools", ())])
                )
                return await inner.complete(messages, **k)

            async def aclose(self) -> None:
                await inner.aclose()

        return Wrapped()  # type: ignore[return-value]


@pytest.fixture
def recording(server: ServerThread) -> Recording:
    rec = Recording()
    server.server.config.app.state.corral.ctl.runner.provider_factory = rec
    return rec


def test_create_get_and_output_text(client: Any, script: Callable[..., str]) -> None:
    model = script({"text": "Hello there"})
    r = client.interactions.create(model=model, input="hi")
    assert r.status == "completed"
    assert r.output_text == "Hello there"
    assert [s.type for s in r.steps] == ["model_output"]  # create returns the output only
    assert r.usage.total_tokens > 0
    got = client.interactions.get(r.id)
    assert [s.type for s in got.steps] == ["user_input", "model_output"]
    with_input = client.interactions.get(r.id, include_input=True)
    assert with_input.input == "hi"


def test_v1_prefix_and_bare_provider_names(
    server: ServerThread, script: Callable[..., str]
) -> None:
    c = sdk(server.url, version="v1")
    r = c.interactions.create(model=script({"text": "ok"}), input="x")
    assert r.output_text == "ok", r
    with pytest.raises(APIStatusError) as err:
        c.interactions.create(model="mystery-model", input="x")
    assert err.value.status_code == 400


def test_stream_on_create_and_resume(client: Any, script: Callable[..., str]) -> None:
    model = script({"text": "streamed words here"})
    events = list(client.interactions.create(model=model, input="go", stream=True))
    types = [e.event_type for e in events]
    assert types[0] == "interaction.created"
    assert types[-1] == "interaction.completed"
    assert "step.delta" in types
    text = "".join(e.delta.text for e in events if e.event_type == "step.delta")
    assert text == "streamed words here"
    ids = [int(e.event_id) for e in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    iid = events[0].interaction.id
    resumed = list(client.interactions.get(iid, stream=True, last_event_id=events[2].event_id))
    assert [int(e.event_id) for e in resumed] == ids[3:]


def test_background_then_poll_and_cancel(client: Any, script: Callable[..., str]) -> None:
    quick = client.interactions.create(model=script({"text": "done"}), input="x", background=True)
    assert quick.status == "in_progress"
    while (state := client.interactions.get(quick.id)).status == "in_progress":
        time.sleep(0.02)
    assert state.status == "completed"

    slow = client.interactions.create(
        model=script({"text": "never", "delay": 600}), input="x", background=True
    )
    cancelled = client.interactions.cancel(slow.id)
    assert cancelled.status == "cancelled"
    assert client.interactions.get(slow.id).status == "cancelled"
    again = client.interactions.cancel(slow.id)  # idempotent on a finished interaction
    assert again.status == "cancelled"


def test_delete(client: Any, script: Callable[..., str]) -> None:
    r = client.interactions.create(model=script({"text": "x"}), input="x")
    client.interactions.delete(r.id)
    with pytest.raises(APIStatusError) as err:
        client.interactions.get(r.id)
    assert err.value.status_code == 404


def test_function_calling_round_trip(
    client: Any, script: Callable[..., str], recording: Recording
) -> None:
    tools = [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    # One script for the conversation: each interaction carries on after the turns in its
    # history.
    model = script(
        {"tool_calls": [{"name": "get_weather", "arguments": {"city": "Paris"}}]},
        {"text": "Sunny in Paris."},
    )
    first = client.interactions.create(
        model=model,
        input="Weather in Paris?",
        tools=tools,
        system_instruction="Be brief.",
    )
    assert first.status == "requires_action"
    call = first.steps[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    assert call.arguments == {"city": "Paris"}
    second = client.interactions.create(
        model=model,
        previous_interaction_id=first.id,
        tools=tools,
        input=[
            {
                "type": "function_result",
                "call_id": call.id,
                "name": "get_weather",
                "result": "sunny",
            }
        ],
    )
    assert second.status == "completed"
    assert second.output_text == "Sunny in Paris."
    assert second.previous_interaction_id == first.id
    messages, _system, tool_names = recording.calls[-1]
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[1].tool_calls[0].id == call.id
    assert messages[2].tool_call_id == call.id and messages[2].content == "sunny"
    assert tool_names == ["get_weather"]
    assert recording.calls[0][1] == "Be brief."


def test_previous_interaction_conversation(
    client: Any, script: Callable[..., str], recording: Recording
) -> None:
    model = script({"text": "I am Corral."}, {"text": "You asked who I am."})
    one = client.interactions.create(model=model, input="Who are you?")
    two = client.interactions.create(
        model=model,
        input="What did I ask?",
        previous_interaction_id=one.id,
    )
    assert two.output_text == "You asked who I am."
    messages = recording.calls[-1][0]
    assert [(m.role, m.content) for m in messages] == [
        ("user", "Who are you?"),
        ("assistant", "I am Corral."),
        ("user", "What did I ask?"),
    ]


def test_store_false_is_stateless(
    client: Any, script: Callable[..., str], recording: Recording
) -> None:
    history = [
        {"type": "user_input", "content": [{"type": "text", "text": "Remember 7."}]},
        {"type": "model_output", "content": [{"type": "text", "text": "Noted."}]},
        {"type": "user_input", "content": [{"type": "text", "text": "Which number?"}]},
    ]
    # The history holds one model turn, so the script's second turn answers.
    model = script({"text": "Noted."}, {"text": "7"})
    r = client.interactions.create(model=model, input=history, store=False)
    assert r.status == "completed" and r.output_text == "7"
    assert [m.content for m in recording.calls[-1][0]] == ["Remember 7.", "Noted.", "Which number?"]
    with pytest.raises(APIStatusError) as err:
        client.interactions.get(r.id)
    assert err.value.status_code == 404


def test_structured_output_and_generation_config_reach_the_provider(
    server: ServerThread, script: Callable[..., str]
) -> None:
    seen: list[Any] = []

    def factory(model: str, **kw: Any) -> ModelProvider:
        inner = make_provider(model, **kw)
        original = inner.complete

        async def complete(messages: Sequence[Message], **k: Any) -> Any:
            seen.append(k.get("config"))
            return await original(messages, **k)

        inner.complete = complete  # type: ignore[method-assign]
        return inner

    server.server.config.app.state.corral.ctl.runner.provider_factory = factory
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        json={
            "model": script({"text": '{"n": 1}'}),
            "input": "n?",
            "generation_config": {"temperature": 0.2, "max_output_tokens": 50},
            "response_format": {"type": "text", "mime_type": "application/json", "schema": schema},
        },
    )
    assert r.status_code == 200, r.text
    cfg = seen[-1]
    assert cfg.temperature == 0.2 and cfg.max_output_tokens == 50
    assert cfg.response_schema == schema


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"model": "x", "agent": "y", "input": "z"},
        {"model": 5, "input": "x"},
        {"model": "scripted:/nope.yaml", "input": [{"type": "weird"}]},
        {"model": "gpt-4o", "input": "x", "tools": [{"type": "google_search"}]},
        {"agent": "../../etc/passwd", "input": "x"},
    ],
)
def test_bad_requests_are_400_in_the_error_shape(
    server: ServerThread, body: dict[str, Any]
) -> None:
    r = httpx.post(f"{server.url}/v1beta/interactions", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["code"] == 400 and err["message"]
    assert err["status"] in ("INVALID_ARGUMENT", "FAILED_PRECONDITION")


def test_malformed_json_and_unknown_routes(server: ServerThread) -> None:
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.get(f"{server.url}/v1beta/nothing-here")
    assert r.status_code == 404 and r.json()["error"]["status"] == "NOT_FOUND"
