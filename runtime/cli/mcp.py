"""`corral mcp` — Corral's sandboxes and agents as MCP tools over stdio (for local MCP clients)."""

from __future__ import annotations

import asyncio

from runtime.cli.common import fail
from runtime.errors import CorralError
from runtime.logs import configure_logging
from runtime.settings import Settings
from sandbox.errors import SandboxError


def mcp() -> None:
    """Serve MCP over stdio: sandbox_create/exec/read/write/list/delete, browser_* and
    run_agent as the local user, with state in $CORRAL_HOME. Point an MCP client's
    `mcpServers` entry at `corral mcp`; over HTTP, `corral serve` answers at /mcp."""
    from runtime.mcp_server.stdio import serve_stdio

    settings = Settings.from_env()
    # stdout is the protocol: logs go to stderr only (configure_logging writes there).
    configure_logging(settings.log_format, settings.log_level)
    try:
        asyncio.run(serve_stdio(settings))
    except (CorralError, SandboxError) as exc:
        fail(str(exc))
