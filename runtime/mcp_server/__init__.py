"""Corral as an MCP server: sandboxes, browser and managed agent runs as MCP tools.

    server.py   the SDK's low-level Server with Corral's tools; every failure a tool error
    tools.py    each tool, translated into the service layer the HTTP routes use
    schemas.py  arguments and results (pydantic -> the tools' JSON Schemas)
    http.py     `/mcp` on `corral serve` (streamable HTTP, the API's keys and tenants)
    stdio.py    `corral mcp` (stdio, the local single-user tenant)

Not to be confused with `runtime.mcp`, where agents use other MCP servers' tools.
"""
