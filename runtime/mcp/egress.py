"""May the controller reach a remote MCP server, and an HTTP client that keeps to the answer.

The rule (see docs/security.md, "MCP servers"): the controller connects to a remote MCP
server on the agent's behalf only if the agent's own network policy would let the sandbox
reach that host — `open`, or `allowlist` with a matching domain; `none` refuses every remote
server. Every address the name resolves to is checked with the egress proxy's rules
(private, loopback, link-local, metadata and reserved addresses are refused unless the
operator's `CORRAL_EGRESS_ALLOW_PRIVATE` names them), and the HTTP client connects to a
checked address itself, resolving again for every new connection, so DNS rebinding between
the check and the connect cannot reach an internal address. TLS still verifies the URL's
host name. Environment proxies are not used.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpcore2
import httpx2

from runtime.mcp.errors import McpRefused
from sandbox.egress.proxy import IPAddress, address_refusal, host_allowed

_DEFAULT_PORTS = {"http": 80, "https": 443}


def url_target(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; McpRefused when it has none."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname:
        raise McpRefused(f"{url!r} is not an http(s) URL with a host")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise McpRefused(f"{url!r} has a bad port") from None
    return parts.hostname.lower().rstrip("."), port


def check_host(server: str, url: str, mode: str, allow: Iterable[str]) -> tuple[str, int]:
    """The agent's network policy (`none` / `allowlist` / `open`) allows `url`'s host, or
    McpRefused saying why. Returns (host, port)."""
    host, port = url_target(url)
    if mode == "none":
        raise McpRefused(
            f"MCP server {server!r} ({host}) is remote, and the agent's network is 'none': "
            f"use network 'open' or an allowlist containing {host}"
        )
    if mode == "allowlist" and not host_allowed(host, tuple(allow)):
        raise McpRefused(
            f"MCP server {server!r}: host {host} is not in the agent's network allowlist"
        )
    return host, port


class AddressPolicy:
    """Resolves a host and keeps only the addresses the egress rules allow."""

    def __init__(
        self, private: tuple[str, ...] = (), hosts: Mapping[str, str] | None = None
    ) -> None:
        self.private = private
        self.hosts = {k.lower(): v for k, v in (hosts or {}).items()}

    async def resolve(self, host: str, port: int) -> list[IPAddress]:
        """Allowed addresses of `host:port`; McpRefused when none is allowed."""
        try:
            literal: IPAddress | None = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            literal = None
        if literal is not None:
            found = [literal]
        elif host.lower() in self.hosts:
            found = [ipaddress.ip_address(self.hosts[host.lower()])]
        else:
            loop = asyncio.get_running_loop()
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (socket.gaierror, UnicodeError) as exc:
                raise McpRefused(f"cannot resolve {host}: {exc}") from None
            found = []
            for info in infos:
                addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
                if addr not in found:
                    found.append(addr)
        allowed = [a for a in found if address_refusal(a, port, self.private) is None]
        if not allowed:
            reasons = sorted({str(address_refusal(a, port, self.private)) for a in found})
            raise McpRefused(
                f"{host}:{port} resolves only to refused addresses ({', '.join(reasons)}); "
                "the operator can allow private addresses with CORRAL_EGRESS_ALLOW_PRIVATE"
            )
        return allowed


class _CheckedBackend(httpcore2.AsyncNetworkBackend):
    """Connects to an address `AddressPolicy` allowed, never to what a later lookup says."""

    def __init__(self, policy: AddressPolicy) -> None:
        self.policy = policy
        self.inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        last: Exception | None = None
        for addr in await self.policy.resolve(host, port):
            try:
                return await self.inner.connect_tcp(
                    str(addr), port, timeout, local_address, socket_options
                )
            except (httpcore2.ConnectError, httpcore2.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        raise httpcore2.ConnectError("MCP servers are reached over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class CheckedTransport(httpx2.AsyncHTTPTransport):
    """httpx2 transport whose every connection goes to an allowed address."""

    def __init__(self, policy: AddressPolicy) -> None:
        super().__init__(trust_env=False)
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=httpx2.create_ssl_context(trust_env=False),
            network_backend=_CheckedBackend(policy),
        )


def http_client(
    policy: AddressPolicy,
    headers: Mapping[str, str] | None = None,
    timeout: httpx2.Timeout | None = None,
    auth: httpx2.Auth | None = None,
) -> httpx2.AsyncClient:
    """An httpx2 client for the MCP SDK's transports (same defaults as the SDK's own)."""
    return httpx2.AsyncClient(
        headers=dict(headers or {}),
        timeout=timeout or httpx2.Timeout(30.0, read=300.0),
        auth=auth,
        transport=CheckedTransport(policy),
        trust_env=False,
        follow_redirects=False,
    )
