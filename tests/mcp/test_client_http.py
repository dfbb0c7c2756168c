"""Agents use a remote MCP server (a real one, built with the SDK, over streamable HTTP and SSE).

The scripted model calls the server's tools through the agent loop: calls reach the server,
results reach the model, and failures (a tool error, a timeout, the server gone) are tool
errors the run survives. The egress rule refuses what the agent's network does not allow.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from starlette.types import ASGIApp, Receive, Scope, Send

from runtime.agents.loop import AgentLoop, LoopResult, Recorder
from runtime.agents.spec import AgentSpec, McpServerTool
from runtime.events import EventBus
from runtime.mcp.client import McpTools
from runtime.mcp.egress import AddressPolicy
from runtime.mcp.errors import McpRefused
from runtime.mcp.names import MAX_NAME, qualified_name
from runtime.providers.base import Message
from runtime.providers.scripted import ScriptedCall, ScriptedProvider, ScriptedTurn
from runtime.settings import Settings
from runtime.steps import materialize, to_messages
from runtime.store.base import InteractionRecord
from runtime.store.sql import SqlStore, open_store

LOCAL = AddressPolicy(private=("127.0.0.1",))


# -- a real MCP server ----------------------------------------------------------------------
def build_server(hang: asyncio.Event | None = None) -> MCPServer:
    server = MCPServer("test-tools")

    @server.tool(description="Echo the text back.")
    def echo(text: str) -> str:
        return f"echo: {text}"

    @server.tool(description="Add two integers.")
    def add(a: int, b: int) -> int:
        return a + b

    @server.tool(description="Always fails.")
    def broken() -> str:
        raise ToolError("the tool broke")

    @server.tool(description="Never answers.")
    async def hang_forever() -> str:
        await asyncio.Event().wait()
        return "unreachable"

    return server


class HeaderLog:
    """ASGI middleware keeping the Authorization header of every request."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            self.seen.append(headers.get(b"authorization", b"").decode())
        await self.app(scope, receive, send)


@dataclass
class Served:
    url: str
    sse_url: str
    server: uvicorn.Server
    thread: threading.Thread
    authorization: list[str] = field(default_factory=list)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join()


@pytest.fixture
def served() -> Iterator[Served]:
    mcp_server = build_server()
    seen: list[str] = []
    http_app = mcp_server.streamable_http_app()
    sse_app = mcp_server.sse_app()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        target = sse_app if path.startswith(("/sse", "/messages")) else http_app
        await target(scope, receive, send)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    # Both apps' lifespans must run (the streamable app's session manager lives there).
    config = uvicorn.Config(
        HeaderLog(_Lifespans(app, [http_app, sse_app]), seen),
        log_level="error",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.01)
    s = Served(f"http://127.0.0.1:{port}/mcp", f"http://127.0.0.1:{port}/sse", server, thread, seen)
    yield s
    if thread.is_alive():
        s.stop()
    sock.close()


class _Lifespans:
    """Route lifespan events to every sub-app; everything else to `app`."""

    def __init__(self, app: ASGIApp, subs: Sequence[Any]) -> None:
        self.app = app
        self.subs = subs

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        contexts = [sub.router.lifespan_context(sub) for sub in self.subs]
        message = await receive()
        assert message["type"] == "lifespan.startup"
        for c in contexts:
            await c.__aenter__()
        await send({"type": "lifespan.startup.complete"})
        message = await receive()
        for c in reversed(contexts):
            await c.__aexit__(None, None, None)
        await send({"type": "lifespan.shutdown.complete"})


# -- the agent loop around it ---------------------------------------------------------------
@pytest.fixture
async def store(corral_home: Path) -> AsyncIterator[SqlStore]:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    s = await open_store(settings)
    await s.create_interaction(InteractionRecord(id="int_1", tenant="t"))
    yield s
    await s.aclose()


def call(name: str, **arguments: Any) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=(ScriptedCall(name, arguments),))


