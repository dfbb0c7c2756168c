from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from runtime.errors import ProviderAuthError, ProviderRateLimited, ProviderUnavailable
from runtime.providers.base import GenerationConfig, Message, ToolSpec
from runtime.providers.gemini import GeminiProvider
from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.conftest import RecordingSleep
from tests.runtime.providers.fakes import FakeServer, Reply, gemini_error, gemini_response

EXEC = ToolSpec(
    name="exec",
    description="Run a shell command",
    parameters={
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
)
SIG_CALL = base64.b64encode(b"signature-of-call").decode()
SIG_TEXT = base64.b64encode(b"signature-of-text").decode()


@pytest.fixture
async def provider(fake: FakeServer, policy: RetryPolicy) -> AsyncIterator[GeminiProvider]:
    p = GeminiProvider("gemini-fake", api_key="g-test", base_url=fake.url, retry=policy)
    yield p
    await p.aclose()


async def test_tool_call_round_trip_without_ids(fake: FakeServer, provider: GeminiProvider) -> None:
    fake.add(
        Reply(
            body=gemini_response(
                [
                    {"text": "Let me think.", "thought": True},
                    {
                        "functionCall": {"name": "exec", "args": {"command": "uname -a"}},
                        "thoughtSignature": SIG_CALL,
                    },
                    {"functionCall": {"name": "exec", "args": {"command": "df -h"}}},
                ],
                usage={
                    "promptTokenCount": 40,
                    "candidatesTokenCount": 8,
                    "thoughtsTokenCount": 12,
                    "cachedContentTokenCount": 30,
                    "totalTokenCount": 60,
                },
            )
        ),
        Reply(
            body=gemini_response([{"text": "Linux, plenty of disk.", "thoughtSignature": SIG_TEXT}])
        ),
    )
    history = [Message(role="user", content="what OS and disk?")]
    first = await provider.complete(history, system="Be brief.", tools=[EXEC])

    assert first.stop_reason == "tool_use"
    assert first.thought == "Let me think."
    assert first.text == ""
    ids = [c.id for c in first.tool_calls]
    assert all(ids) and len(set(ids)) == 2  # synthesized: Gemini sent none
    assert [c.arguments for c in first.tool_calls] == [
        {"command": "uname -a"},
        {"command": "df -h"},
    ]
    assert first.tool_calls[0].thought_signature == SIG_CALL
    usage = first.usage
    assert (usage.input_tokens, usage.output_tokens, usage.thought_tokens, usage.cached_tokens) == (
        40,
        8,
        12,
        30,
    )

    history += [
        first.to_message(),
        # The loop may leave `name` unset: the provider finds it from the call id.
        Message(role="tool", content="Linux x86_64", tool_call_id=ids[0]),
        Message(
            role="tool",
            content="permission denied",
            tool_call_id=ids[1],
            name="exec",
            is_error=True,
        ),
    ]
    second = await provider.complete(history, system="Be brief.", tools=[EXEC])
    assert second.text == "Linux, plenty of disk."
    assert second.stop_reason == "end_turn"
    assert second.thought_signature == SIG_TEXT

    first_req, second_req = (r.body for r in fake.requests)
    assert fake.requests[0].path == "/v1beta/models/gemini-fake:generateContent"
    assert fake.requests[0].headers["x-goog-api-key"] == "g-test"
    assert first_req["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    (declaration,) = first_req["tools"][0]["functionDeclarations"]
    assert (declaration["name"], declaration["description"]) == ("exec", "Run a shell command")
    # The SDK spells this field snake_case on the wire (the API accepts both spellings).
    schema = declaration.get("parametersJsonSchema", declaration.get("parameters_json_schema"))
    assert schema == EXEC.parameters
    model_turn, results = second_req["contents"][1], second_req["contents"][2]
    assert model_turn["role"] == "model"
    calls = [p for p in model_turn["parts"] if "functionCall" in p]
    assert calls[0] == {
        "functionCall": {"name": "exec", "args": {"command": "uname -a"}},
        "thoughtSignature": SIG_CALL,
    }
    assert "id" not in calls[1]["functionCall"]  # our synthesized ids never reach Gemini
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "exec", "response": {"output": "Linux x86_64"}}},
            {"functionResponse": {"name": "exec", "response": {"error": "permission denied"}}},
        ],
    }


