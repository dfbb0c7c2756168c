"""`generation_config`, `response_format`, `response_modalities`, `labels` and the fields Corral
refuses, through the google-genai SDK (sync and async), asserting on what reached the model."""

from __future__ import annotations

from typing import Any

import pytest

from tests.compat.recording import (
    calls,
    create,
    fake,
    last_body,
    mode,
    refused,
    says,
    srv,
    start_server,
)
from tests.runtime.api.conftest import ServerThread
from tests.runtime.providers.fakes import FakeServer

__all__ = ["fake", "mode", "srv", "start_server"]
# The SDK marks top_p and image_config deprecated; the server still honours / refuses them.
pytestmark = pytest.mark.filterwarnings("ignore:.*DEPRECATED:DeprecationWarning")

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK = {"type": "function", "name": "get_time", "description": "Time"}


def test_sampling_settings_and_system_reach_openai(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("openai", "ok"))

    r = create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="hi",
        system_instruction="Answer in French.",
        generation_config={
            "temperature": 0.3,
            "top_p": 0.9,
            "seed": 7,
            "max_output_tokens": 99,
            "stop_sequences": ["END"],
            "thinking_level": "low",
        },
    )

    assert r.status == "completed"
    body = last_body(fake)
    assert body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert body["temperature"] == 0.3 and body["top_p"] == 0.9 and body["seed"] == 7
    assert body["max_tokens"] == 99 and body["stop"] == ["END"]
    assert body["reasoning_effort"] == "low"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("any", "required"),
        ("validated", "auto"),
        (
            {"allowed_tools": {"mode": "any", "tools": ["get_weather"]}},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_reaches_openai(
    srv: ServerThread, fake: FakeServer, mode: str, choice: Any, expected: Any
) -> None:
    fake.add(says("openai", "ok"))

    create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="hi",
        tools=[WEATHER, CLOCK],
        generation_config={"tool_choice": choice},
    )

    body = last_body(fake)
    assert body["tool_choice"] == expected
    names = [t["function"]["name"] for t in body["tools"]]
    assert names == (["get_weather"] if isinstance(choice, dict) else ["get_weather", "get_time"])


def test_tool_choice_none_never_ends_requires_action(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(calls("get_weather", '{"city": "Paris"}'))  # a model that calls anyway

    r = create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="hi",
        tools=[WEATHER],
        generation_config={"tool_choice": "none"},
    )

    assert last_body(fake)["tool_choice"] == "none"
    assert r.status == "completed"
    assert all(s.type != "function_call" for s in r.steps or [])


def test_tool_choice_and_thinking_reach_anthropic(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("anthropic", "ok"))

    create(
        srv.url,
        mode,
        model="anthropic:claude-fake",
        input="hi",
        tools=[WEATHER],
        generation_config={"tool_choice": "any", "thinking_level": "medium"},
    )

    body = last_body(fake)
    assert body["tool_choice"] == {"type": "any"}
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 8192}
    assert body["max_tokens"] > 8192


def test_tool_choice_and_thinking_reach_gemini(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("gemini", "ok"))

    create(
        srv.url,
        mode,
        model="gemini:gemini-fake",
        input="hi",
        tools=[WEATHER],
        generation_config={"tool_choice": "validated", "thinking_level": "high"},
    )

    body = last_body(fake)
    config = body["toolConfig"]["functionCallingConfig"]
    assert config["mode"] == "VALIDATED"
    thinking = body["generationConfig"]["thinkingConfig"]
    assert "HIGH" in thinking.values()


def test_response_format_schema_reaches_openai(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("openai", '{"n": 1}'))
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}

    create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="hi",
        response_format={"type": "text", "mime_type": "application/json", "schema": schema},
    )

    fmt = last_body(fake)["response_format"]
    assert fmt == {"type": "json_schema", "json_schema": {"name": "response", "schema": schema}}


def test_response_mime_type_json_is_json_mode(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(says("openai", "{}"))

    create(
        srv.url, mode, model="openai:gpt-fake", input="hi", response_mime_type="application/json"
    )

    assert last_body(fake)["response_format"] == {"type": "json_object"}


def test_labels_are_stored_and_echoed(srv: ServerThread, fake: FakeServer, mode: str) -> None:
    fake.add(says("openai", "ok"))

    r = create(srv.url, mode, model="openai:gpt-fake", input="hi", labels={"team": "search"})

    assert r.labels == {"team": "search"}


def test_text_response_modality_is_accepted(srv: ServerThread, fake: FakeServer, mode: str) -> None:
    fake.add(says("openai", "ok"))

    r = create(srv.url, mode, model="openai:gpt-fake", input="hi", response_modalities=["text"])

    assert r.status == "completed"


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"response_modalities": ["image"]}, "response_modalities"),
        ({"response_format": {"type": "image"}}, "response_format"),
        ({"response_mime_type": "image/png"}, "response_mime_type"),
        ({"generation_config": {"temperature": 5}}, "generation_config.temperature"),
        ({"generation_config": {"thinking_level": "huge"}}, "generation_config.thinking_level"),
        ({"generation_config": {"tool_choice": "sometimes"}}, "generation_config.tool_choice"),
        (
            {"generation_config": {"tool_choice": {"allowed_tools": {"tools": ["nope"]}}}},
            "no tool named 'nope'",
        ),
        ({"generation_config": {"image_config": {"aspect_ratio": "1:1"}}}, "image_config"),
        ({"generation_config": {"speech_config": {"voice": "x"}}}, "speech_config"),
        (
            {"safety_settings": [{"type": "hate_speech", "threshold": "block_only_high"}]},
            "safety_settings",
        ),
        ({"service_tier": "flex"}, "service_tier"),
        ({"cached_content": "cachedContents/1"}, "cached_content"),
        ({"continuation_token": "t"}, "continuation_token"),
        ({"environment": "env-1"}, "environment"),
        ({"extra_body": {"frobnicate": 1}}, "frobnicate"),
    ],
)
def test_what_cannot_be_honoured_is_400_naming_it(
    srv: ServerThread, fake: FakeServer, mode: str, kwargs: dict[str, Any], words: str
) -> None:
    text = refused(srv.url, mode, model="openai:gpt-fake", input="hi", tools=[WEATHER], **kwargs)

    assert words in text
    assert fake.requests == []
