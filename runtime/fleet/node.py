"""This process as a node of a fleet: its identity, its `nodes` row and its heartbeat.

Settings (environment):
- `CORRAL_NODE_ID`: the node's id. Default: generated once and kept in `$CORRAL_HOME/node_id`,
  so a node restarted on the same home is the same node (and finds its own sandboxes).
- `CORRAL_NODE_URL`: where other nodes reach this one's HTTP API (forwarded sandbox calls).
  Default: `http://<--host>:<--port>` (the machine's host name when listening on all addresses;
  with `--port 0`, `corral serve` binds first and passes the port the system chose).
- `CORRAL_LEASE_TTL`: seconds a run's lease lasts without renewal (default 15). The heartbeat
  renews every TTL/3; a node silent for a TTL loses its runs to live nodes.
- `CORRAL_NODE_CAPACITY`: runs this node executes at once, its own and taken over (default 20).

The heartbeat (`Heartbeat`) renews the node row and the leases of the runs executing here, in
one transaction. A run it could not renew was taken by another node: `on_lost` stops it. When
the database has not answered for a whole TTL, every local lease may have been taken already,
so all local runs are stopped too (they could not write a step anyway: writes are fenced).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from runtime.errors import ConfigError, CorralError
from runtime.ids import new_id
from runtime.store.base import NodeRecord, utcnow
from runtime.store.sql import SqlStore

log = structlog.get_logger("corral.fleet.node")

DEFAULT_LEASE_TTL = 15.0
DEFAULT_CAPACITY = 20
NODE_ID_FILE = "node_id"
MAX_NODE_ID = 64


@dataclass(frozen=True)
class NodeConfig:
    id: str
    url: str
    lease_ttl: float = DEFAULT_LEASE_TTL
    capacity: int = DEFAULT_CAPACITY

    @property
    def heartbeat_every(self) -> float:
        return self.lease_ttl / 3

    @classmethod
    def from_env(
        cls, home: Path, *, host: str = "127.0.0.1", port: int = 8000, persistent: bool = True
    ) -> NodeConfig:
        """The node of a `corral serve` on `host:port`. `persistent=False` (an in-process CLI
        run) gets a fresh id each time instead of the home's: it is not a server to reach."""
        node_id = os.environ.get("CORRAL_NODE_ID", "").strip()
        if not node_id:
            node_id = load_node_id(home) if persistent else new_id("cli")
        if len(node_id) > MAX_NODE_ID or not node_id.isprintable() or " " in node_id:
            raise ConfigError(f"CORRAL_NODE_ID must be at most {MAX_NODE_ID} printable characters")
        url = os.environ.get("CORRAL_NODE_URL", "").strip()
        if not url:
            shown = socket.gethostname() if host in ("0.0.0.0", "::", "") else host
            shown = f"[{shown}]" if ":" in shown else shown
            url = f"http://{shown}:{port}" if persistent else ""
        ttl = _float_env("CORRAL_LEASE_TTL", DEFAULT_LEASE_TTL)
        if ttl < 1:
            raise ConfigError("CORRAL_LEASE_TTL must be at least 1 (seconds)")
        capacity = _int_env("CORRAL_NODE_CAPACITY", DEFAULT_CAPACITY)
        if capacity < 1:
            raise ConfigError("CORRAL_NODE_CAPACITY must be at least 1")
        return cls(node_id, url.rstrip("/"), ttl, capacity)


def load_node_id(home: Path) -> str:
    """The id kept in `$CORRAL_HOME/node_id`, created on first use (the controller's own file:
    nothing a sandbox can write, opened without following links)."""
    path = home / NODE_ID_FILE
    try:
        return _read_or_create_node_id(home, path)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"cannot use {path} as this node's id file ({exc}); set CORRAL_NODE_ID or remove it"
        ) from exc


def _read_or_create_node_id(home: Path, path: Path) -> str:
    found = _read_node_id(path)
    if found is not None:
        return found
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    node_id = new_id("node")
    tmp = home / f"{NODE_ID_FILE}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(node_id + "\n")
    try:
        os.link(tmp, path)  # the first process to create it wins; the others read its id
    except FileExistsError:
        node_id = _read_node_id(path) or ""
    finally:
        os.unlink(tmp)
    if not node_id:
        raise OSError(f"{path} appeared empty")
    return node_id


def _read_node_id(path: Path) -> str | None:
    """The id in the file; None when there is no file. Only a regular file is read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, encoding="ascii") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError("not a regular file")
        found = f.read(MAX_NODE_ID + 1).strip()
    if not found:
        raise OSError("empty")
    return found


class Heartbeat:
    """Keeps this node's row and its runs' leases alive (see the module docstring)."""

    def __init__(
        self,
        store: SqlStore,
        config: NodeConfig,
        *,
        running: Callable[[], set[str]],
        on_lost: Callable[[set[str]], None],
        after_beat: Callable[[], object] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.running = running
        self.on_lost = on_lost
        self.after_beat = after_beat
        self.draining = False
        self.started_at = utcnow()
        self._last_ok = time.monotonic()
        self._task: asyncio.Task[None] | None = None

    async def register(self) -> None:
        """Write this node's row (again, after a restart: a fresh `started_at`)."""
        await self.store.upsert_node(
            NodeRecord(
                id=self.config.id,
                url=self.config.url,
                started_at=self.started_at,
                heartbeat_at=utcnow(),
                draining=self.draining,
                capacity=self.config.capacity,
            )
        )
        self._last_ok = time.monotonic()

    async def beat(self) -> None:
        """One renewal; stops local runs whose lease is gone."""
        local = self.running()
        try:
            # A dropped network hangs a query rather than failing it: bound each beat.
            async with asyncio.timeout(self.config.heartbeat_every):
                held = await self.store.heartbeat(local, draining=self.draining)
                if held is None:  # our row was removed (an operator, a cleanup): register again
                    await self.register()
                    held = await self.store.heartbeat(local, draining=self.draining)
        except (CorralError, OSError, TimeoutError) as exc:
            silent = time.monotonic() - self._last_ok
            error = str(exc) or type(exc).__name__
            log.warning("fleet.heartbeat_failed", error=error, silent_for=round(silent, 1))
            if silent >= self.config.lease_ttl and local:
                # Cut off for a whole TTL: another node may already run these. Stop them here;
                # their fenced writes could not land anyway.
                self.on_lost(local)
            return
        self._last_ok = time.monotonic()
        lost = local - (held or set())
        if lost:
            log.warning("fleet.leases_lost", interactions=sorted(lost))
            self.on_lost(lost)
        if self.after_beat is not None:
            self.after_beat()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_every)
            try:
                await self.beat()
            except Exception as exc:  # the heartbeat must outlive any one failure
                log.error("fleet.heartbeat_crashed", error=f"{type(exc).__name__}: {exc}")

    async def start(self) -> None:
        await self.register()
        self._task = asyncio.create_task(self._loop(), name="fleet-heartbeat")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if not self.config.url:
            # An in-process CLI run's node: nobody can reach it, and its id is never reused.
            with contextlib.suppress(CorralError):
                await self.store.delete_node(self.config.id)


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {raw!r}") from None


def _int_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, not {raw!r}") from None
