"""Tool types and agent= options through the google-genai SDK: honoured (asserting on what the
model received) or refused with 400 naming them."""

from __future__ import annotations

import json
from typing import Any

import httpx
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
from tests.mcp.test_client_http import Served, served
from tests.runtime.api.conftest import ServerThread
from tests.runtime.providers.fakes import FakeServer

__all__ = ["fake", "mode", "served", "srv", "start_server"]

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.mark.parametrize(
    ("tool", "words"),
    [
        ({"type": "google_search"}, "no search backend"),
        ({"type": "computer_use"}, "computer use is not supported"),
        ({"type": "file_search"}, "file search is not supported"),
        ({"type": "google_maps"}, "Google Maps is not supported"),
    ],
)
def test_server_side_tools_with_model_are_400_naming_them(
    srv: ServerThread, fake: FakeServer, mode: str, tool: dict[str, Any], words: str
) -> None:
    text = refused(srv.url, mode, model="openai:gpt-fake", input="hi", tools=[tool])

    assert words in text and tool["type"] in text
    assert fake.requests == []


def test_function_tools_with_model_end_requires_action(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(calls("get_weather", '{"city": "Paris"}'), says("openai", "sunny"))

    first = create(srv.url, mode, model="openai:gpt-fake", input="Weather?", tools=[WEATHER])

    assert first.status == "requires_action"
    call = first.steps[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    sent = last_body(fake)["tools"]
    assert sent[0]["function"]["name"] == "get_weather"
    second = create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        previous_interaction_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_result", "call_id": call.id, "name": call.name, "result": "sun"}],
    )
    assert second.status == "completed" and second.output_text == "sunny"
    tool_msg = last_body(fake)["messages"][-1]
    assert tool_msg == {"role": "tool", "tool_call_id": call.id, "content": "sun"}


# -- agent= -------------------------------------------------------------------------------


def _agent(url: str, name: str, tools: list[str]) -> None:
    spec = {
        "name": name,
        "model": "openai:gpt-fake",
        "instructions": "Test agent.",
        "tools": tools,
        "limits": {"max_steps": 5, "max_tool_calls": 5, "timeout": 120},
    }
    httpx.post(f"{url}/v1beta/agents", json=spec, timeout=30).raise_for_status()


@pytest.mark.docker
def test_agent_honours_system_instruction_and_function_tools(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    _agent(srv.url, "helper", ["exec"])
    fake.add(calls("get_weather", '{"city": "Paris"}'), says("openai", "It is sunny."))

    first = create(
        srv.url,
        mode,
        agent="helper",
        input="Weather in Paris?",
        system_instruction="Answer in French.",
        tools=[WEATHER, {"type": "code_execution"}],
        agent_config={"type": "dynamic", "max_steps": 4},
    )

    assert first.status == "requires_action", first
    call = first.steps[-1]
    assert call.type == "function_call" and call.name == "get_weather"
    body = last_body(fake)
    system = body["messages"][0]
    assert system["role"] == "system"
    assert system["content"].startswith("Test agent.")
    assert system["content"].endswith("Answer in French.")
    names = {t["function"]["name"] for t in body["tools"]}
    assert {"exec", "get_weather"} <= names

    second = create(
        srv.url,
        mode,
        agent="helper",
        previous_interaction_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_result", "call_id": call.id, "name": call.name, "result": "sun"}],
    )
    assert second.status == "completed", second
    assert second.output_text == "It is sunny."
    tool_msg = last_body(fake)["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["tool_call_id"] == call.id


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"tools": [{"type": "google_search"}]}, "not supported with agent="),
        ({"tools": [{"type": "code_execution"}]}, "no exec tool"),
        (
            {"tools": [{"type": "mcp_server", "name": "m", "url": "https://x.org/mcp"}]},
            "network is 'none'",
        ),
        (
            {"tools": [{"type": "mcp_server", "name": "m", "command": "python3"}]},
            "needs a url",
        ),
        ({"tools": [{"type": "mcp_server", "name": "bad name!", "url": "https://x.org"}]}, "name"),
        ({"tools": [{"type": "url_context"}]}, "url_context"),
        ({"agent_config": {"type": "deep-research"}}, "agent_config"),
        ({"agent_config": {"type": "dynamic", "frobnicate": 1}}, "frobnicate"),
        ({"response_modalities": ["audio"]}, "response_modalities"),
        (
            {"response_format": {"type": "text", "mime_type": "application/json", "schema": {}}},
            "response_format",
        ),
    ],
)
def test_agent_refusals_name_the_field(
    srv: ServerThread, fake: FakeServer, mode: str, kwargs: dict[str, Any], words: str
) -> None:
    _agent(srv.url, "reader", ["files"])

    text = refused(srv.url, mode, agent="reader", input="hi", **kwargs)

    assert words in text
    assert fake.requests == []


