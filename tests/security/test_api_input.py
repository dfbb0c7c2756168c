"""Hostile input to the HTTP API: every field is validated with ranges; bad input is a 4xx in
the error shape naming the field, never a 500, and never a run that fails later."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from runtime.agents.spec import AgentSpec
from runtime.api.config import ApiConfig
from runtime.errors import AgentSpecError
from sandbox.spec import SandboxSpec
from tests.runtime.api.conftest import ServerThread, script, start_server

__all__ = ["script", "start_server"]  # fixtures shared with tests/runtime/api


@pytest.fixture
def srv(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(ApiConfig(allow_scripted=True))


def post_raw(url: str, text: str) -> httpx.Response:
    """JSON as the client wrote it (NaN and Infinity included)."""
    return httpx.post(url, content=text, headers={"content-type": "application/json"}, timeout=30)


def assert_4xx_naming(r: httpx.Response, field: str) -> None:
    assert 400 <= r.status_code < 500, r.text
    err = r.json()["error"]
    assert set(err) >= {"code", "message", "status"} and err["code"] == r.status_code
    assert field in err["message"], err


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ('{"max_steps": 5000}', "max_steps"),
        ('{"max_steps": 0}', "max_steps"),
        ('{"timeout": -1}', "timeout"),
        ('{"timeout": NaN}', "timeout"),
        ('{"timeout": Infinity}', "timeout"),
        ('{"max_tool_calls": -3}', "max_tool_calls"),
        ('{"max_total_tokens": 1e30}', "max_total_tokens"),
        ('{"model": "nosuch:thing"}', "model"),
        ('"not an object"', "agent_config"),
    ],
)
def test_bad_agent_config_is_400(
    srv: ServerThread, script: Callable[..., str], config: str, field: str
) -> None:
    text = f'{{"agent": "default", "input": "go", "background": true, "agent_config": {config}}}'
    r = post_raw(f"{srv.url}/v1beta/interactions", text)
    assert r.status_code == 400, r.text
    assert_4xx_naming(r, field)


@pytest.mark.parametrize("model", ["nosuch:thing", "NOSUCH:thing", "nosuch", ":x", "openai:"])
def test_unknown_model_is_400_at_create(srv: ServerThread, model: str) -> None:
    r = httpx.post(f"{srv.url}/v1beta/interactions", json={"model": model, "input": "x"})
    assert r.status_code == 400, r.text
    assert_4xx_naming(r, "model")
    spec = {"name": "m", "model": model}
    r = httpx.post(f"{srv.url}/v1beta/agents", json=spec)
    assert r.status_code == 400, r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"env": {"A": "x\x00y"}}, "env"),
        ({"env": {"A\x00B": "x"}}, "env"),
        ({"env": {"A=B": "x"}}, "env"),
        ({"env": {"": "x"}}, "env"),
        ({"memory": "lots"}, "memory"),
        ({"memory": -5}, "memory"),
        ({"memory": "1e400"}, "memory"),
        ({"cpus": "NaN"}, "cpus"),
        ({"cpus": 1000}, "cpus"),
        ({"disk": "0"}, "disk"),
        ({"pids": 1}, "pids"),
        ({"ttl": -1}, "ttl"),
        ({"image": "corral/base\x00"}, "image"),
        ({"allowlist": ["ok.example", "bad domain"], "network": "allowlist"}, "allowlist"),
        ({"network": "allowlist"}, "allowlist"),
    ],
)
def test_bad_sandbox_body_is_400(srv: ServerThread, body: dict[str, Any], field: str) -> None:
    r = httpx.post(f"{srv.url}/v1beta/sandboxes", json=body, timeout=60)
    assert r.status_code == 400, r.text
    assert_4xx_naming(r, field)


def test_bad_exec_body_is_400_before_the_sandbox_is_looked_up(srv: ServerThread) -> None:
    url = f"{srv.url}/v1beta/sandboxes/sbx_nope/exec"
    for body, field in (
        ({"command": "true", "env": {"A": "\x00"}}, "env"),
        ({"command": "echo \x00"}, "command"),
        ({"command": ["echo", "a\x00"]}, "command"),
        ({"command": "true", "cwd": "/tmp\x00"}, "cwd"),
        ({"command": "true", "timeout": -1}, "timeout"),
    ):
        r = httpx.post(url, json=body)
        assert r.status_code == 400, (body, r.text)
        assert_4xx_naming(r, field)
    r = post_raw(url, '{"command": "true", "timeout": NaN}')
    assert_4xx_naming(r, "timeout")


def test_sandbox_spec_has_hard_bounds() -> None:
    SandboxSpec(memory="4g", cpus=2, disk="10g", pids=1024, env={"PATH_X": "ok"})
    for bad in (
        {"memory": "99999g"},
        {"memory": 10**30},
        {"disk": "999t"},
        {"tmp_size": "1t"},
        {"output_limit": "100g"},
        {"cpus": math.nan},
        {"cpus": math.inf},
        {"pids": 10**9},
        {"env": {"A": "a\x00"}},
        {"env": {"A=B": "a"}},
        {"env": {"": "a"}},
        {"env": {f"K{i}": "v" for i in range(10_000)}},
        {"env": {"A": "x" * (1024**2 + 1)}},
        {"idle_ttl": math.inf},
        {"idle_ttl": -1.0},
        {"image": "a\x00b"},
        {"image": ""},
        {"workdir": "relative"},
        {"labels": {"k": "v\x00"}},
    ):
        with pytest.raises(ValidationError):
            SandboxSpec.model_validate(bad)


@pytest.mark.parametrize(
    "limits",
    [
        {"max_steps": 5000},
        {"max_steps": 10**9},
        {"timeout": math.inf},
        {"timeout": math.nan},
        {"timeout": -1},
        {"max_tool_calls": 10**9},
        {"max_total_tokens": 10**15},
    ],
)
def test_agent_spec_limits_are_finite_and_in_range(limits: dict[str, Any]) -> None:
    with pytest.raises(AgentSpecError, match="limits"):
        AgentSpec.from_dict({"name": "a", "limits": limits})


@pytest.mark.parametrize(
    "resources",
    [
        {"memory": "99999g"},
        {"disk": "999t"},
        {"cpus": math.nan},
    ],
)
def test_agent_spec_resources_have_hard_bounds(resources: dict[str, Any]) -> None:
    with pytest.raises(AgentSpecError, match="resources"):
        AgentSpec.from_dict({"name": "a", "resources": resources})


def test_bad_agent_spec_over_http_is_400(srv: ServerThread) -> None:
    url = f"{srv.url}/v1beta/agents"
    for text, field in (
        ('{"name": "a", "limits": {"max_steps": 5000}}', "max_steps"),
        ('{"name": "a", "limits": {"timeout": NaN}}', "timeout"),
        ('{"name": "a", "resources": {"memory": "99999g"}}', "memory"),
        ('{"name": "a", "model": "nosuch:thing"}', "model"),
        ('["not", "an", "object"]', "dictionary"),
    ):
        r = post_raw(url, text)
        assert r.status_code == 400, (text, r.text)
        assert_4xx_naming(r, field)
