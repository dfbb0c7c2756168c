"""Background processes (`spawn`): started in their own session, output kept in a ring.

stdout and stderr are merged into one stream read continuously (the process never blocks on a
full pipe). Only the last `RING` bytes are kept: offsets count every byte ever produced, so a
reader asking for an offset that has already left the ring gets the oldest bytes still kept,
and sees the gap because the returned data starts after the offset it asked for.
Processes outlive the connection that spawned them; the table keeps at most `MAX_PROCS`
(finished ones are forgotten oldest first).

`run_pipe` is the other kind: a process tied to one call, its stdin and stdout the call's two
streams (for line protocols such as an MCP server over stdio); it dies with the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from collections.abc import Mapping
from typing import Any, Protocol

from .errors import INVALID_ARGUMENT, LIMIT_EXCEEDED, NOT_FOUND, ToolFailure, from_os_error
from .execcore import Process
from .execs import start
from .fdio import kill_group, read_some, reap_later, wait_exit, writable

RING = 1 << 20
MAX_PROCS = 256
READ_MAX = 1 << 20


class BackgroundProcess:
    def __init__(self, handle: str, argv: list[str], proc: Process) -> None:
        self.handle = handle
        self.argv = argv
        self.proc = proc
        self.started = time.time()
        self.ring = bytearray()
        self.base = 0  # offset of ring[0] in the whole output
        self.exit_code: int | None = None
        self.signal: int | None = None
        self.output_done = False
        self._tasks = [
            asyncio.ensure_future(self._read()),
            asyncio.ensure_future(self._wait()),
        ]

    @property
    def end(self) -> int:
        return self.base + len(self.ring)

    @property
    def running(self) -> bool:
        return self.exit_code is None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        try:
            while data := await read_some(fd):
                self.ring += data
                if len(self.ring) > RING:
                    drop = len(self.ring) - RING
                    del self.ring[:drop]
                    self.base += drop
        finally:
            self.output_done = True
            self.proc.stdout.close()

    async def _wait(self) -> None:
        code = await wait_exit(self.proc)
        if code < 0:
            self.exit_code, self.signal = 128 - code, -code
        else:
            self.exit_code = code

    def status(self) -> dict[str, Any]:
        return {
            "handle": self.handle,
            "pid": self.proc.pid,
            "command": self.argv,
            "running": self.running,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "started": self.started,
            "output_end": self.end,
        }

    def read(self, offset: int) -> tuple[bytes, int]:
        start = max(offset, self.base)
        if start >= self.end:
            return b"", self.end
        data = bytes(self.ring[start - self.base : start - self.base + READ_MAX])
        return data, start + len(data)

    def kill(self, sig: int) -> None:
        kill_group(self.proc, sig)

    def close(self) -> None:
        kill_group(self.proc)
        for t in self._tasks:
            t.cancel()


class ProcessTable:
    def __init__(self) -> None:
        self._procs: dict[str, BackgroundProcess] = {}
        self._ids = itertools.count(1)

    def spawn(self, argv: list[str], *, cwd: str, env: Mapping[str, str]) -> str:
        self._evict()
        try:
            proc = start(argv, cwd=cwd, env=env, stdin=False, merge_stderr=True)
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            raise ToolFailure(NOT_FOUND, f"{argv[0]}: {exc.strerror}") from None
        except OSError as exc:
            raise from_os_error(exc, argv[0][:200]) from None
        handle = f"p{next(self._ids)}"
        self._procs[handle] = BackgroundProcess(handle, argv, proc)
        return handle

    def _evict(self) -> None:
        if len(self._procs) < MAX_PROCS:
            return
        for handle, p in list(self._procs.items()):  # insertion order: oldest first
            if not p.running and p.output_done:
                del self._procs[handle]
                return
        raise ToolFailure(LIMIT_EXCEEDED, f"{MAX_PROCS} background processes are running")

    def get(self, handle: object) -> BackgroundProcess:
        if not isinstance(handle, str) or handle not in self._procs:
            raise ToolFailure(NOT_FOUND, f"no background process {handle!r}")
        return self._procs[handle]

    def kill(self, handle: object, sig: object) -> None:
        if not isinstance(sig, int) or isinstance(sig, bool) or sig not in signal.valid_signals():
            raise ToolFailure(INVALID_ARGUMENT, f"invalid signal {sig!r}")
        self.get(handle).kill(sig)

    def list(self) -> list[dict[str, Any]]:
        return [p.status() for p in self._procs.values()]

    def close(self) -> None:
        for p in self._procs.values():
            p.close()


# -- pipe: a process whose stdin and stdout are the call's two streams ----------------------
PIPE_STDERR_KEEP = 64 * 1024
"""Bytes of a piped process's stderr kept for its result (the tail; the rest is dropped)."""


