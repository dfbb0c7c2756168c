"""The MCP server: Corral's tools (`runtime.mcp_server.tools`) behind the SDK's low-level
`Server`, for both transports (streamable HTTP in `http.py`, stdio in `stdio.py`).

Every call is answered, never raised: bad arguments, policy refusals, another tenant's (or a
missing) sandbox and engine failures all become a tool result with `isError` and one clear
message (`invalid_argument: sandbox_id: ...`, `not_found: sandbox sb-... not found`), so a
client's session survives whatever it sends. Errors are mapped from our own types through
the same tables as the HTTP API (`runtime.api.errors`); an unexpected exception is logged and
answered as `internal`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mcp_types as types
import structlog
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import Server
from pydantic import ValidationError

from runtime.api.auth import Principal
from runtime.api.errors import sandbox_status
from runtime.errors import CorralError
from runtime.mcp_server.tools import TOOLS, Progress, Services, Tool
from sandbox.errors import SandboxError

log = structlog.get_logger("corral.mcp")

Resolve = Callable[[Any], tuple[Services, Principal]]
"""(the transport's request, or None on stdio) -> the services and the caller."""

INSTRUCTIONS = (
    "Corral runs Linux sandboxes and managed agents on the operator's machine. Create a "
    "sandbox with sandbox_create, then exec commands and read/write files in its /workspace "
    "using the id it returns; delete it when done. Use image corral/browser for the browser_* "
    "tools. run_agent hands a whole task to a managed agent and returns its answer and files."
)


def tool_list() -> list[types.Tool]:
    return [_describe(t) for t in TOOLS.values()]


def _describe(t: Tool) -> types.Tool:
    return types.Tool(
        name=t.name,
        description=t.description,
        input_schema=t.args.model_json_schema(),
        output_schema=t.result.model_json_schema(),
        annotations=types.ToolAnnotations(
            read_only_hint=t.read_only,
            destructive_hint=t.destructive,
            open_world_hint=t.name.startswith("browser_") or t.name == "run_agent",
        ),
    )


def error_result(code: str, message: str) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=f"{code}: {message}")], is_error=True
    )


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    msg = str(err["msg"]).removeprefix("Value error, ")
    return f"{where}: {msg}" if where else msg


async def call_tool(
    sv: Services,
    who: Principal,
    name: str,
    arguments: dict[str, Any] | None,
    progress: Progress,
) -> types.CallToolResult:
    """One tool call, answered whatever happens (see the module docstring)."""
    tool = TOOLS.get(name)
    if tool is None:
        return error_result("not_found", f"no tool {name!r}; tools: {', '.join(TOOLS)}")
    try:
        args = tool.args.model_validate(arguments or {})
    except ValidationError as exc:
        return error_result("invalid_argument", _first_error(exc))
    try:
        result, extra = await tool.run(sv, who, args, progress)
    except CorralError as exc:
        if exc.http_status >= 500:
            log.warning("mcp.tool_failed", tool=name, code=exc.code, error=exc.message)
        return error_result(exc.code, exc.message)
    except SandboxError as exc:
        _status, code = sandbox_status(exc)
        return error_result(code, exc.message)
    except Exception as exc:
        log.exception("mcp.tool_crashed", tool=name, error=f"{type(exc).__name__}: {exc}")
        return error_result("internal", "internal error (see the server log)")
    data = result.model_dump(mode="json")
    text = result.model_dump_json(indent=2)
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=text), *extra],
        structured_content=data,
    )


def build_server(resolve: Resolve, *, version: str = "0.1.0") -> Server[Any]:
    """The MCP server; `resolve` tells each call who calls and with which services."""

    async def list_tools(
        ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tool_list())

    async def on_call(
        ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        try:
            sv, who = resolve(ctx.request)
        except CorralError as exc:  # a key revoked since the transport checked it
            return error_result(exc.code, exc.message)
        progress = Progress(ctx.session.report_progress)
        return await call_tool(sv, who, params.name, params.arguments, progress)

    return Server(
        "corral",
        version=version,
        title="Corral sandboxes and agents",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=on_call,
    )