class HookedProvider(ScriptedProvider):
    """Runs `before[i]` just before model turn i (e.g. to kill the server mid-run)."""

    def __init__(self, turns: Sequence[ScriptedTurn], before: dict[int, Any]) -> None:
        super().__init__(turns)
        self.before = before
        self.turn = 0
        self.offered: list[list[str]] = []

    async def complete(self, messages: list[Message], **kw: Any) -> Any:
        self.offered.append([t.name for t in kw.get("tools") or ()])
        hook = self.before.get(self.turn)
        self.turn += 1
        if hook is not None:
            await asyncio.to_thread(hook)
        return await super().complete(messages, **kw)


@dataclass
class Run:
    result: LoopResult
    messages: list[Message]
    steps: list[dict[str, Any]]
    offered: list[list[str]]

    def tool_results(self) -> list[Message]:
        return [m for m in self.messages if m.role == "tool"]


async def run_agent(
    store: SqlStore,
    servers: list[McpServerTool],
    turns: list[ScriptedTurn],
    before: dict[int, Any] | None = None,
) -> Run:
    provider = HookedProvider([*turns, ScriptedTurn(text="done")], before or {})
    rec = Recorder(EventBus(store), "int_1")
    mcp = await McpTools.open(servers, sandbox=None, network="open", addresses=LOCAL)
    try:
        loop = AgentLoop(provider, rec, mcp=mcp)
        messages = [Message(role="user", content="go")]
        result = await loop.run(messages)
    finally:
        await mcp.aclose()
    steps = materialize(await store.list_events("int_1"))
    return Run(result, messages, steps, provider.offered)


def server(url: str, **kw: Any) -> McpServerTool:
    return McpServerTool.model_validate({"type": "mcp_server", "name": "tools", "url": url, **kw})


# -- tests ----------------------------------------------------------------------------------
async def test_calls_reach_the_server_and_results_reach_the_model(
    store: SqlStore, served: Served
) -> None:
    s = server(served.url, headers={"Authorization": "Bearer s3cret"})
    run = await run_agent(
        store, [s], [call("tools__echo", text="hi"), call("tools__add", a=2, b=3)]
    )
    assert run.result.status == "completed"
    assert [m.content for m in run.tool_results()] == ["echo: hi", "5"]
    assert not any(m.is_error for m in run.tool_results())
    assert "tools__echo" in run.offered[0] and "tools__hang_forever" in run.offered[0]
    assert set(served.authorization) == {"Bearer s3cret"}  # every request carried the header
    kinds = [st["type"] for st in run.steps]
    assert kinds.count("mcp_server_tool_call") == 2 and kinds.count("mcp_server_tool_result") == 2
    first_call = next(st for st in run.steps if st["type"] == "mcp_server_tool_call")
    assert first_call["name"] == "echo" and first_call["server_name"] == "tools"
    assert first_call["arguments"] == {"text": "hi"} and first_call["id"]
    first_result = next(st for st in run.steps if st["type"] == "mcp_server_tool_result")
    assert first_result["call_id"] == first_call["id"]
    assert first_result["result"] == "echo: hi" and first_result["server_name"] == "tools"
    # A follow-up rebuilds the same conversation (the model-facing names come back).
    again = to_messages(run.steps)
    calls = [c.name for m in again for c in m.tool_calls]
    assert calls == ["tools__echo", "tools__add"]
    assert [m.name for m in again if m.role == "tool"] == ["tools__echo", "tools__add"]


async def test_the_sdk_reads_the_steps_typed(store: SqlStore, served: Served) -> None:
    from google.genai._gaos.types.interactions.mcpservertoolcallstep import (
        MCPServerToolCallStep,
    )
    from google.genai._gaos.types.interactions.mcpservertoolresultstep import (
        MCPServerToolResultStep,
    )

    from runtime.views import public_steps

    run = await run_agent(store, [server(served.url)], [call("tools__echo", text="x")])
    shown = [s for s in public_steps(run.steps) if s["type"].startswith("mcp_server")]
    call_step = MCPServerToolCallStep.model_validate(shown[0])
    result_step = MCPServerToolResultStep.model_validate(shown[1])
    assert (call_step.server_name, call_step.name) == ("tools", "echo")
    assert result_step.call_id == call_step.id and result_step.result == "echo: x"


