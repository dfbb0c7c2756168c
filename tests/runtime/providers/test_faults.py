"""A provider that misbehaves on the wire: stalls, garbage, cut-short and empty replies.

Every provider (OpenAI-compatible, Anthropic, Gemini) is driven through its official SDK
against the local fake server. A stalled or cut-short reply is transient: it is retried (per
the retry policy) and succeeds when the next attempt does; garbage is not retried. Every
failure is a `ProviderTimeout` or `ProviderProtocolError` with a one-line message — never an
SDK exception, never an empty "successful" turn.

Timeouts are small (the idle timeout is what a stall waits for); nothing here asserts on
elapsed time, and the fake server releases stalled replies when it stops.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from runtime.errors import ProviderError, ProviderProtocolError, ProviderTimeout
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import Message, ModelProvider, Timeouts
from runtime.providers.gemini import GeminiProvider
from runtime.providers.openai import OpenAIProvider
from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.conftest import RecordingSleep
from tests.runtime.providers.fakes import (
    FakeServer,
    Reply,
    anthropic_message,
    anthropic_stream,
    gemini_response,
    openai_chunk,
    openai_completion,
    openai_sse,
)

KINDS = ["openai", "anthropic", "gemini"]
IDLE = 0.5
"""Seconds without a byte before an attempt fails; small so stalls end quickly."""

Events = list[tuple[str | None, Any]]


def make(kind: str, url: str, policy: RetryPolicy, *, response: float = 30.0) -> ModelProvider:
    timeouts = Timeouts(connect=10.0, idle=IDLE, response=response)
    if kind == "openai":
        return OpenAIProvider(
            "gpt-fake", api_key="k", base_url=url + "/v1", retry=policy, timeouts=timeouts
        )
    if kind == "anthropic":
        return AnthropicProvider(
            "claude-fake", api_key="k", base_url=url, retry=policy, timeouts=timeouts
        )
    return GeminiProvider("gemini-fake", api_key="k", base_url=url, retry=policy, timeouts=timeouts)


def stream_of(kind: str, text: str) -> Events:
    """A whole, well-formed stream answering `text`."""
    if kind == "openai":
        return openai_sse(
            [
                openai_chunk({"role": "assistant", "content": text}),
                openai_chunk({}, finish_reason="stop"),
                openai_chunk(None, usage=(3, 2)),
            ]
        )
    if kind == "anthropic":
        return anthropic_stream(anthropic_message([{"type": "text", "text": text}]))
    return [
        (None, gemini_response([{"text": text[:2]}], finish_reason=None)),
        (None, gemini_response([{"text": text[2:]}])),
    ]


def before_text(kind: str) -> Events:
    """The opening of a stream: what a provider sends before any visible text."""
    if kind == "openai":
        return [(None, openai_chunk({"role": "assistant", "content": ""}))]
    if kind == "anthropic":
        return stream_of(kind, "hello")[:1]  # message_start
    return []  # Gemini's first chunk already carries text


def after_text(kind: str) -> Events:
    """A stream cut after some visible text ("he"), before its final event."""
    if kind == "openai":
        return [(None, openai_chunk({"role": "assistant", "content": "he"}))]
    if kind == "anthropic":
        return stream_of(kind, "hello")[:3]  # message_start, block start, first delta
    return stream_of(kind, "hello")[:1]


def complete_body(kind: str, text: str) -> Any:
    if kind == "openai":
        return openai_completion(text=text)
    if kind == "anthropic":
        return anthropic_message([{"type": "text", "text": text}])
    return gemini_response([{"text": text}])


def malformed(kind: str) -> Events:
    """An event whose data is not JSON, named as the provider names its first event."""
    name = "message_start" if kind == "anthropic" else None
    return [(name, '{"id": "x", "choices": [')]


class Streamed:
    """An `on_text` callback that keeps what it was given."""

    def __init__(self) -> None:
        self.pieces: list[str] = []

    async def __call__(self, text: str) -> None:
        self.pieces.append(text)


@pytest.fixture(params=KINDS)
async def provider(
    request: pytest.FixtureRequest, fake: FakeServer, policy: RetryPolicy
) -> AsyncIterator[tuple[str, ModelProvider]]:
    kind: str = request.param
    p = make(kind, fake.url, policy)
    yield kind, p
    await p.aclose()


HI = [Message(role="user", content="hi")]


def assert_one_line(message: str, kind: str) -> None:
    assert message.startswith(f"{kind}: ")
    assert "\n" not in message and len(message) <= 500
    assert "\ufffd" not in message and "Traceback" not in message


# --- stalls ------------------------------------------------------------------------------


async def test_stall_then_success_on_retry(
    fake: FakeServer, provider: tuple[str, ModelProvider], sleep: RecordingSleep
) -> None:
    kind, p = provider
    fake.add(Reply(sse=before_text(kind), stall=True), Reply(sse=stream_of(kind, "hello")))
    out = Streamed()

    turn = await p.complete(HI, on_text=out)

    assert turn.text == "hello"
    assert "".join(out.pieces) == "hello"
    assert turn.stop_reason == "end_turn"
    assert len(fake.requests) == 2
    assert len(sleep.delays) == 1


async def test_stall_forever_is_provider_timeout_after_retries(
    fake: FakeServer, provider: tuple[str, ModelProvider], sleep: RecordingSleep
) -> None:
    kind, p = provider
    fake.add(*(Reply(sse=before_text(kind), stall=True) for _ in range(3)))

    with pytest.raises(ProviderTimeout) as err:
        await p.complete(HI, on_text=Streamed())

    assert err.value.code == "provider_timeout"
    assert "after 3 attempts" in err.value.message
    assert f"{IDLE:g}s" in err.value.message
    assert_one_line(err.value.message, kind)
    assert len(fake.requests) == 3
    assert len(sleep.delays) == 2


async def test_stall_after_text_is_not_retried(
    fake: FakeServer, provider: tuple[str, ModelProvider]
) -> None:
    """Text already reached the caller: a retry would repeat it, so the stall is final."""
    kind, p = provider
    fake.add(Reply(sse=after_text(kind), stall=True), Reply(sse=stream_of(kind, "hello")))
    out = Streamed()

    with pytest.raises(ProviderTimeout):
        await p.complete(HI, on_text=out)

    assert "".join(out.pieces) == "he"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("kind", KINDS)
async def test_non_streaming_stall_is_provider_timeout(
    kind: str, fake: FakeServer, policy: RetryPolicy
) -> None:
    """Without streaming the response timeout applies (a whole answer may take minutes)."""
    p = make(kind, fake.url, policy, response=IDLE)
    fake.add(Reply(raw=b"", stall=True), Reply(body=complete_body(kind, "late but fine")))
    try:
        turn = await p.complete(HI)
    finally:
        await p.aclose()
    assert turn.text == "late but fine"
    assert len(fake.requests) == 2


# --- garbage -----------------------------------------------------------------------------

GARBAGE = b"data: \xff\xfe\x00\x81\xc3(garbage\n\n"


@pytest.mark.parametrize("streaming", [True, False])
async def test_non_utf8_bytes_are_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider], streaming: bool
) -> None:
    kind, p = provider
    content_type = "text/event-stream" if streaming else "application/json"
    fake.add(Reply(raw=GARBAGE, content_type=content_type))

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI, on_text=Streamed() if streaming else None)

    assert err.value.code == "provider_protocol"
    assert_one_line(err.value.message, kind)
    assert len(fake.requests) == 1  # garbage is not retried: the next reply is no better


async def test_malformed_json_in_a_stream_is_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider]
) -> None:
    kind, p = provider
    fake.add(Reply(sse=malformed(kind)))

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI, on_text=Streamed())

    assert_one_line(err.value.message, kind)
    assert len(fake.requests) == 1


async def test_malformed_json_body_is_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider]
) -> None:
    kind, p = provider
    fake.add(Reply(raw=b'{"id": "x", "choices": ['))

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI)

    assert_one_line(err.value.message, kind)


@pytest.mark.parametrize("body", [{"hello": "world"}, ["not", "an", "object"]])
async def test_json_of_the_wrong_shape_is_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider], body: Any
) -> None:
    kind, p = provider
    # Gemini's SDK reads anything without candidates as an empty reply, which is retried.
    fake.add(*(Reply(body=body) for _ in range(3)))

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI)

    assert_one_line(err.value.message, kind)


# --- cut short and empty -----------------------------------------------------------------


@pytest.mark.parametrize("cut", [True, False], ids=["connection-dropped", "ended-cleanly"])
async def test_truncated_before_text_is_retried(
    fake: FakeServer, provider: tuple[str, ModelProvider], cut: bool
) -> None:
    kind, p = provider
    fake.add(Reply(sse=before_text(kind), cut=cut), Reply(sse=stream_of(kind, "hello")))

    turn = await p.complete(HI, on_text=Streamed())

    assert turn.text == "hello"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("cut", [True, False], ids=["connection-dropped", "ended-cleanly"])
async def test_truncated_after_text_is_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider], cut: bool
) -> None:
    kind, p = provider
    fake.add(Reply(sse=after_text(kind), cut=cut), Reply(sse=stream_of(kind, "hello")))
    out = Streamed()

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI, on_text=out)

    assert err.value.code == "provider_protocol"
    assert "ended before" in err.value.message
    assert_one_line(err.value.message, kind)
    assert "".join(out.pieces) == "he"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("streaming", [True, False])
async def test_empty_200_is_retried_then_a_protocol_error(
    fake: FakeServer, provider: tuple[str, ModelProvider], streaming: bool, sleep: RecordingSleep
) -> None:
    kind, p = provider
    content_type = "text/event-stream" if streaming else "application/json"
    fake.add(*(Reply(raw=b"", content_type=content_type) for _ in range(3)))

    with pytest.raises(ProviderProtocolError) as err:
        await p.complete(HI, on_text=Streamed() if streaming else None)

    assert "empty" in err.value.message
    assert "after 3 attempts" in err.value.message
    assert_one_line(err.value.message, kind)
    assert len(fake.requests) == 3


@pytest.mark.parametrize("streaming", [True, False])
async def test_empty_200_then_success(
    fake: FakeServer, provider: tuple[str, ModelProvider], streaming: bool
) -> None:
    kind, p = provider
    content_type = "text/event-stream" if streaming else "application/json"
    good = (
        Reply(sse=stream_of(kind, "hello"))
        if streaming
        else Reply(body=complete_body(kind, "hello"))
    )
    fake.add(Reply(raw=b"", content_type=content_type), good)

    turn = await p.complete(HI, on_text=Streamed() if streaming else None)

    assert turn.text == "hello"
    assert len(fake.requests) == 2


# --- errors inside a 200 stream ----------------------------------------------------------


def anthropic_error_event(kind: str, message: str) -> tuple[str | None, Any]:
    return ("error", {"type": "error", "error": {"type": kind, "message": message}})


async def test_anthropic_overloaded_event_in_the_stream_is_retried(
    fake: FakeServer, policy: RetryPolicy
) -> None:
    """Anthropic reports overload mid-stream as an `error` event inside a 200 response."""
    p = make("anthropic", fake.url, policy)
    opening = before_text("anthropic")
    fake.add(
        Reply(sse=[*opening, anthropic_error_event("overloaded_error", "Overloaded")]),
        Reply(sse=stream_of("anthropic", "hello")),
    )
    try:
        turn = await p.complete(HI, on_text=Streamed())
    finally:
        await p.aclose()
    assert turn.text == "hello"
    assert len(fake.requests) == 2


async def test_anthropic_invalid_request_event_is_not_retried(
    fake: FakeServer, policy: RetryPolicy
) -> None:
    p = make("anthropic", fake.url, policy)
    fake.add(Reply(sse=[anthropic_error_event("invalid_request_error", "bad tools")]))
    try:
        with pytest.raises(ProviderError) as err:
            await p.complete(HI, on_text=Streamed())
    finally:
        await p.aclose()
    assert type(err.value) is ProviderError
    assert "bad tools" in err.value.message
    assert len(fake.requests) == 1
