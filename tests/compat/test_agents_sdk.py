"""`client.agents` of the official google-genai SDK (sync and async) against `corral serve`:
the SDK's shapes under /v1 and /v1beta, built-ins readable and not deletable, `base_agent`
extension, Corral's own fields beside the SDK's, and the older `name`/`instructions` spelling."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.runtime.api.conftest import ServerThread, sdk


@pytest.fixture
def server() -> Iterator[ServerThread]:
    """A live `corral serve` (uvicorn in a thread) on a free loopback port."""
    srv = ServerThread().start()
    yield srv
    srv.stop()


pytestmark = pytest.mark.filterwarnings("ignore:Agents usage is experimental")


def refused(call: Callable[[], Any]) -> tuple[int, str]:
    """(HTTP status, message) of an SDK call that must fail."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            call()
        except Exception as exc:  # the agents client raises its own error classes
            status = getattr(exc, "status_code", None) or getattr(exc, "code", None) or 0
            return int(status), str(exc)
    raise AssertionError("the call succeeded")


async def arefused(call: Callable[[], Awaitable[Any]]) -> tuple[int, str]:
    try:
        await call()
    except Exception as exc:
        status = getattr(exc, "status_code", None) or getattr(exc, "code", None) or 0
        return int(status), str(exc)
    raise AssertionError("the call succeeded")


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_agents_crud_in_sdk_shapes(server: ServerThread, version: str) -> None:
    client: Any = sdk(server.url, version=version)
    agent = client.agents.create(
        id="writer",
        description="Writes reports",
        system_instruction="Be brief.",
        tools=[{"type": "code_execution"}],
        agent_config={"model": "scripted:demo", "max_total_tokens": 5000},
    )
    assert agent.id == "writer" and agent.system_instruction == "Be brief."
    assert [t.type for t in agent.tools or []] == ["code_execution"]
    assert agent.agent_config is not None and agent.agent_config.model == "scripted:demo"
    assert agent.agent_config.max_total_tokens == 5000

    got = client.agents.get("writer")
    assert got.id == "writer" and got.description == "Writes reports"
    listing = client.agents.list()
    ids = [a.id for a in listing.agents or []]
    assert "writer" in ids and "default" in ids and "demo" in ids

    builtin = client.agents.get("default")
    assert builtin.id == "default" and builtin.system_instruction
    assert [t.type for t in builtin.tools or []] == ["code_execution"]

    status, message = refused(lambda: client.agents.delete("default"))
    assert status == 400 and "cannot be deleted" in message
    status, message = refused(lambda: client.agents.create(id="demo"))
    assert status == 409 and "built in" in message

    client.agents.delete("writer")
    status, message = refused(lambda: client.agents.get("writer"))
    assert status == 404


def test_base_agent_extends_and_overrides(server: ServerThread) -> None:
    client: Any = sdk(server.url)
    client.agents.create(
        id="parent",
        system_instruction="Parent rules.",
        tools=[{"type": "code_execution"}],
        agent_config={"model": "scripted:demo", "limits": {"max_steps": 7, "timeout": 60}},
    )
    child = client.agents.create(
        id="child",
        base_agent="parent",
        description="A child",
        agent_config={"limits": {"max_steps": 3}},
    )
    assert child.base_agent == "parent"
    assert child.system_instruction == "Parent rules."  # inherited
    assert child.agent_config is not None and child.agent_config.model == "scripted:demo"
    extras = child.model_extra or {}
    assert extras["limits"]["max_steps"] == 3 and extras["limits"]["timeout"] == 60
    from_builtin = client.agents.create(id="my-demo", base_agent="demo", system_instruction="X")
    assert from_builtin.system_instruction == "X"
    assert (from_builtin.model_extra or {})["model"] == "scripted:demo"
    status, message = refused(lambda: client.agents.create(id="orphan", base_agent="nosuch"))
    assert status == 400 and "nosuch" in message


def test_corral_fields_and_old_spelling(server: ServerThread) -> None:
    client: Any = sdk(server.url)
    extra = client.agents.create(
        id="roomy",
        system_instruction="Hi",
        tools=[{"type": "code_execution"}, {"type": "browser"}],
        extra_body={"resources": {"memory": "1g"}, "network": "none"},
    )
    assert (extra.model_extra or {})["resources"]["memory"] == "1g"
    tools = extra.tools or []
    assert tools[0].type == "code_execution"
    # Corral's own tools reach the SDK as its "unknown tool", raw payload kept.
    assert tools[1].is_unknown and tools[1].raw == {"type": "browser"}

    base = f"{server.url}/v1beta/agents"
    old = httpx.post(base, json={"name": "legacy", "instructions": "Old", "tools": ["exec"]})
    assert old.status_code == 200, old.text
    assert old.json()["id"] == "legacy" and old.json()["system_instruction"] == "Old"
    assert client.agents.get("legacy").tools[0].raw == {"type": "exec"}

    status, message = refused(
        lambda: client.agents.create(id="searcher", tools=[{"type": "google_search"}])
    )
    assert status == 400 and "google_search" in message
    status, message = refused(lambda: client.agents.create(id="odd", extra_body={"colour": 1}))
    assert status == 400 and "colour" in message
    status, _ = refused(lambda: client.agents.create(description="no id"))
    assert status == 400
    # A general agent's config is taken; one of Google's special agents is not dropped silently.
    for kind in ("antigravity", "dynamic"):
        made = httpx.post(base, json={"id": f"cfg-{kind}", "agent_config": {"type": kind}})
        assert made.status_code == 200, made.text
    other = httpx.post(base, json={"id": "dr", "agent_config": {"type": "deep-research"}})
    assert other.status_code == 400 and "agent_config.type" in other.text


def test_agents_async(server: ServerThread) -> None:
    async def main() -> None:
        client: Any = sdk(server.url)  # keep the client: collecting it closes the async transport
        aio = client.aio
        made = await aio.agents.create(id="async-one", system_instruction="A")
        assert made.id == "async-one"
        assert (await aio.agents.get("async-one")).system_instruction == "A"
        ids = [a.id for a in (await aio.agents.list()).agents or []]
        assert "async-one" in ids and "default" in ids
        status, _ = await arefused(lambda: aio.agents.delete("demo"))
        assert status == 400
        await aio.agents.delete("async-one")
        status, _ = await arefused(lambda: aio.agents.get("async-one"))
        assert status == 404

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        asyncio.run(main())
