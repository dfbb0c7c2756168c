"""Proxy one HTTP request to the node that owns a sandbox, streaming both bodies.

A sandbox lives on the node whose Docker engine runs it; a call for it that reaches another
node is sent on to the owner's registered URL (`nodes.url`, never anything the client sent)
with httpx: the request body is read from the ASGI `receive` channel as it arrives and the
owner's answer is written to `send` chunk by chunk, so a 1 GB upload or a streaming exec holds
no more than one chunk here. The caller's headers (its API key included) go along; the owner
authenticates the call again. `FORWARDED_BY` names the forwarding node: a node that receives
it never forwards again (no loops), and it grants nothing — a client that sets it only stops
its own call from being forwarded.

Errors: the owner unreachable (refused, timed out, reset) or silent past `DEAD_AFTER` →
`runtime.errors.NodeUnavailable` naming the node (503), raised before anything was sent. A
failure after the answer started cannot change its status: the stream is cut, which the client
sees as a truncated body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import structlog
from starlette.types import Receive, Scope, Send

from runtime.errors import NodeUnavailable
from runtime.fleet.stats import FleetStats

log = structlog.get_logger("corral.fleet")

FORWARDED_BY = "x-corral-forwarded-by"
DEAD_AFTER = timedelta(seconds=30)
"""A node whose heartbeat is older than this is not tried (503 at once)."""
TIMEOUT = httpx.Timeout(connect=5.0, read=None, write=60.0, pool=10.0)
"""No read timeout: a streaming exec may stay quiet for as long as its command runs."""

# Hop-by-hop headers (RFC 9110 §7.6.1), which belong to one connection, not to the call.
# Content-Length goes along both ways (the bytes are passed through unchanged).
_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        FORWARDED_BY,
    }
)


class Forwarder:
    """Sends calls on to other nodes; `node` is this node's id (put in `FORWARDED_BY`)."""

    def __init__(
        self,
        node: str,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        stats: FleetStats | None = None,
    ) -> None:
        self.node = node
        self.stats = stats or FleetStats()
        """`forwarded` counts each call by outcome."""
        self._client = httpx.AsyncClient(timeout=TIMEOUT, transport=transport)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        *,
        owner: str,
        url: str | None,
        heartbeat_at: datetime | None,
        what: str = "this sandbox is",
    ) -> None:
        """Answer the ASGI request in `scope` with what node `owner` (at `url`) answers
        (NodeUnavailable when it cannot be reached; nothing was sent then)."""
        if url is None or heartbeat_at is None or _stale(heartbeat_at):
            self.stats.forwarded["unavailable"] += 1
            raise _unavailable(what, owner, "it is not running (no recent heartbeat)")
        # The path as the client sent it, after the owner's registered origin: it can only
        # ever name a path on that node (it always starts with "/").
        raw = scope.get("raw_path") or scope["path"].encode()
        target = url.rstrip("/") + "/" + raw.decode("latin-1").lstrip("/")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        headers = [
            (k.decode("latin-1"), v.decode("latin-1"))
            for k, v in scope["headers"]
            if k.decode("latin-1").lower() not in _HOP
        ]
        headers.append((FORWARDED_BY, self.node))
        method = scope["method"]
        body = _body(receive) if method not in ("GET", "HEAD", "DELETE") else None
        req = self._client.build_request(method, target, headers=headers, content=body)
        try:
            resp = await self._client.send(req, stream=True)
        except httpx.TransportError as exc:
            log.warning("fleet.forward_failed", node=owner, error=str(exc) or type(exc).__name__)
            self.stats.forwarded["unavailable"] += 1
            raise _unavailable(what, owner, f"it does not answer ({type(exc).__name__})") from None
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": resp.status_code,
                    "headers": [
                        (k.encode("latin-1"), v.encode("latin-1"))
                        for k, v in resp.headers.multi_items()
                        if k.lower() not in _HOP
                    ],
                }
            )
            async for chunk in resp.aiter_raw():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            self.stats.forwarded["answered"] += 1
        except httpx.TransportError as exc:  # after the status went out: cut the stream
            log.warning("fleet.forward_cut", node=owner, error=str(exc) or type(exc).__name__)
            self.stats.forwarded["cut"] += 1
        finally:
            await resp.aclose()


def _stale(heartbeat_at: datetime) -> bool:
    return datetime.now(UTC) - heartbeat_at > DEAD_AFTER


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return
        chunk = msg.get("body", b"")
        if chunk:
            yield chunk
        if not msg.get("more_body", False):
            return


def _unavailable(what: str, node: str, why: str) -> NodeUnavailable:
    return NodeUnavailable(f"{what} on node {node}, and {why}; try again later")