async def run_pipe(
    sink: PipeSink, argv: list[str], *, cwd: str, env: Mapping[str, str]
) -> dict[str, Any]:
    """Run `argv` with the call's `data` frames as its stdin (an `end` frame closes it) and its
    stdout sent back as `data` frames (stream ``stdout``), both within the channel's credit.

    The call ends when the process has exited and its stdout is drained; the result has
    ``exit_code``, ``signal`` and the tail of its stderr. Cancelling the call kills the whole
    process group. For long-lived line protocols (an MCP server over stdio).
    """
    try:
        proc = start(argv, cwd=cwd, env=env, stdin=True)
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        raise ToolFailure(NOT_FOUND, f"{argv[0]}: {exc.strerror}") from None
    except OSError as exc:
        raise from_os_error(exc, argv[0][:200]) from None
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    stdin_fd = os.dup(proc.stdin.fileno())
    proc.stdin.close()
    stderr = bytearray()
    tasks = [
        asyncio.ensure_future(_pipe_in(sink, stdin_fd)),
        asyncio.ensure_future(_pipe_out(sink, proc.stdout.fileno())),
        asyncio.ensure_future(_pipe_err(proc.stderr.fileno(), stderr)),
    ]
    try:
        code = await wait_exit(proc)
        # What it wrote before exiting is still delivered; children keeping the pipe open
        # do not hold the call (their later output is dropped).
        for t in tasks[1:]:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(t), 1.0)
    finally:
        if proc.returncode is None:
            kill_group(proc)
            reap_later(proc)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        proc.stdout.close()
        proc.stderr.close()
    return {
        "exit_code": 128 - code if code < 0 else code,
        "signal": -code if code < 0 else None,
        "stderr": bytes(stderr[-PIPE_STDERR_KEEP:]).decode("utf-8", "replace"),
    }


class PipeSink(Protocol):
    id: int

    async def get(self) -> tuple[dict[str, Any], bytes]: ...
    def consumed(self, payload_len: int) -> None: ...
    async def send_stream(self, header: dict[str, Any], payload: bytes) -> None: ...


async def _pipe_in(sink: PipeSink, fd: int) -> None:
    try:
        while True:
            header, chunk = await sink.get()
            if header.get("t") == "end":
                return
            view = memoryview(chunk)
            while view:
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    await writable(fd)
                    continue
                except BrokenPipeError:
                    return  # the process closed its stdin (or exited)
                view = view[n:]
            sink.consumed(len(chunk))
    finally:
        os.close(fd)


async def _pipe_out(sink: PipeSink, fd: int) -> None:
    header = {"t": "data", "id": sink.id, "s": "stdout"}
    while data := await read_some(fd):
        await sink.send_stream(header, data)


async def _pipe_err(fd: int, keep: bytearray) -> None:
    while data := await read_some(fd):
        keep += data
        if len(keep) > PIPE_STDERR_KEEP:
            del keep[: len(keep) - PIPE_STDERR_KEEP]
