"""Fan-out between nodes through PostgreSQL LISTEN/NOTIFY, on one dedicated connection.

A node that stores events for an interaction NOTIFYs `corral_events` with a small JSON payload
(`{"o": origin node, "i": interaction id, "n": last event id}`) after they are committed; every
node LISTENs and wakes its local subscribers of that interaction, which then read the new
events from the store in order. The notification only says "look again": the store stays the
one source of events, so ids stay contiguous and a dropped notification costs a delay, never an
event (subscribers also poll the store at a bounded interval, and all of them re-read after
this connection comes back). `corral_cancel` carries `{"o": ..., "i": ...}`: a cancel was
recorded for the interaction (the durable request is the `cancel.requested` event; the
notification only makes the owner look now rather than at its next poll).

Notifications are sent by one task in batches (`SELECT pg_notify(...) FROM unnest(...)`), so a
run that appends many events costs one round trip per batch and never waits for it. While the
connection is down they are dropped (the pollers catch up); the connection is re-opened with
backoff and checked by a ping, because a partition without a TCP reset never closes it.

Errors: connection failures are logged and retried, never raised to the run that emitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import asyncpg
import structlog
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from runtime.fleet.stats import FleetStats

log = structlog.get_logger("corral.fleet")

EVENTS_CHANNEL = "corral_events"
CANCEL_CHANNEL = "corral_cancel"
PING_SECONDS = 5.0
"""How often the listening connection is checked (a cut network does not close it)."""
CONNECT_TIMEOUT = 10.0
BACKOFF = (0.2, 5.0)
"""First and longest wait between reconnection attempts, in seconds."""

_NOTIFY_MANY = "SELECT pg_notify(c, p) FROM unnest($1::text[], $2::text[]) AS t(c, p)"


def asyncpg_dsn(url: str) -> str | None:
    """The libpq-style DSN of a PostgreSQL SQLAlchemy URL; None for any other database."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "postgresql":
        return None
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


class PgFanout:
    """LISTEN/NOTIFY for one node. `on_events(id)` and `on_cancel(id)` are called for other
    nodes' notifications; `on_reconnect()` after the connection came back (anything may have
    been missed meanwhile)."""

    def __init__(
        self,
        dsn: str,
        *,
        origin: str,
        on_events: Callable[[str], None],
        on_cancel: Callable[[str], None],
        on_reconnect: Callable[[], None],
        stats: FleetStats | None = None,
    ) -> None:
        self._dsn = dsn
        self.stats = stats or FleetStats()
        """`notifications` counts what other nodes sent (this node's own are not counted)."""
        self.origin = origin
        self._on_events = on_events
        self._on_cancel = on_cancel
        self._on_reconnect = on_reconnect
        self._conn: Any = None  # asyncpg.Connection while connected
        self._use = asyncio.Lock()  # one statement at a time on the connection
        self._events: dict[str, int] = {}
        self._cancels: list[str] = []
        self._dirty = asyncio.Event()
        self._connected = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.sent = 0
        """Notifications sent (for tests and metrics)."""

    async def start(self, timeout: float | None = CONNECT_TIMEOUT) -> None:
        """Start listening; waits for the first connection (up to `timeout`, then goes on
        retrying in the background)."""
        self._tasks = [
            asyncio.create_task(self._supervise(), name="fleet-listen"),
            asyncio.create_task(self._send(), name="fleet-notify"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._connected.wait(), timeout)

    @property
    def connected(self) -> bool:
        return self._conn is not None

    def published(self, interaction_id: str, last_event_id: int) -> None:
        """Events up to `last_event_id` are committed: tell the other nodes (batched)."""
        if last_event_id > self._events.get(interaction_id, 0):
            self._events[interaction_id] = last_event_id
        self._dirty.set()

    def cancel(self, interaction_id: str) -> None:
        """A cancel request for `interaction_id` is recorded: tell its owner to look now."""
        self._cancels.append(interaction_id)
        self._dirty.set()

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    # -- sending ----------------------------------------------------------------------------
    async def _send(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            events, self._events = self._events, {}
            cancels, self._cancels = self._cancels, []
            channels: list[str] = []
            payloads: list[str] = []
            for iid, last in events.items():
                channels.append(EVENTS_CHANNEL)
                payloads.append(_dump({"o": self.origin, "i": iid, "n": last}))
            for iid in cancels:
                channels.append(CANCEL_CHANNEL)
                payloads.append(_dump({"o": self.origin, "i": iid}))
            conn = self._conn
            if conn is None or not channels:
                continue  # dropped while disconnected: the other nodes poll the store
            try:
                async with self._use:
                    await conn.execute(_NOTIFY_MANY, channels, payloads, timeout=PING_SECONDS)
                self.sent += len(channels)
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("fleet.notify_failed", error=str(exc) or type(exc).__name__)

    # -- listening ----------------------------------------------------------------------------
    async def _supervise(self) -> None:
        delay = BACKOFF[0]
        while True:
            try:
                await self._listen_once()
            except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("fleet.listen_lost", error=str(exc) or type(exc).__name__)
            finally:
                was_up = self._conn is not None
                await self._drop()
            delay = BACKOFF[0] if was_up else min(delay * 2, BACKOFF[1])
            await asyncio.sleep(delay)

    async def _listen_once(self) -> None:
        conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT,
            # Named in pg_stat_activity, so an operator (or a test) can tell it apart.
            server_settings={"application_name": f"corral-fleet {self.origin}"[:63]},
        )
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: lost.set())
        await conn.add_listener(EVENTS_CHANNEL, self._notified)
        await conn.add_listener(CANCEL_CHANNEL, self._notified)
        self._conn = conn
        if self._connected.is_set():
            self._on_reconnect()  # whatever was sent while we were away: re-read the store
        self._connected.set()
        log.info("fleet.listening", origin=self.origin)
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), PING_SECONDS)
                break
            async with self._use:
                await conn.execute("SELECT 1", timeout=PING_SECONDS)
        raise ConnectionError("the listening connection closed")

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # never waits on a dead peer

    def _notified(self, _conn: Any, _pid: int, channel: str, payload: str) -> None:
        try:
            msg = json.loads(payload)
            origin, iid = str(msg["o"]), str(msg["i"])
        except (ValueError, KeyError, TypeError):
            log.warning("fleet.bad_notification", channel=channel)
            return
        if channel == EVENTS_CHANNEL:
            if origin != self.origin:  # our own events were published locally already
                self.stats.notifications["events"] += 1
                self._on_events(iid)
        elif channel == CANCEL_CHANNEL:
            if origin != self.origin:
                self.stats.notifications["cancel"] += 1
            self._on_cancel(iid)


def _dump(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))