async def test_failures_are_tool_errors_and_the_run_completes(
    store: SqlStore, served: Served
) -> None:
    s = server(served.url, timeout=0.5)
    run = await run_agent(
        store,
        [s],
        [
            call("tools__broken"),
            call("tools__hang_forever"),
            call("tools__echo", text="still here"),
        ],
    )
    assert run.result.status == "completed"
    broken, hung, echo = run.tool_results()
    assert broken.is_error and "the tool broke" in broken.content
    assert hung.is_error and "timed out after 0.5s" in hung.content
    assert not echo.is_error and echo.content == "echo: still here"
    results = [st for st in run.steps if st["type"] == "mcp_server_tool_result"]
    assert [r["is_error"] for r in results] == [True, True, False]


async def test_a_server_that_vanishes_mid_run_is_a_tool_error(
    store: SqlStore, served: Served
) -> None:
    run = await run_agent(
        store,
        [server(served.url, timeout=10)],
        [call("tools__echo", text="one"), call("tools__echo", text="two")],
        before={1: served.stop},
    )
    assert run.result.status == "completed"
    first, second = run.tool_results()
    assert first.content == "echo: one" and not first.is_error
    assert second.is_error and "tools" in second.content


async def test_allowed_tools_filters(store: SqlStore, served: Served) -> None:
    run = await run_agent(
        store, [server(served.url, allowed_tools=["echo"])], [call("tools__add", a=1, b=1)]
    )
    assert [n for n in run.offered[0] if n.startswith("tools__")] == ["tools__echo"]
    (result,) = run.tool_results()
    assert result.is_error and "unknown tool" in result.content


async def test_legacy_sse_transport(store: SqlStore, served: Served) -> None:
    s = server(served.sse_url, transport="sse")
    run = await run_agent(store, [s], [call("tools__add", a=40, b=2)])
    assert [m.content for m in run.tool_results()] == ["42"]


async def test_egress_policy_decides_which_servers_are_reached(served: Served) -> None:
    s = server(served.url)
    with pytest.raises(McpRefused, match="network is 'none'"):
        await McpTools.open([s], sandbox=None, network="none", addresses=LOCAL)
    with pytest.raises(McpRefused, match="not in the agent's network allowlist"):
        await McpTools.open([s], sandbox=None, network="allowlist", allow=["example.com"])
    # Loopback is refused unless the operator allows it (CORRAL_EGRESS_ALLOW_PRIVATE).
    with pytest.raises(McpRefused, match="loopback_address"):
        await McpTools.open([s], sandbox=None, network="open", addresses=AddressPolicy())
    tools = await McpTools.open([s], sandbox=None, network="open", addresses=LOCAL)
    await tools.aclose()
    assert served.authorization  # reached only in the last case


async def test_refused_at_run_start_by_the_runner(tmp_path: Path) -> None:
    from runtime.mcp.client import check_egress

    spec = AgentSpec.from_dict(
        {
            "name": "a",
            "tools": [{"type": "mcp_server", "name": "x", "url": "https://a.example/mcp"}],
        }
    )
    with pytest.raises(McpRefused) as info:
        check_egress(spec.mcp_servers(), spec.network.mode, spec.network.allow)
    assert info.value.code == "mcp_server_refused"
    check_egress(spec.mcp_servers(), "allowlist", ["*.example"])


def test_qualified_names_fit_every_provider() -> None:
    assert qualified_name("tools", "echo") == "tools__echo"
    assert qualified_name("9s", "a.b/c") == "m9s__a_b_c"
    long = qualified_name("server", "x" * 100)
    assert len(long) == MAX_NAME and long != qualified_name("server", "x" * 99)
