"""`McpTools`: the MCP servers of one run, as model-facing tools.

At run start every server is connected and initialised and its tools listed (`allowed_tools`
filters them); a server that cannot be reached then fails the run with `McpUnavailable`, a
remote server the agent's network does not allow with `McpRefused` (checked before anything
connects). After that nothing raises: a failing tool, a call past its `timeout`, a server
that vanished (its process killed, its connection dropped) are tool errors the model reads.

Each server's SDK session lives in its own task (its owner), because the SDK's transports run
anyio task groups: a transport that dies cancels its owner, never the agent loop. The loop
calls tools from its own task and races each call against the owner's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import structlog
from mcp import types
from mcp.client.session import ClientSession
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.jsonrpc import CONNECTION_CLOSED

from runtime.agents.spec import McpServerTool
from runtime.agents.truncate import head_tail
from runtime.mcp.egress import AddressPolicy, check_host, http_client, url_target
from runtime.mcp.errors import McpUnavailable
from runtime.mcp.names import qualified_name
from runtime.mcp.stdio import TransportStreams, sandbox_stdio
from runtime.providers.base import ToolSpec
from sandbox.api import Sandbox

log = structlog.get_logger("corral.mcp")
CONNECT_TIMEOUT = 30.0
"""Seconds a server has to connect, initialise and list its tools at run start."""
CLOSE_TIMEOUT = 5.0
MAX_RESULT_CHARS = 64 * 1024

Opener = Callable[[], AbstractAsyncContextManager[TransportStreams]]


@dataclass(frozen=True)
class McpTool:
    server: str
    tool: str
    """The tool's name on its server."""
    spec: ToolSpec
    """What the model sees (the name is `qualified_name(server, tool)`)."""


@dataclass(frozen=True)
class McpOutcome:
    text: str
    is_error: bool = False


def check_egress(servers: Sequence[McpServerTool], mode: str, allow: Sequence[str]) -> None:
    """Refuse (McpRefused) a remote server whose host the agent's network does not allow."""
    for s in servers:
        if s.remote and s.url:
            check_host(s.name, s.url, mode, allow)


class McpServer:
    """One connected server: its owner task holds the SDK session."""

    def __init__(self, config: McpServerTool, opener: Opener) -> None:
        self.config = config
        self.name = config.name
        self._opener = opener
        self._session: ClientSession | None = None
        self._ready: asyncio.Future[list[types.Tool]] = asyncio.get_running_loop().create_future()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failure: str | None = None

    async def start(self, timeout: float = CONNECT_TIMEOUT) -> list[types.Tool]:
        self._task = asyncio.create_task(self._own(), name=f"mcp-{self.name}")
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._ready)
        except TimeoutError:
            await self.aclose()
            raise McpUnavailable(
                f"MCP server {self.name!r} did not answer within {timeout:g}s"
            ) from None
        except McpUnavailable:
            await self.aclose()
            raise

    async def _own(self) -> None:
        try:
            async with self._opener() as (read, write), ClientSession(read, write) as session:
                await session.initialize()
                tools: list[types.Tool] = []
                cursor: str | None = None
                while True:
                    params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
                    page = await session.list_tools(params=params)
                    tools += page.tools
                    cursor = page.next_cursor
                    if not cursor:
                        break
                self._session = session
                self._ready.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:
            self.failure = _describe(exc)
            if not self._ready.done():
                self._ready.set_exception(
                    McpUnavailable(f"MCP server {self.name!r}: {self.failure}")
                )
            elif not self._stop.is_set():
                log.warning("mcp.server_lost", server=self.name, error=self.failure)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self._session = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done() and self._session is not None

    async def call(self, tool: str, arguments: dict[str, Any]) -> McpOutcome:
        session, owner = self._session, self._task
        if session is None or owner is None or owner.done() or self._stop.is_set():
            return McpOutcome(self._gone(), is_error=True)
        timeout = self.config.timeout
        call = asyncio.ensure_future(
            session.call_tool(tool, arguments, read_timeout_seconds=timeout)
        )
        try:
            done, _ = await asyncio.wait(
                {call, owner}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if not call.done():
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
        if call not in done:
            if owner in done:
                return McpOutcome(self._gone(), is_error=True)
            return McpOutcome(
                f"error: MCP tool {tool!r} of server {self.name!r} timed out after {timeout:g}s",
                is_error=True,
            )
        try:
            result = call.result()
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:  # the process exited or the stream ended
                self.failure = self.failure or "the connection closed"
                self._stop.set()
            if not self.alive or exc.code == CONNECTION_CLOSED:
                return McpOutcome(self._gone(), is_error=True)
            return McpOutcome(f"error: MCP server {self.name!r}: {exc.message}", is_error=True)
        except Exception as exc:  # a transport failure, a malformed answer, ...
            if not self.alive:
                return McpOutcome(self._gone(), is_error=True)
            return McpOutcome(f"error: MCP server {self.name!r}: {_describe(exc)}", is_error=True)
        return _outcome(result)

    def _gone(self) -> str:
        why = f": {self.failure}" if self.failure else ""
        return f"error: MCP server {self.name!r} is no longer reachable{why}"

    async def aclose(self) -> None:
        self._stop.set()
        task = self._task
        if task is None:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT)
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


