"""How the SQL store runs a transaction: two runners behind one small interface.

Every store operation is one sync function `fn(conn, ...)` run inside one transaction. Where it
runs depends on the database:

- SQLite (`SqliteRunner`): a sync engine on the stdlib driver, transactions run on a small
  thread pool. One thread hop per operation. Through the `aiosqlite` adapter every statement
  costs several hops (cursor, execute, fetch, close, commit); measured here an event append took
  5.5 ms that way against 0.7 ms this way, and the loop appends an event per step.
- Anything else (`AsyncRunner`, e.g. PostgreSQL on asyncpg): SQLAlchemy's async engine; the same
  sync function runs through `AsyncConnection.run_sync`, awaiting the driver per statement.

On SQLite every connection runs in WAL mode with a busy timeout, and write transactions start
with `BEGIN IMMEDIATE`: a writer takes the file's write lock up front, so it waits its turn
(busy timeout) rather than failing when another process committed since it began reading.
Inside one process an asyncio lock queues writers before they reach SQLite, so they never sleep
in SQLite's busy handler against each other.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InvalidRequestError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import StaticPool

from runtime.errors import ConfigError

P = ParamSpec("P")
T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
SQLITE_THREADS = 4
PG_IDLE_IN_TRANSACTION_MS = 10_000


class TxRunner(Protocol):
    dialect: str

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, ...)` in a read transaction (rolled back at the end)."""
        ...

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run `fn(conn, ...)` in a write transaction, committed before this returns."""
        ...

    async def aclose(self) -> None: ...


class SqliteRunner:
    dialect = "sqlite"

    def __init__(self, url: URL) -> None:
        memory = url.database in (None, "", ":memory:")
        if not memory:
            Path(str(url.database)).parent.mkdir(parents=True, exist_ok=True)
        self._engine = _sqlite_engine(url.set(drivername="sqlite+pysqlite"), memory=memory)
        # An in-memory database exists once per connection: one connection, one thread.
        self._pool = ThreadPoolExecutor(
            max_workers=1 if memory else SQLITE_THREADS, thread_name_prefix="corral-store"
        )
        self._write_lock = asyncio.Lock()

    def _tx(self, write: bool, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        with _connection(self._engine, write) as conn, conn.begin():
            return fn(conn, *args, **kwargs)

    async def _run(self, write: bool, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
        call = functools.partial(self._tx, write, fn, args, kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._pool, call)

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        return await self._run(False, fn, args, kwargs)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._write_lock:
            return await self._run(True, fn, args, kwargs)

    async def aclose(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._engine.dispose)
        self._pool.shutdown(wait=True)


@contextlib.contextmanager
def _connection(engine: Engine, write: bool) -> Iterator[Connection]:
    with engine.connect() as conn:
        if write:
            # Read by the `begin` hook below to emit BEGIN IMMEDIATE.
            conn.info["corral_write"] = True
        try:
            yield conn
        finally:
            conn.info.pop("corral_write", None)


def _sqlite_engine(url: URL, *, memory: bool) -> Engine:
    if memory:
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url, connect_args={"check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Take transaction control from the driver so the `begin` hook decides how to BEGIN.
        dbapi_conn.isolation_level = None
        dbapi_conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        dbapi_conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a crash of the process (it is in the WAL file
        # when COMMIT returns); only an OS crash or power loss can lose the last commits.
        dbapi_conn.execute("PRAGMA synchronous = NORMAL")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.info.get("corral_write") else "BEGIN")

    return engine


class AsyncRunner:
    def __init__(self, url: URL) -> None:
        connect_args: dict[str, Any] = {}
        if url.get_backend_name() == "postgresql" and url.get_driver_name() == "asyncpg":
            # Our transactions never wait on anything but the database: one left idle is a
            # client that vanished (a partitioned node). End it, so its row locks do not keep
            # other nodes from claiming the runs it held.
            connect_args["server_settings"] = {
                "idle_in_transaction_session_timeout": str(PG_IDLE_IN_TRANSACTION_MS)
            }
        self._engine: AsyncEngine = create_async_engine(
            url, pool_pre_ping=True, connect_args=connect_args
        )
        self.dialect = self._engine.dialect.name

    async def read(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._engine.connect() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def write(
        self, fn: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        async with self._engine.begin() as conn:
            return await conn.run_sync(fn, *args, **kwargs)

    async def aclose(self) -> None:
        await self._engine.dispose()


def open_runner(url: str) -> TxRunner:
    """The runner for a SQLAlchemy URL; `postgresql://` gets the asyncpg driver."""
    try:
        parsed = make_url(url)
        if parsed.get_backend_name() == "sqlite":
            return SqliteRunner(parsed)
        if parsed.drivername in ("postgresql", "postgres"):
            parsed = parsed.set(drivername="postgresql+asyncpg")
        return AsyncRunner(parsed)
    except (ArgumentError, NoSuchModuleError, InvalidRequestError, ImportError) as e:
        raise ConfigError(f"database URL {url!r} cannot be used: {e}") from e
    except DBAPIError as e:  # pragma: no cover - engines connect lazily
        raise ConfigError(f"database URL {url!r} cannot be used: {e.orig}") from e
