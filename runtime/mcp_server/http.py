"""`/mcp` on `corral serve`: the MCP tools over streamable HTTP, with the API's keys.

`McpEndpoint` is an ASGI endpoint the app routes `/mcp` to. Each HTTP request is
authenticated first with the same keys as the rest of the API (`x-goog-api-key` or
`Authorization: Bearer`; 401 in the API's error shape otherwise), and every tool call is then
made as that request's tenant with its key's policy, so an MCP session never carries a tenant
of its own: another tenant's sandbox is `not_found` whatever session it comes through.

Stateless mode (a fresh MCP transport per request, no session ids) keeps it that way and lets
any node behind a load balancer answer; progress notifications ride the response stream of
the call they belong to. On a single-user server (no keys, loopback only) the Host and Origin
headers must be local, so a web page cannot reach it through DNS rebinding.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from runtime.api.auth import Principal, key_from_headers
from runtime.api.errors import error_response
from runtime.errors import CorralError
from runtime.mcp_server.server import build_server
from runtime.mcp_server.tools import Services

LOCAL_HOSTS = ["127.0.0.1:*", "localhost:*", "[::1]:*", "127.0.0.1", "localhost", "[::1]"]
LOCAL_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"]
MAX_BODY = 16 * 1024**2
"""Bytes of one MCP request (a file written with sandbox_write_file travels in it)."""


def services_of(app_state: Any) -> Services:
    """The tools' services from the HTTP app's `ApiState`."""
    return Services(
        app_state.ctl, app_state.config, app_state.hub, app_state.quotas, app_state.service
    )


class McpEndpoint:
    def __init__(self, *, local_only: bool) -> None:
        security = (
            TransportSecuritySettings(allowed_hosts=LOCAL_HOSTS, allowed_origins=LOCAL_ORIGINS)
            if local_only
            else None
        )
        self.server = build_server(self._resolve)
        self.manager = StreamableHTTPSessionManager(
            self.server,
            stateless=True,
            security_settings=security,
            max_request_body_size=MAX_BODY,
        )

    @staticmethod
    def _resolve(request: Any) -> tuple[Services, Principal]:
        state = request.app.state.corral
        principal = state.config.keys.principal_for(key_from_headers(request.headers))
        return services_of(state), principal

    @property
    def route(self) -> Route:
        """`/mcp` for the app's router (not in the OpenAPI document: it is not REST)."""
        return Route("/mcp", self, methods=["GET", "POST", "DELETE"], include_in_schema=False)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Held by the app's lifespan: the MCP transports' task group."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state.corral
        try:
            state.config.keys.principal_for(key_from_headers(Headers(scope=scope)))
        except CorralError as exc:
            await error_response(exc.http_status, exc.code, exc.message)(scope, receive, send)
            return
        await self.manager.handle_request(scope, receive, send)