async def test_ids_from_gemini_are_kept_and_sent_back(
    fake: FakeServer, provider: GeminiProvider
) -> None:
    fake.add(
        Reply(
            body=gemini_response(
                [{"functionCall": {"id": "fc-7", "name": "exec", "args": {"command": "ls"}}}]
            )
        ),
        Reply(body=gemini_response([{"text": "done"}])),
    )
    first = await provider.complete([Message(role="user", content="ls")], tools=[EXEC])
    assert first.tool_calls[0].id == "fc-7"
    await provider.complete(
        [
            Message(role="user", content="ls"),
            first.to_message(),
            Message(role="tool", content="a b", tool_call_id="fc-7", name="exec"),
        ],
        tools=[EXEC],
    )
    contents = fake.requests[1].body["contents"]
    assert contents[1]["parts"][0]["functionCall"]["id"] == "fc-7"
    assert contents[2]["parts"][0]["functionResponse"]["id"] == "fc-7"


async def test_streaming_text(fake: FakeServer, provider: GeminiProvider) -> None:
    fake.add(
        Reply(
            sse=[
                (None, gemini_response([{"text": "Hello, "}])),
                (
                    None,
                    gemini_response(
                        [{"text": "world."}],
                        usage={"promptTokenCount": 3, "candidatesTokenCount": 4},
                    ),
                ),
            ]
        )
    )
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    turn = await provider.complete([Message(role="user", content="hi")], on_text=on_text)
    assert pieces == ["Hello, ", "world."]
    assert turn.text == "Hello, world."
    assert (turn.usage.input_tokens, turn.usage.output_tokens) == (3, 4)
    assert fake.requests[0].path == "/v1beta/models/gemini-fake:streamGenerateContent?alt=sse"


async def test_config_maps_to_request(fake: FakeServer, provider: GeminiProvider) -> None:
    fake.add(Reply(body=gemini_response([{"text": "{}"}])))
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    await provider.complete(
        [Message(role="user", content="x")],
        config=GenerationConfig(
            temperature=0.3,
            top_p=0.5,
            max_output_tokens=50,
            stop=["Z"],
            seed=3,
            response_schema=schema,
        ),
    )
    gen = fake.requests[0].body["generationConfig"]
    assert gen["temperature"] == 0.3
    assert gen["topP"] == 0.5
    assert gen["maxOutputTokens"] == 50
    assert gen["stopSequences"] == ["Z"]
    assert gen["seed"] == 3
    assert gen["responseMimeType"] == "application/json"
    assert gen["responseJsonSchema"] == schema


async def test_429_retry_after_then_success(
    fake: FakeServer, provider: GeminiProvider, sleep: RecordingSleep
) -> None:
    fake.add(
        gemini_error(429, "quota", "RESOURCE_EXHAUSTED", **{"retry-after": "4"}),
        Reply(body=gemini_response([{"text": "ok"}])),
    )
    turn = await provider.complete([Message(role="user", content="hi")])
    assert turn.text == "ok"
    assert len(fake.requests) == 2
    assert sleep.delays == [4.0]


async def test_429_retry_info_in_body(
    fake: FakeServer, provider: GeminiProvider, sleep: RecordingSleep
) -> None:
    body = {
        "error": {
            "code": 429,
            "message": "quota",
            "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}],
        }
    }
    fake.add(*(Reply(429, body) for _ in range(3)))
    with pytest.raises(ProviderRateLimited, match=r"gemini: HTTP 429: quota"):
        await provider.complete([Message(role="user", content="hi")])
    assert sleep.delays == [9.0, 9.0]


async def test_500_exhaustion(
    fake: FakeServer, provider: GeminiProvider, sleep: RecordingSleep
) -> None:
    fake.add(*(gemini_error(503, "overloaded", "UNAVAILABLE") for _ in range(3)))
    with pytest.raises(ProviderUnavailable, match=r"gemini: HTTP 503: overloaded"):
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 3
    assert len(sleep.delays) == 2


async def test_bad_key_is_auth_error(fake: FakeServer, provider: GeminiProvider) -> None:
    body = {
        "error": {
            "code": 400,
            "message": "API key not valid.",
            "status": "INVALID_ARGUMENT",
            "details": [
                {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID"}
            ],
        }
    }
    fake.add(Reply(400, body))
    with pytest.raises(ProviderAuthError, match="gemini: HTTP 400: API key not valid"):
        await provider.complete([Message(role="user", content="hi")])
    assert len(fake.requests) == 1


async def test_403_is_auth_error(fake: FakeServer, provider: GeminiProvider) -> None:
    fake.add(gemini_error(403, "denied", "PERMISSION_DENIED"))
    with pytest.raises(ProviderAuthError):
        await provider.complete([Message(role="user", content="hi")])
