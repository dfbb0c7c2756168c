"""A live `corral serve` whose providers talk to a local fake that records every request, and
the google-genai SDK (sync or async) pointed at it: tests assert on what the model received.

Import the fixtures into a test module (`from tests.compat.recording import *` names them in
`__all__`) rather than through a conftest, so other compat suites keep their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from google import genai

from runtime.providers.base import ModelProvider, Timeouts
from runtime.providers.registry import make_provider
from runtime.providers.retry import RetryPolicy
from tests.runtime.api.conftest import ServerThread, sdk, start_server
from tests.runtime.providers.fakes import (
    FakeServer,
    Reply,
    anthropic_message,
    anthropic_stream,
    gemini_response,
    openai_chunk,
    openai_sse,
)

__all__ = ["fake", "mode", "srv", "start_server"]


async def _no_wait(_: float) -> None:
    pass


@pytest.fixture
def fake() -> Iterator[FakeServer]:
    server = FakeServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], fake: FakeServer) -> ServerThread:
    """The server, its provider factory pointed at `fake` (openai:, anthropic:, gemini:)."""
    server = start_server()

    def factory(model: str, **_: Any) -> ModelProvider:
        kind = model.partition(":")[0]
        if kind not in ("openai", "anthropic", "gemini"):
            return make_provider(model)
        return make_provider(
            model,
            api_key="k",
            base_url=fake.url + "/v1" if kind == "openai" else fake.url,
            env={},
            retry=RetryPolicy(max_attempts=1, sleep=_no_wait),
            timeouts=Timeouts(connect=10.0, idle=30.0, response=30.0),
        )

    app: Any = server.server.config.app
    app.state.corral.ctl.runner.provider_factory = factory
    return server


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def create(url: str, mode: str, **kwargs: Any) -> Any:
    """`client.interactions.create(**kwargs)` with the sync or the async client."""
    client = sdk(url)
    if mode == "sync":
        return client.interactions.create(**kwargs)
    return asyncio.run(_acreate(client, kwargs))


async def _acreate(client: genai.Client, kwargs: dict[str, Any]) -> Any:
    return await client.aio.interactions.create(**kwargs)


def says(kind: str, text: str) -> Reply:
    """A streamed answer `text` in provider `kind`'s protocol."""
    if kind == "anthropic":
        msg = anthropic_message([{"type": "text", "text": text}])
        return Reply(sse=anthropic_stream(msg))
    if kind == "gemini":
        return Reply(sse=[(None, gemini_response([{"text": text}]))])
    return Reply(
        sse=openai_sse(
            [
                openai_chunk({"role": "assistant", "content": text}),
                openai_chunk({}, finish_reason="stop"),
                openai_chunk(None, usage=(10, 5)),
            ]
        )
    )


def calls(name: str, arguments: str, call_id: str = "call_1") -> Reply:
    """An OpenAI streamed answer that calls function `name` with JSON `arguments`."""
    delta = {
        "role": "assistant",
        "tool_calls": [
            {
                "index": 0,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": arguments},
            }
        ],
    }
    return Reply(
        sse=openai_sse(
            [
                openai_chunk(delta),
                openai_chunk({}, finish_reason="tool_calls"),
                openai_chunk(None, usage=(10, 5)),
            ]
        )
    )


def last_body(fake: FakeServer) -> dict[str, Any]:
    body = fake.requests[-1].body
    assert isinstance(body, dict), body
    return body


def refused(url: str, mode: str, **kwargs: Any) -> str:
    """The create is refused with HTTP 400; returns the error's text (the exception class the
    SDK picks depends on the error body's shape, so only the status and message are checked)."""
    try:
        create(url, mode, **kwargs)
    except Exception as exc:  # the SDK's error classes
        text = f"{exc} {getattr(exc, 'body', '')}"
        assert "400" in text, text
        return text
    raise AssertionError("the create was not refused")
