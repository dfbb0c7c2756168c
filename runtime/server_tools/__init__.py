"""Server-side tools of `model=` interactions: `code_execution` (a sandbox per interaction),
`url_context` (fetched by the controller under the egress rules) and `google_search` (the
operator's search backend). See `tools` for how each is offered and recorded."""

from runtime.server_tools.tools import (
    SERVER_TOOL_TYPES,
    ServerTools,
    ServerToolsConfig,
    check_server_tools,
    requested,
)

__all__ = [
    "SERVER_TOOL_TYPES",
    "ServerTools",
    "ServerToolsConfig",
    "check_server_tools",
    "requested",
]
