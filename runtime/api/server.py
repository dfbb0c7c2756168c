"""How `corral serve` runs uvicorn: connection limits and timeouts against hostile clients.

uvicorn bounds idle keep-alive connections (`timeout_keep_alive`), the number of connections
and tasks (`limit_concurrency`, beyond which requests get 503) and the size of a request head
(`h11_max_incomplete_event_size`), but it has no deadline for *receiving* a request head: its
keep-alive timer is only armed after a response, and is cancelled by every byte received, so a
client that connects and says nothing, or trickles a header a byte at a time, holds a
connection for ever (uvicorn issue #157, "timeout-request-start", still open). `HeadDeadlineH11`
is uvicorn's own h11 protocol with that one deadline added through the `http=` protocol-class
option of `uvicorn.Config`: armed when a connection opens or a new request starts arriving,
disarmed when the head is complete; on expiry the connection is closed. Bodies and responses
(uploads, SSE streams) are not under it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from runtime.errors import ConfigError

HEADER_TIMEOUT = 5.0
KEEP_ALIVE = 5
MAX_CONNECTIONS = 1024
MAX_HEAD = 64 * 1024


@dataclass(frozen=True)
class ServerLimits:
    header_timeout: float = HEADER_TIMEOUT
    """Seconds a client has to send a complete request head (`CORRAL_HEADER_TIMEOUT`)."""
    keep_alive: float = KEEP_ALIVE
    """Seconds an idle keep-alive connection stays open (`CORRAL_KEEP_ALIVE_TIMEOUT`)."""
    max_connections: int = MAX_CONNECTIONS
    """Open connections (and tasks) before new requests get 503 (`CORRAL_MAX_CONNECTIONS`)."""
    max_head: int = MAX_HEAD
    """Bytes of one request head (request line + headers)."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ServerLimits:
        return cls(
            header_timeout=_positive(env, "CORRAL_HEADER_TIMEOUT", HEADER_TIMEOUT),
            keep_alive=_positive(env, "CORRAL_KEEP_ALIVE_TIMEOUT", float(KEEP_ALIVE)),
            max_connections=int(_positive(env, "CORRAL_MAX_CONNECTIONS", MAX_CONNECTIONS)),
        )


def _positive(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if not 0 < value < 1e9:
        raise ConfigError(f"{name} must be a positive number")
    return value


class HeadDeadlineH11(H11Protocol):
    """uvicorn's h11 protocol, plus a deadline for receiving each request head."""

    header_timeout: float = HEADER_TIMEOUT

    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_deadline()

    def data_received(self, data: bytes) -> None:
        waiting = self._head_timer is None and self._between_requests()
        super().data_received(data)
        if self._head_complete():
            self._disarm_head_deadline()
        elif waiting:
            # the first bytes of a new request on a kept-alive connection
            self._arm_head_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_complete():
            self._disarm_head_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_deadline()
        super().connection_lost(exc)

    def _between_requests(self) -> bool:
        return self.cycle is None or self.cycle.response_complete

    def _head_complete(self) -> bool:
        return bool(self.conn.their_state is not h11.IDLE)

    def _arm_head_deadline(self) -> None:
        self._disarm_head_deadline()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_expired)

    def _disarm_head_deadline(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_expired(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._head_complete():
            return
        self._unset_keepalive_if_required()
        self.transport.close()


def protocol_class(limits: ServerLimits) -> type[HeadDeadlineH11]:
    """`HeadDeadlineH11` with this server's header timeout."""
    return type("CorralH11", (HeadDeadlineH11,), {"header_timeout": limits.header_timeout})


def uvicorn_config(
    app: Any,
    *,
    host: str,
    port: int,
    limits: ServerLimits,
    log_level: str = "warning",
    **extra: Any,
) -> uvicorn.Config:
    """The uvicorn configuration `corral serve` (and the tests' server) run with.

    uvicorn installs no logging configuration of its own (`log_config=None`) and writes no
    access log: its records go to the process's structlog stream (`runtime.logs`), and access
    lines are `http.access` events (`runtime.api.accesslog`)."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        log_config=None,
        access_log=False,
        http=protocol_class(limits),
        timeout_keep_alive=max(1, round(limits.keep_alive)),
        limit_concurrency=limits.max_connections,
        h11_max_incomplete_event_size=limits.max_head,
        **extra,
    )
