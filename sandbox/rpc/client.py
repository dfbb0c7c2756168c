"""`RpcClient`: the async host-side API of the in-sandbox tool server.

Every method takes ``timeout: float | None`` (seconds; builtin `TimeoutError` when it runs
out, and the guest is told to cancel the call). Cancelling the awaiting task also cancels
the call in the guest (an exec's whole process group is killed). Guest refusals raise the
`ToolError` subclasses of `sandbox.errors`; a lost connection raises `ConnectionLost`.
"""

from __future__ import annotations

import asyncio
import inspect
import signal as signals
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sandbox.errors import LimitExceeded, ProtocolError
from sandbox.guest.channel import CallState
from sandbox.guest.execs import DEFAULT_OUTPUT_LIMIT
from sandbox.guest.files import READ_MAX
from sandbox.guest.wire import CHUNK
from sandbox.rpc import decode as D
from sandbox.rpc.connection import Connection, tcp_connect, unix_connect
from sandbox.types import ExecResult, FileInfo, ProcessStatus, PythonResult

OutputCallback = Callable[[str, bytes], Awaitable[None] | None]
GUARD = 10.0
"""Extra seconds the host waits past a timeout the guest enforces itself (exec, python)."""
_MARKER_SLACK = 4096
BROWSER_GUARD = 90.0
"""The guest allows a browser action its timeout, a grace and Chromium's launch time."""


