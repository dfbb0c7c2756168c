from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from runtime.errors import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import GenerationConfig, Message, ToolSpec
from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.conftest import RecordingSleep
from tests.runtime.providers.fakes import (
    FakeServer,
    Reply,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
)

EXEC = ToolSpec(
    name="exec",
    description="Run a shell command",
    parameters={"type": "object", "properties": {"command": {"type": "string"}}},
)


@pytest.fixture
async def provider(fake: FakeServer, policy: RetryPolicy) -> AsyncIterator[AnthropicProvider]:
    p = AnthropicProvider("claude-fake", api_key="sk-ant-test", base_url=fake.url, retry=policy)
    yield p
    await p.aclose()


async def test_tool_call_round_trip_with_thinking(
    fake: FakeServer, provider: AnthropicProvider
) -> None:
    fake.add(
        Reply(
            body=anthropic_message(
                [
                    {"type": "thinking", "thinking": "I should look.", "signature": "sig-1"},
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "exec",
                        "input": {"command": "uname -a"},
                    },
                ],
                stop_reason="tool_use",
                usage={
                    "input_tokens": 20,
                    "output_tokens": 9,
                    "cache_read_input_tokens": 100,
                    "cache_creation_input_tokens": 5,
                },
            )
        ),
        Reply(body=anthropic_message([{"type": "text", "text": "It is Linux."}])),
    )
    history = [Message(role="user", content="what OS?")]
    first = await provider.complete(history, system="Be brief.", tools=[EXEC])

    assert first.text == "Checking."
    assert first.thought == "I should look."
    assert first.stop_reason == "tool_use"
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("toolu_1", "exec", {"command": "uname -a"})
    ]
    assert (first.usage.input_tokens, first.usage.cached_tokens) == (125, 100)
    assert first.usage.output_tokens == 9

    history += [
        first.to_message(),
        Message(role="tool", content="Linux", tool_call_id="toolu_1", name="exec"),
        Message(role="tool", content="no such", tool_call_id="toolu_x", name="exec", is_error=True),
    ]
    second = await provider.complete(history, system="Be brief.", tools=[EXEC])
    assert second.text == "It is Linux."
    assert second.stop_reason == "end_turn"

    first_req, second_req = (r.body for r in fake.requests)
    assert fake.requests[0].path == "/v1/messages"
    headers = fake.requests[0].headers
    # SDK versions differ in how they send the key (x-api-key or a bearer token).
    assert "sk-ant-test" in (headers.get("x-api-key", ""), headers.get("authorization", "")[7:])
    assert first_req["system"] == "Be brief."
    assert first_req["tools"] == [
        {"name": "exec", "description": "Run a shell command", "input_schema": EXEC.parameters}
    ]
    assert first_req["max_tokens"] == 8192
    assistant, results = second_req["messages"][1], second_req["messages"][2]
    assert assistant == {
        "role": "assistant",
        "content": [
            {"type": "thinking", "thinking": "I should look.", "signature": "sig-1"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "exec", "input": {"command": "uname -a"}},
        ],
    }
    # Both tool results travel in one user turn, the failed one flagged.
    assert results == {
        "role": "user",
        "content": [
            {
                "type": "tool_result",
                "tool_use_id": "toolu_1",
                "content": "Linux",
                "is_error": False,
            },
            {
                "type": "tool_result",
                "tool_use_id": "toolu_x",
                "content": "no such",
                "is_error": True,
            },
        ],
    }


async def test_streaming_text_and_tool_use(fake: FakeServer, provider: AnthropicProvider) -> None:
    message = anthropic_message(
        [
            {"type": "text", "text": "Listing files."},
            {"type": "tool_use", "id": "toolu_9", "name": "exec", "input": {"command": "ls"}},
        ],
        stop_reason="tool_use",
        usage={"input_tokens": 11, "output_tokens": 6},
    )
    fake.add(Reply(sse=anthropic_stream(message)))
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    turn = await provider.complete(
        [Message(role="user", content="ls")], tools=[EXEC], on_text=on_text
    )
    assert len(pieces) == 2 and "".join(pieces) == "Listing files."
    assert turn.text == "Listing files."
    assert [(c.id, c.arguments) for c in turn.tool_calls] == [("toolu_9", {"command": "ls"})]
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (11, 6)
    assert fake.requests[0].body["stream"] is True


async def test_config_maps_to_request(fake: FakeServer, provider: AnthropicProvider) -> None:
    fake.add(Reply(body=anthropic_message([{"type": "text", "text": "{}"}])))
    schema = {"type": "object"}
    await provider.complete(
        [Message(role="user", content="x")],
        config=GenerationConfig(
            temperature=0.1, max_output_tokens=100, stop=["##"], response_schema=schema
        ),
    )
    sent = fake.requests[0].body
    assert (sent["temperature"], sent["max_tokens"], sent["stop_sequences"]) == (0.1, 100, ["##"])
    assert sent["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


async def test_429_retry_after_http_date_then_success(
    fake: FakeServer, provider: AnthropicProvider, sleep: RecordingSleep
) -> None:
    fake.add(
        anthropic_error(429, "rate limited", **{"retry-after": "3"}),
        anthropic_error(429, "rate limited", **{"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}),
        Reply(body=anthropic_message([{"type": "text", "text": "ok"}])),
    )
    turn = await provider.complete([Message(role="user", content="hi")])
    assert turn.text == "ok"
    assert len(fake.requests) == 3
    # A date in the past means "now".
    assert sleep.delays == [3.0, 0.0]


async def test_overloaded_exhaustion(
    fake: FakeServer, provider: AnthropicProvider, sleep: RecordingSleep
) -> None:
    fake.add(*(anthropic_error(529, "Overloaded") for _ in range(3)))
    with pytest.raises(ProviderUnavailable, match=r"anthropic: HTTP 529: Overloaded"):
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 3
    assert len(sleep.delays) == 2


async def test_rate_limit_exhaustion_is_rate_limited(
    fake: FakeServer, provider: AnthropicProvider
) -> None:
    fake.add(*(anthropic_error(429, "slow", **{"retry-after": "1"}) for _ in range(3)))
    with pytest.raises(ProviderRateLimited):
        await provider.complete([Message(role="user", content="hi")])


async def test_auth_error(fake: FakeServer, provider: AnthropicProvider) -> None:
    fake.add(anthropic_error(401, "invalid x-api-key"))
    with pytest.raises(ProviderAuthError, match=r"anthropic: HTTP 401: invalid x-api-key"):
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 1


def test_thinking_blocks_round_trip_verbatim() -> None:
    from runtime.providers.anthropic import to_anthropic_messages

    blocks = [{"type": "redacted_thinking", "data": "opaque"}]
    msgs = to_anthropic_messages(
        [Message(role="assistant", content="hi", thought_signature=json.dumps(blocks))]
    )
    assert msgs[0]["content"][0] == blocks[0]
