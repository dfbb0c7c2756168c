from __future__ import annotations

import pytest

from runtime.errors import ConfigError, ProviderTimeout
from runtime.providers.anthropic import AnthropicProvider
from runtime.providers.base import DEFAULT_IDLE_TIMEOUT, Message
from runtime.providers.gemini import GeminiProvider
from runtime.providers.openai import OpenAIProvider
from runtime.providers.registry import (
    IDLE_TIMEOUT_ENV,
    NO_MODEL_MESSAGE,
    default_model_from_env,
    make_provider,
    parse_model,
    timeouts_from_env,
)
from runtime.providers.retry import RetryPolicy
from runtime.providers.scripted import ScriptedProvider
from tests.runtime.providers.fakes import FakeServer, Reply


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("openai:gpt-4o-mini", ("openai", "gpt-4o-mini")),
        ("anthropic:claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
        ("gemini:gemini-2.5-flash", ("gemini", "gemini-2.5-flash")),
        ("scripted:/tmp/a:b.yaml", ("scripted", "/tmp/a:b.yaml")),
        ("openai:qwen2.5:7b", ("openai", "qwen2.5:7b")),  # Ollama tags keep their colon
    ],
)
def test_parse_model(model: str, expected: tuple[str, str]) -> None:
    assert parse_model(model) == expected


@pytest.mark.parametrize("model", ["", "gpt-4o", "foo:bar", "openai:", ":x"])
def test_bad_model_strings(model: str) -> None:
    with pytest.raises(ConfigError) as info:
        make_provider(model, env={})
    message = str(info.value)
    assert "openai, anthropic, gemini, scripted" in message
    assert "\n" not in message


async def test_make_each_provider() -> None:
    env = {"OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": "a", "GOOGLE_API_KEY": "g"}
    made = [
        make_provider("openai:gpt-4o-mini", env=env),
        make_provider("anthropic:claude-x", env=env),
        make_provider("gemini:gemini-2.5-flash", env=env),
        make_provider("scripted:demo", env={}),
    ]
    try:
        assert [type(p) for p in made] == [
            OpenAIProvider,
            AnthropicProvider,
            GeminiProvider,
            ScriptedProvider,
        ]
        assert [p.name for p in made] == ["openai", "anthropic", "gemini", "scripted"]
        assert made[0].model == "gpt-4o-mini"
        assert made[3].model == "demo"
    finally:
        for p in made:
            await p.aclose()


@pytest.mark.parametrize(
    ("model", "env_var"),
    [
        ("openai:gpt-4o-mini", "OPENAI_API_KEY"),
        ("anthropic:claude-x", "ANTHROPIC_API_KEY"),
        ("gemini:gemini-2.5-flash", "GEMINI_API_KEY"),
    ],
)
def test_missing_key_names_the_env_var(model: str, env_var: str) -> None:
    with pytest.raises(ConfigError, match=env_var):
        make_provider(model, env={})


async def test_openai_base_url_without_key_is_fine() -> None:
    p = make_provider("openai:llama3", env={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1"})
    assert isinstance(p, OpenAIProvider) and p.base_url == "http://127.0.0.1:9/v1"
    await p.aclose()
    q = make_provider("openai:llama3", base_url="http://127.0.0.1:8/v1", env={})
    assert isinstance(q, OpenAIProvider) and q.base_url == "http://127.0.0.1:8/v1"
    await q.aclose()


def test_missing_script_file(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="no such script file"):
        make_provider("scripted:/nonexistent/turns.yaml")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"CORRAL_MODEL": "gemini:gemini-2.5-pro", "OPENAI_API_KEY": "k"}, "gemini:gemini-2.5-pro"),
        ({"OPENAI_API_KEY": "k", "ANTHROPIC_API_KEY": "a"}, "openai:gpt-4o-mini"),
        ({"OPENAI_BASE_URL": "http://localhost:11434/v1"}, "openai:gpt-4o-mini"),
        ({"ANTHROPIC_API_KEY": "a", "GEMINI_API_KEY": "g"}, "anthropic:claude-sonnet-4-5"),
        ({"GEMINI_API_KEY": "g"}, "gemini:gemini-2.5-flash"),
        ({"GOOGLE_API_KEY": "g"}, "gemini:gemini-2.5-flash"),
    ],
)
def test_default_model_from_env(env: dict[str, str], expected: str) -> None:
    assert default_model_from_env(env) == expected


def test_no_model_configured() -> None:
    with pytest.raises(ConfigError) as info:
        default_model_from_env({})
    assert str(info.value) == NO_MODEL_MESSAGE
    assert str(info.value) == (
        "no model configured: set CORRAL_MODEL=provider:model or OPENAI_API_KEY / "
        "ANTHROPIC_API_KEY / GEMINI_API_KEY (or use --model scripted:FILE)"
    )


def test_bad_corral_model_is_reported() -> None:
    with pytest.raises(ConfigError, match="invalid model 'nonsense'"):
        default_model_from_env({"CORRAL_MODEL": "nonsense"})


async def test_idle_timeout_comes_from_the_environment(
    fake: FakeServer, policy: RetryPolicy
) -> None:
    fake.add(*(Reply(sse=[], stall=True) for _ in range(3)))
    env = {"OPENAI_BASE_URL": fake.url + "/v1", IDLE_TIMEOUT_ENV: "0.25"}
    provider = make_provider("openai:gpt-fake", env=env, retry=policy)

    async def ignore(_: str) -> None:
        pass

    try:
        with pytest.raises(ProviderTimeout, match=r"no data for 0\.25s"):
            await provider.complete([Message(role="user", content="hi")], on_text=ignore)
    finally:
        await provider.aclose()
    assert len(fake.requests) == 3


def test_default_timeouts() -> None:
    t = timeouts_from_env({})
    assert (t.connect, t.idle, t.response) == (10.0, DEFAULT_IDLE_TIMEOUT, 600.0)
    assert timeouts_from_env({IDLE_TIMEOUT_ENV: " 7.5 "}).idle == 7.5


@pytest.mark.parametrize("raw", ["0", "-1", "soon", "nan", "inf"])
def test_bad_idle_timeout_is_a_config_error(raw: str) -> None:
    with pytest.raises(ConfigError, match=IDLE_TIMEOUT_ENV):
        make_provider("openai:gpt-fake", env={"OPENAI_API_KEY": "k", IDLE_TIMEOUT_ENV: raw})
