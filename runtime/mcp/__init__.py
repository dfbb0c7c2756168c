"""MCP client side: agents use the tools of MCP servers.

- `names`: the model-facing name of a server's tool (`<server>__<tool>`).
- `egress`: may the controller reach a remote server (the agent's network policy and the
  private-address rules), and an HTTP client that connects only to checked addresses.
- `stdio`: a stdio MCP server run inside the sandbox, its stdin/stdout bridged over the RPC.
- `client`: `McpTools`, every MCP server of one run: connect and discover at run start, call
  with a timeout, turn every server failure into a tool error the model sees.

Errors: `McpRefused` (the egress policy forbids a server: the run fails at start) and
`McpUnavailable` (a server could not be reached or initialised at start) are `CorralError`s
from `runtime.mcp.client`; failures after start never raise, they become tool errors.
"""
