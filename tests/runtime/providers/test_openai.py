from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from runtime.errors import ConfigError, ProviderAuthError, ProviderError, ProviderUnavailable
from runtime.providers.base import GenerationConfig, Message, ToolSpec
from runtime.providers.openai import OpenAIProvider
from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.conftest import RecordingSleep
from tests.runtime.providers.fakes import (
    FakeServer,
    Reply,
    openai_chunk,
    openai_completion,
    openai_error,
    openai_sse,
)

EXEC = ToolSpec(
    name="exec",
    description="Run a shell command",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
)


@pytest.fixture
async def provider(fake: FakeServer, policy: RetryPolicy) -> AsyncIterator[OpenAIProvider]:
    p = OpenAIProvider("gpt-fake", api_key="sk-test", base_url=fake.url + "/v1", retry=policy)
    yield p
    await p.aclose()


async def test_tool_call_round_trip(fake: FakeServer, provider: OpenAIProvider) -> None:
    fake.add(
        Reply(body=openai_completion(tool_calls=[("call_1", "exec", {"command": "uname -a"})])),
        Reply(body=openai_completion(text="Linux it is.", usage=(30, 4))),
    )
    history = [Message(role="user", content="what OS?")]
    first = await provider.complete(history, system="Be brief.", tools=[EXEC])

    assert first.stop_reason == "tool_use"
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_1", "exec", {"command": "uname -a"})
    ]
    history += [
        first.to_message(),
        Message(role="tool", content="Linux box 6.1", tool_call_id="call_1", name="exec"),
    ]
    second = await provider.complete(history, system="Be brief.", tools=[EXEC])

    assert second.text == "Linux it is."
    assert second.tool_calls == []
    assert second.stop_reason == "end_turn"
    assert (second.usage.input_tokens, second.usage.output_tokens) == (30, 4)

    req1, req2 = (r.body for r in fake.requests)
    assert fake.requests[0].path == "/v1/chat/completions"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-test"
    assert req1["messages"][0] == {"role": "system", "content": "Be brief."}
    assert req1["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "exec",
                "description": "Run a shell command",
                "parameters": EXEC.parameters,
            },
        }
    ]
    assert "stream" not in req1
    assistant, tool = req2["messages"][2], req2["messages"][3]
    assert assistant["tool_calls"][0]["id"] == "call_1"
    assert assistant["tool_calls"][0]["function"]["name"] == "exec"
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": "Linux box 6.1"}


async def test_streaming_text_and_tool_call_deltas(
    fake: FakeServer, provider: OpenAIProvider
) -> None:
    chunks = [
        openai_chunk({"role": "assistant", "content": "Let me "}),
        openai_chunk({"content": "check."}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "call_a",
                        "type": "function",
                        "function": {"name": "exec", "arguments": '{"comm'},
                    }
                ]
            }
        ),
        openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'and": "df -h"}'}}]}),
        openai_chunk(
            {
                "tool_calls": [
                    {
                        "index": 1,
                        "id": "call_b",
                        "type": "function",
                        "function": {"name": "exec", "arguments": ""},
                    }
                ]
            }
        ),
        openai_chunk(
            {"tool_calls": [{"index": 1, "function": {"arguments": '{"command": "ls"}'}}]}
        ),
        openai_chunk({}, finish_reason="tool_calls"),
        openai_chunk(None, usage=(12, 7)),
    ]
    fake.add(Reply(sse=openai_sse(chunks)))
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    turn = await provider.complete(
        [Message(role="user", content="disk?")], tools=[EXEC], on_text=on_text
    )

    assert pieces == ["Let me ", "check."]
    assert turn.text == "Let me check."
    assert [(c.id, c.arguments) for c in turn.tool_calls] == [
        ("call_a", {"command": "df -h"}),
        ("call_b", {"command": "ls"}),
    ]
    assert turn.stop_reason == "tool_use"
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (12, 7)
    sent = fake.requests[0].body
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True}


async def test_missing_and_duplicate_tool_call_ids_are_synthesized(
    fake: FakeServer, provider: OpenAIProvider
) -> None:
    fake.add(
        Reply(
            body=openai_completion(
                tool_calls=[("", "exec", {"command": "a"}), ("", "exec", {"command": "b"})]
            )
        )
    )
    turn = await provider.complete([Message(role="user", content="go")], tools=[EXEC])
    ids = [c.id for c in turn.tool_calls]
    assert all(ids) and len(set(ids)) == 2


async def test_config_maps_to_request(fake: FakeServer, provider: OpenAIProvider) -> None:
    fake.add(Reply(body=openai_completion(text='{"n": 1}')))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    await provider.complete(
        [Message(role="user", content="n?")],
        config=GenerationConfig(
            temperature=0.2,
            top_p=0.9,
            max_output_tokens=64,
            stop=["END"],
            seed=7,
            response_schema=schema,
        ),
    )
    sent = fake.requests[0].body
    assert sent["temperature"] == 0.2
    assert sent["top_p"] == 0.9
    assert sent["max_tokens"] == 64  # a base_url server: the widely supported name
    assert sent["stop"] == ["END"]
    assert sent["seed"] == 7
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "response", "schema": schema},
    }


async def test_429_retry_after_then_success(
    fake: FakeServer, provider: OpenAIProvider, sleep: RecordingSleep
) -> None:
    fake.add(
        openai_error(429, "slow down", **{"retry-after": "7"}),
        Reply(body=openai_completion(text="ok")),
    )
    turn = await provider.complete([Message(role="user", content="hi")])
    assert turn.text == "ok"
    assert len(fake.requests) == 2
    assert sleep.delays == [7.0]


async def test_500_exhaustion_raises_unavailable(
    fake: FakeServer, provider: OpenAIProvider, sleep: RecordingSleep
) -> None:
    fake.add(*(openai_error(500, "boom") for _ in range(3)))
    with pytest.raises(ProviderUnavailable) as info:
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 3  # policy.max_attempts; the SDK itself did not retry
    assert len(sleep.delays) == 2
    message = str(info.value)
    assert "openai" in message and "500" in message and "\n" not in message


async def test_auth_error_is_not_retried(
    fake: FakeServer, provider: OpenAIProvider, sleep: RecordingSleep
) -> None:
    fake.add(openai_error(401, "bad key"))
    with pytest.raises(ProviderAuthError, match=r"openai: HTTP 401: bad key"):
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 1
    assert sleep.delays == []


async def test_bad_request_maps_to_provider_error(
    fake: FakeServer, provider: OpenAIProvider
) -> None:
    fake.add(openai_error(400, "unknown model"))
    with pytest.raises(ProviderError, match="400") as info:
        await provider.complete([Message(role="user", content="hi")])
    assert type(info.value) is ProviderError


async def test_local_server_without_key_uses_placeholder(fake: FakeServer) -> None:
    fake.add(Reply(body=openai_completion(text="hi")))
    p = OpenAIProvider("llama", base_url=fake.url + "/v1")
    try:
        await p.complete([Message(role="user", content="hi")])
    finally:
        await p.aclose()
    assert fake.requests[0].headers["authorization"].startswith("Bearer ")


def test_no_key_and_no_base_url_is_config_error() -> None:
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        OpenAIProvider("gpt-4o-mini")