class RpcClient:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- lifecycle ------------------------------------------------------------------------
    @classmethod
    async def connect(cls, path: str | Path, *, timeout: float = 10.0) -> RpcClient:
        """Connect to a guest's Unix socket, retrying until it accepts, and handshake."""
        conn = await Connection.open(str(path), lambda f: unix_connect(path, f), timeout=timeout)
        return cls(conn)

    @classmethod
    async def connect_tcp(
        cls, host: str, port: int, *, token: str, timeout: float = 10.0
    ) -> RpcClient:
        """Connect over TCP (backends without shared folders); `token` authenticates us."""
        conn = await Connection.open(
            f"{host}:{port}", lambda f: tcp_connect(host, port, f), timeout=timeout, token=token
        )
        return cls(conn)

    @property
    def closed(self) -> bool:
        return self._conn.closed

    async def aclose(self) -> None:
        await self._conn.aclose()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- plumbing -------------------------------------------------------------------------
    async def _call(
        self,
        method: str,
        args: dict[str, Any] | None = None,
        payload: bytes | memoryview = b"",
        *,
        timeout: float | None = None,
    ) -> tuple[dict[str, Any], bytes]:
        state = self._conn.start(method, args or {}, payload)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    header, data = await self._conn.receive(state)
                    if header["t"] == "result":
                        result: dict[str, Any] = header["r"]
                        return result, data
                    state.consumed(len(data))  # a stream this method does not expect
        finally:
            self._conn.finish(state)

    async def _stream(
        self, method: str, args: dict[str, Any], timeout: float | None
    ) -> AsyncIterator[bytes]:
        """Chunks of a guest stream; credit goes back only as the consumer takes them."""
        state = self._conn.start(method, args)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        try:
            while True:
                if deadline is None:
                    header, data = await self._conn.receive(state)
                else:
                    async with asyncio.timeout_at(deadline):
                        header, data = await self._conn.receive(state)
                if header["t"] == "result":
                    return
                yield data
                state.consumed(len(data))
        finally:
            self._conn.finish(state)

    # -- basics ---------------------------------------------------------------------------
    async def ping(self, *, timeout: float | None = None) -> None:
        await self._call("ping", timeout=timeout)

    async def info(self, *, timeout: float | None = None) -> dict[str, Any]:
        """protocol, python, uid, gid, pid, workspace, playwright (importable), oom_counter."""
        result, _ = await self._call("info", timeout=timeout)
        return result

    # -- exec -----------------------------------------------------------------------------
    async def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        output_limit: int | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        """Run a command (str: via ``/bin/sh -c``; list: argv) and wait for it to exit.

        `on_output(stream, chunk)` ("stdout"/"stderr") is called as output is produced, in
        order per stream; it may be a coroutine function. `timeout` is enforced in the
        sandbox (the process group is killed and the result says ``timed_out``).
        """
        limit = DEFAULT_OUTPUT_LIMIT if output_limit is None else output_limit
        args = {
            "command": command,
            "cwd": cwd,
            "env": dict(env or {}),
            "timeout": timeout,
            "output_limit": limit,
        }
        out: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        total = 0
        state = self._conn.start("exec", args, stdin or b"")
        try:
            async with asyncio.timeout(None if timeout is None else timeout + GUARD):
                while True:
                    header, data = await self._conn.receive(state)
                    if header["t"] == "result":
                        return _exec_result(header["r"], out)
                    stream = header.get("s")
                    total += len(data)
                    if stream not in out or total > limit + _MARKER_SLACK:
                        raise ProtocolError(f"guest sent unexpected exec output ({stream!r})")
                    out[stream].append(data)
                    if on_output is not None:
                        maybe = on_output(stream, data)
                        if inspect.isawaitable(maybe):
                            await maybe
                    state.consumed(len(data))
        finally:
            self._conn.finish(state)

    # -- background processes -------------------------------------------------------------
    async def spawn(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> str:
        """Start a background process; returns its handle (stdout+stderr merged, kept in a
        1 MiB ring: see `proc_read`)."""
        args = {"command": command, "cwd": cwd, "env": dict(env or {})}
        result, _ = await self._call("spawn", args, timeout=timeout)
        return D.field(result, "handle", str)

    async def pipe(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessPipe:
        """Start a process whose stdin and stdout are a byte stream of this connection (for
        line protocols such as an MCP server over stdio). It lives as long as the returned
        `ProcessPipe` is open: `aclose()` (or a lost connection) kills its process group."""
        args = {"command": command, "cwd": cwd, "env": dict(env or {})}
        return ProcessPipe(self._conn, self._conn.start("pipe", args))

    async def proc_poll(self, handle: str, *, timeout: float | None = None) -> ProcessStatus:
        result, _ = await self._call("proc_poll", {"handle": handle}, timeout=timeout)
        return D.process_status(result)

    async def proc_read(
        self, handle: str, offset: int = 0, *, timeout: float | None = None
    ) -> tuple[bytes, int]:
        """Output from `offset` on (at most 1 MiB) and the offset to ask for next.

        Only the newest 1 MiB is kept: when `offset` has already left the ring, the data
        starts later than asked (``new_offset - len(data) > offset``).
        """
        result, data = await self._call(
            "proc_read", {"handle": handle, "offset": offset}, timeout=timeout
        )
        return data, D.field(result, "offset", int)

    async def proc_kill(
        self, handle: str, signal: int = signals.SIGTERM, *, timeout: float | None = None
    ) -> None:
        """Send `signal` to the process's whole group."""
        await self._call("proc_kill", {"handle": handle, "signal": int(signal)}, timeout=timeout)

    async def proc_list(self, *, timeout: float | None = None) -> list[ProcessStatus]:
        _, data = await self._call("proc_list", timeout=timeout)
        return [D.process_status(r) for r in D.json_list(data)]

    # -- python session -------------------------------------------------------------------
    async def python(self, code: str, *, timeout: float | None = None) -> PythonResult:
        """Run a cell in the persistent Python session (state survives between calls)."""
        guard = None if timeout is None else timeout + GUARD
        _, data = await self._call("python", {"code": code, "timeout": timeout}, timeout=guard)
        r = D.json_object(data)
        return PythonResult(
            stdout=D.field(r, "stdout", str),
            stderr=D.field(r, "stderr", str),
            result_repr=D.opt_str(r, "result_repr"),
            error=D.opt_str(r, "error"),
            timed_out=D.field(r, "timed_out", bool),
            restarted=D.field(r, "restarted", bool),
        )

    async def python_restart(self, *, timeout: float | None = None) -> None:
        await self._call("python_restart", timeout=timeout)

    # -- files ----------------------------------------------------------------------------
    async def read(self, path: str, *, timeout: float | None = None) -> bytes:
        """A whole file (at most 64 MiB, else LimitExceeded: use `download`)."""
        chunks: list[bytes] = []
        size = 0
        async for chunk in self._stream("read", {"path": path}, timeout):
            size += len(chunk)
            if size > READ_MAX:
                raise LimitExceeded(f"{path}: larger than {READ_MAX} bytes; use download()")
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def write(
        self,
        path: str,
        data: bytes,
        *,
        mode: int = 0o644,
        parents: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Write a file atomically (a temp file renamed over the destination)."""
        if len(data) <= CHUNK:
            args = {"path": path, "mode": mode, "parents": parents, "whole": True}
            await self._call("upload", args, data, timeout=timeout)
            return
        await self.upload(path, _slices(data), mode=mode, parents=parents, timeout=timeout)

    async def upload(
        self,
        path: str,
        chunks: AsyncIterable[bytes | memoryview],
        *,
        mode: int = 0o644,
        parents: bool = True,
        timeout: float | None = None,
    ) -> None:
        """Stream a file in; it appears (atomically) only once every chunk has arrived."""
        state = self._conn.start("upload", {"path": path, "mode": mode, "parents": parents})
        sender = asyncio.ensure_future(_send_chunks(state, chunks))
        try:
            async with asyncio.timeout(timeout):
                while True:
                    header, _data = await self._conn.receive(state)
                    if header["t"] == "result":
                        break
        finally:
            if not sender.done():
                sender.cancel()
            elif not sender.cancelled():
                sender.exception()  # a failed source already failed the call (raised above)
            self._conn.finish(state)

    def download(self, path: str, *, timeout: float | None = None) -> AsyncIterator[bytes]:
        """A file's content in chunks of up to 1 MiB, with flow control."""
        return self._stream("download", {"path": path}, timeout)

    def tar(self, path: str = ".", *, timeout: float | None = None) -> AsyncIterator[bytes]:
        """A tar stream of a folder (members relative to it; symlinks stored, not followed)."""
        return self._stream("tar", {"path": path}, timeout)

    async def list(
        self, path: str = ".", *, recursive: bool = False, timeout: float | None = None
    ) -> list[FileInfo]:
        _, data = await self._call("list", {"path": path, "recursive": recursive}, timeout=timeout)
        return [D.file_info(r) for r in D.json_list(data)]

    async def stat(self, path: str, *, timeout: float | None = None) -> FileInfo:
        result, _ = await self._call("stat", {"path": path}, timeout=timeout)
        return D.file_info(result)

    async def remove(
        self, path: str, *, recursive: bool = False, timeout: float | None = None
    ) -> None:
        await self._call("remove", {"path": path, "recursive": recursive}, timeout=timeout)

    async def mkdir(self, path: str, *, parents: bool = True, timeout: float | None = None) -> None:
        await self._call("mkdir", {"path": path, "parents": parents}, timeout=timeout)

    async def move(self, src: str, dst: str, *, timeout: float | None = None) -> None:
        await self._call("move", {"src": src, "dst": dst}, timeout=timeout)

    async def sha256(self, path: str, *, timeout: float | None = None) -> str:
        result, _ = await self._call("sha256", {"path": path}, timeout=timeout)
        return D.field(result, "sha256", str)

    # -- browser --------------------------------------------------------------------------
    async def browser(
        self, action: str, args: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run one browser action (see sandbox/guest/browser.py); returns its result object.

        `timeout` bounds the action in the guest; the host waits a little longer, since the
        guest stops a stuck browser itself and says so.
        """
        call_args = {k: v for k, v in (args or {}).items() if v is not None}
        if timeout is not None:
            call_args["timeout"] = timeout
        guard = None if timeout is None else timeout + BROWSER_GUARD
        _, data = await self._call("browser", {"action": action, "args": call_args}, timeout=guard)
        return D.json_object(data)


class ProcessPipe:
    """A process in the sandbox with its stdin and stdout as a stream (see `RpcClient.pipe`).

    `read()` returns stdout as it comes and ``b""`` once the process has exited (then
    `result` holds ``exit_code``, ``signal`` and the tail of ``stderr``); a guest refusal
    (no such command, ...) raises its `ToolError` from `read()`. `write()` waits for the
    guest's credit, so a process that stops reading its stdin slows the writer down.
    """

    def __init__(self, conn: Connection, state: CallState) -> None:
        self._conn = conn
        self._state = state
        self._done = False
        self.result: dict[str, Any] | None = None

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        for i in range(0, len(view), CHUNK):
            await self._state.send_stream({"t": "data", "id": self._state.id}, view[i : i + CHUNK])

    def close_stdin(self) -> None:
        if not self._done and not self._state.channel.closed:
            self._state.channel.send({"t": "end", "id": self._state.id})

    async def read(self) -> bytes:
        if self._done:
            return b""
        try:
            header, data = await self._conn.receive(self._state)
        except BaseException:
            self._done = True
            raise
        if header["t"] == "result":
            self._done = True
            self.result = header["r"]
            return b""
        if header.get("s") != "stdout":
            raise ProtocolError(f"guest sent unexpected pipe output ({header.get('s')!r})")
        self._state.consumed(len(data))
        return bytes(data)

    async def aclose(self) -> None:
        """Stop the process (its whole group) unless it has already exited."""
        self._done = True
        self._conn.finish(self._state)

    async def __aenter__(self) -> ProcessPipe:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


async def _slices(data: bytes) -> AsyncIterator[memoryview]:
    view = memoryview(data)
    for i in range(0, len(view), CHUNK):
        yield view[i : i + CHUNK]


async def _send_chunks(state: CallState, chunks: AsyncIterable[bytes | memoryview]) -> None:
    """Send an upload's chunks within the guest's credit, then ``end``.

    If the source fails, the call is cancelled in the guest (the temp file is dropped) and
    the waiting caller gets the source's exception.
    """
    try:
        async for chunk in chunks:
            view = memoryview(chunk)
            for i in range(0, len(view), CHUNK):
                await state.send_stream({"t": "data", "id": state.id}, view[i : i + CHUNK])
        state.channel.send({"t": "end", "id": state.id})
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        state.channel.send({"t": "cancel", "id": state.id})
        state.fail(exc)
        raise


def _exec_result(r: dict[str, Any], out: dict[str, list[bytes]]) -> ExecResult:
    stdout, stderr = b"".join(out["stdout"]), b"".join(out["stderr"])
    return ExecResult(
        exit_code=D.field(r, "exit_code", int),
        stdout=stdout.decode("utf-8", "replace"),
        stderr=stderr.decode("utf-8", "replace"),
        duration=D.number(r, "duration"),
        timed_out=D.field(r, "timed_out", bool),
        truncated=D.field(r, "truncated", bool),
        signal=D.opt_int(r, "signal"),
        oom_killed=D.field(r, "oom_killed", bool),
        stdout_bytes=stdout,
        stderr_bytes=stderr,
    )