@pytest.fixture
def local_egress(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets agents reach a server on 127.0.0.1 (set before the server reads its settings)."""
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW_PRIVATE", "127.0.0.1")


@pytest.mark.docker
def test_agent_uses_the_requests_mcp_server(
    local_egress: None,
    srv: ServerThread,
    fake: FakeServer,
    served: Served,
    mode: str,
) -> None:
    spec = {
        "name": "mcp-user",
        "model": "openai:gpt-fake",
        "instructions": "Test agent.",
        "tools": ["files"],
        "network": {"mode": "allowlist", "allow": ["127.0.0.1"]},
        "limits": {"max_steps": 5, "max_tool_calls": 5, "timeout": 120},
    }
    httpx.post(f"{srv.url}/v1beta/agents", json=spec, timeout=30).raise_for_status()
    fake.add(calls("kb__echo", '{"text": "hi"}'), says("openai", "The server said hi."))

    done = create(
        srv.url,
        mode,
        agent="mcp-user",
        input="Ask the server.",
        tools=[
            {
                "type": "mcp_server",
                "name": "kb",
                "url": served.url,
                "allowed_tools": [{"tools": ["echo"]}],
            }
        ],
    )

    assert done.status == "completed", done
    first = fake.requests[0].body
    assert isinstance(first, dict)
    offered = {t["function"]["name"] for t in first["tools"]}
    assert "kb__echo" in offered and "kb__add" not in offered
    assert "echo: hi" in json.dumps(last_body(fake)["messages"])
    kinds = [type(s).__name__ for s in done.steps]
    assert "MCPServerToolCallStep" in kinds and "MCPServerToolResultStep" in kinds


def test_model_uses_the_requests_mcp_server(
    local_egress: None, srv: ServerThread, fake: FakeServer, served: Served, mode: str
) -> None:
    fake.add(calls("kb__add", '{"a": 40, "b": 2}'), says("openai", "It is 42."))

    done = create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="Add them.",
        tools=[{"type": "mcp_server", "name": "kb", "url": served.url}],
    )

    assert done.status == "completed", done
    assert done.output_text == "It is 42."
    tool_msg = last_body(fake)["messages"][-1]
    assert tool_msg["role"] == "tool" and tool_msg["content"] == "42"
    kinds = [type(s).__name__ for s in done.steps]
    assert "MCPServerToolCallStep" in kinds and "MCPServerToolResultStep" in kinds


def test_model_mcp_server_on_loopback_needs_the_operators_opt_in(
    srv: ServerThread, fake: FakeServer, served: Served, mode: str
) -> None:
    done = create(
        srv.url,
        mode,
        model="openai:gpt-fake",
        input="Add them.",
        tools=[{"type": "mcp_server", "name": "kb", "url": served.url}],
    )

    assert done.status == "failed"
    assert "loopback" in json.dumps([e.model_dump() for e in done.errors or []])
    assert fake.requests == [] and not served.authorization