class McpTools:
    """Every MCP server of one run, as tools named `<server>__<tool>`."""

    def __init__(self) -> None:
        self.servers: list[McpServer] = []
        self.tools: dict[str, tuple[McpServer, McpTool]] = {}

    @property
    def specs(self) -> list[ToolSpec]:
        return [t.spec for _, t in self.tools.values()]

    def has(self, name: str) -> bool:
        return name in self.tools

    def tool(self, name: str) -> McpTool:
        return self.tools[name][1]

    @classmethod
    async def open(
        cls,
        configs: Sequence[McpServerTool],
        *,
        sandbox: Sandbox | None,
        network: str,
        allow: Sequence[str] = (),
        addresses: AddressPolicy | None = None,
        reserved: Sequence[str] = (),
    ) -> McpTools:
        """Connect every server (concurrently) and list its tools. `reserved`: names of the
        run's other tools, which an MCP tool must not shadow."""
        check_egress(configs, network, allow)
        policy = addresses or AddressPolicy()
        for c in configs:  # refused addresses fail clearly here, not as a connect error
            if c.remote and c.url:
                await policy.resolve(*url_target(c.url))
        self = cls()
        self.servers = [McpServer(c, _opener(c, sandbox, policy)) for c in configs]
        results = await asyncio.gather(*(s.start() for s in self.servers), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            await self.aclose()
            if isinstance(failed[0], Exception):
                raise failed[0]
            raise McpUnavailable(f"MCP servers could not start: {failed[0]!r}")
        taken = set(reserved)
        for server, listed in zip(self.servers, results, strict=True):
            assert isinstance(listed, list)
            allowed = server.config.allowed_tools
            for t in listed:
                if allowed is not None and t.name not in allowed:
                    continue
                name = qualified_name(server.name, t.name)
                if name in taken:
                    log.warning("mcp.tool_name_clash", server=server.name, tool=t.name)
                    continue
                taken.add(name)
                spec = ToolSpec(name, _description(server.name, t), _schema(t.input_schema))
                self.tools[name] = (server, McpTool(server.name, t.name, spec))
        return self

    async def call(self, name: str, arguments: dict[str, Any]) -> McpOutcome:
        entry = self.tools.get(name)
        if entry is None:
            return McpOutcome(f"unknown tool {name!r}", is_error=True)
        server, tool = entry
        return await server.call(tool.tool, arguments)

    async def aclose(self) -> None:
        await asyncio.gather(*(s.aclose() for s in self.servers), return_exceptions=True)


# -- helpers --------------------------------------------------------------------------------
def _opener(config: McpServerTool, sandbox: Sandbox | None, policy: AddressPolicy) -> Opener:
    if config.transport == "stdio":
        if sandbox is None:
            raise McpUnavailable(f"MCP server {config.name!r} runs over stdio and needs a sandbox")
        argv = [str(config.command), *config.args]
        return lambda: sandbox_stdio(sandbox, argv, env=config.env, cwd=config.cwd)
    url = str(config.url)
    headers = dict(config.headers)
    if config.transport == "sse":

        def factory(
            headers: dict[str, str] | None = None, timeout: Any = None, auth: Any = None
        ) -> Any:
            return http_client(policy, headers, timeout, auth)

        return lambda: sse_client(url, headers=headers, httpx_client_factory=factory)

    @contextlib.asynccontextmanager
    async def streamable() -> Any:
        async with (
            http_client(policy, headers) as client,
            streamable_http_client(url, http_client=client) as streams,
        ):
            yield streams

    return streamable


def _description(server: str, tool: types.Tool) -> str:
    text = (tool.description or tool.title or "").strip()
    return f"[MCP server {server}] {text}".strip()


def _schema(schema: Any) -> dict[str, Any]:
    if isinstance(schema, dict) and schema.get("type") == "object":
        return dict(schema)
    return {"type": "object", "properties": {}}


def _outcome(result: types.CallToolResult) -> McpOutcome:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, types.TextContent):
            parts.append(block.text)
        elif isinstance(block, types.ImageContent | types.AudioContent):
            parts.append(f"[{block.type}: {block.mime_type}, {len(block.data) * 3 // 4} bytes]")
        elif isinstance(block, types.EmbeddedResource):
            res = block.resource
            if isinstance(res, types.TextResourceContents):
                parts.append(res.text)
            else:
                parts.append(f"[resource {res.uri}]")
        else:
            parts.append(f"[{getattr(block, 'type', 'content')}]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    text = "\n".join(parts) or "(no content)"
    return McpOutcome(head_tail(text, MAX_RESULT_CHARS), is_error=bool(result.is_error))


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        if inner:
            return _describe(inner[0])
    if isinstance(exc, asyncio.CancelledError):
        return "connection closed"
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 500 else text[:497] + "..."
