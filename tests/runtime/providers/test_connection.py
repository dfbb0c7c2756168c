"""A server that is not there: every provider says so as ProviderUnavailable, after retrying."""

from __future__ import annotations

import socket

import pytest

from runtime.errors import ProviderUnavailable
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import Message, ModelProvider
from runtime.providers.gemini import GeminiProvider
from runtime.providers.openai import OpenAIProvider
from runtime.providers.retry import RetryPolicy
from tests.runtime.providers.conftest import RecordingSleep


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens here any more


@pytest.mark.parametrize("kind", ["openai", "anthropic", "gemini"])
async def test_connection_refused_is_unavailable(kind: str) -> None:
    sleep = RecordingSleep()
    policy = RetryPolicy(max_attempts=2, sleep=sleep)
    url = closed_port_url()
    provider: ModelProvider
    if kind == "openai":
        provider = OpenAIProvider("m", api_key="k", base_url=url + "/v1", retry=policy)
    elif kind == "anthropic":
        provider = AnthropicProvider("m", api_key="k", base_url=url, retry=policy)
    else:
        provider = GeminiProvider("m", api_key="k", base_url=url, retry=policy)
    try:
        with pytest.raises(ProviderUnavailable, match=f"^{kind}: connection failed"):
            await provider.complete([Message(role="user", content="hi")])
    finally:
        await provider.aclose()
    assert len(sleep.delays) == 1
