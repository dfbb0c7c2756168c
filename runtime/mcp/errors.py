"""Errors of the MCP client, raised only while a run starts (later failures are tool errors).

CorralError
├── McpRefused       the agent's egress policy does not allow a server's host/address
└── McpUnavailable   a server could not be connected, initialised or listed
"""

from __future__ import annotations

from runtime.errors import CorralError


class McpRefused(CorralError):
    code = "mcp_server_refused"


class McpUnavailable(CorralError):
    code = "mcp_server_unavailable"
