"""The `exec` tool: run a command in its own session and stream its output.

- A string runs through ``/bin/sh -c``; a list is the argv. Each exec is a new session (and so
  a new process group); a timeout or a cancelled call SIGKILLs the whole group.
- stdout/stderr go out as they are produced, each stream in order. At most `output_limit`
  bytes (stdout + stderr together) are forwarded; then a truncation marker is sent on the
  stream that overflowed and the pipes keep being drained (so the command never blocks on a
  full pipe) but nothing more is forwarded.
- The call ends when the command's main process exits: what it wrote is still read, but
  processes it left running in the background keep running and their later output is dropped
  (use `spawn` for background work).
- Exit: ``exit_code`` is the process's code; killed by signal N: ``exit_code = 128 + N`` and
  ``signal = N``; timed out: ``exit_code = 124``, ``signal = 9``, ``timed_out = True``.
- ``oom_killed`` compares the cgroup's ``oom_kill`` counter before and after (cgroup v1
  ``memory.oom_control`` or v2 ``memory.events``): any OOM kill in the container during the
  exec counts, also one of a concurrent exec.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import Any, Protocol

from . import args as A
from .errors import NOT_A_DIRECTORY, NOT_FOUND, ToolFailure, from_os_error
from .fdio import READ_SIZE, kill_group, reap_later, set_once, wait_exit, writable
from .paths import Workspace
from .privs import popen_credentials

DEFAULT_OUTPUT_LIMIT = 1 << 20
TIMEOUT_EXIT = 124
_POST_EXIT_DRAIN = 1 << 20  # read at most this much per stream after the main process exits
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


class StreamSink(Protocol):
    id: int

    async def send_stream(self, header: dict[str, Any], payload: bytes) -> None: ...


def base_env(workspace: str) -> dict[str, str]:
    """The environment every child starts from (the call's env goes on top)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(HOME=workspace, LANG="C.UTF-8", TERM="dumb")
    return env


def resolve_cwd(ws: Workspace, cwd: str | None) -> str:
    """A working directory: default the workspace; relative paths are under it."""
    if cwd is None:
        return ws.root
    path = os.path.join(ws.root, cwd)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise ToolFailure(NOT_A_DIRECTORY, f"cwd {cwd}: not a directory")
        raise ToolFailure(NOT_FOUND, f"cwd {cwd}: no such directory")
    return path


def start(
    argv: list[str], *, cwd: str, env: Mapping[str, str], stdin: bool, merge_stderr: bool = False
) -> subprocess.Popen[bytes]:
    """Start `argv` in a new session. Raises FileNotFoundError/PermissionError as Popen."""
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT if merge_stderr else subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
        **popen_credentials(),
    )
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            os.set_blocking(pipe.fileno(), False)
    return proc


def oom_count() -> int | None:
    for path in OOM_FILES:
        try:
            with open(path, "rb") as f:
                for line in f:
                    key, _, value = line.partition(b" ")
                    if key == b"oom_kill":
                        return int(value)
        except (OSError, ValueError):
            continue
    return None


class _Output:
    """Forwarding with the shared output cap."""

    def __init__(self, sink: StreamSink, limit: int) -> None:
        self.sink = sink
        self.left = limit
        self.limit = limit
        self.truncated = False

    async def emit(self, stream: str, data: bytes) -> None:
        if self.truncated:
            return
        header = {"t": "data", "id": self.sink.id, "s": stream}
        if len(data) <= self.left:
            self.left -= len(data)
            await self.sink.send_stream(header, data)
            return
        head, self.left, self.truncated = data[: self.left], 0, True
        if head:
            await self.sink.send_stream(header, head)
        marker = f"\n[corral: output truncated after {self.limit} bytes]\n".encode()
        await self.sink.send_stream(header, marker)


class _Pump:
    """Reads one pipe until EOF, or until EAGAIN once the main process has exited."""

    def __init__(self, fd: int, stream: str, out: _Output) -> None:
        self.fd = fd
        self.stream = stream
        self.out = out
        self.exited = False
        self._wake: asyncio.Future[None] | None = None

    def main_exited(self) -> None:
        self.exited = True
        if self._wake is not None:
            set_once(self._wake)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        drained = 0
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                if self.exited:
                    return
                self._wake = loop.create_future()
                loop.add_reader(self.fd, set_once, self._wake)
                try:
                    await self._wake
                finally:
                    loop.remove_reader(self.fd)
                    self._wake = None
                continue
            if not data:
                return
            if self.exited:
                drained += len(data)
                if drained > _POST_EXIT_DRAIN:
                    return
            await self.out.emit(self.stream, data)


async def _feed(fd: int, data: bytes) -> None:
    view = memoryview(data)
    try:
        while view:
            try:
                n = os.write(fd, view)
            except BlockingIOError:
                await writable(fd)
                continue
            view = view[n:]
    except (BrokenPipeError, ConnectionResetError):
        pass  # the command stopped reading: not an error
    finally:
        os.close(fd)


async def run_exec(
    sink: StreamSink, a: dict[str, Any], stdin: bytes, ws: Workspace, env0: Mapping[str, str]
) -> dict[str, Any]:
    argv = A.command(a)
    cwd = resolve_cwd(ws, A.opt_string(a, "cwd"))
    env = {**env0, **A.env(a)}
    timeout = A.opt_seconds(a, "timeout")
    limit = A.integer(a, "output_limit", DEFAULT_OUTPUT_LIMIT)
    out = _Output(sink, limit)
    oom_before = oom_count()
    started = time.monotonic()
    try:
        proc = start(argv, cwd=cwd, env=env, stdin=bool(stdin))
    except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
        # Like a shell: 127 for "not found", 126 for "cannot execute".
        code = 127 if isinstance(exc, FileNotFoundError) else 126
        await out.emit("stderr", f"corral: {argv[0]}: {exc.strerror}\n".encode())
        return _result(code, started, out, timed_out=False, signal_=None, oom=False)
    except OSError as exc:  # E2BIG (command too long), EAGAIN (pids limit), ...
        raise from_os_error(exc, argv[0][:200]) from None

    assert proc.stdout is not None and proc.stderr is not None
    pumps = [_Pump(proc.stdout.fileno(), "stdout", out), _Pump(proc.stderr.fileno(), "stderr", out)]
    tasks = [asyncio.ensure_future(p.run()) for p in pumps]
    feeder = None
    if stdin and proc.stdin is not None:
        feeder = asyncio.ensure_future(_feed(os.dup(proc.stdin.fileno()), stdin))
        proc.stdin.close()
    timed_out = False

    def on_timeout() -> None:
        nonlocal timed_out
        timed_out = True
        kill_group(proc)

    loop = asyncio.get_running_loop()
    timer = loop.call_later(timeout, on_timeout) if timeout is not None else None
    try:
        returncode = await wait_exit(proc)
        for p in pumps:
            p.main_exited()
        await asyncio.gather(*tasks)
    finally:
        if timer is not None:
            timer.cancel()
        if proc.returncode is None:  # cancelled: take the whole group down
            kill_group(proc)
            reap_later(proc)
        for t in [*tasks, feeder]:
            if t is not None and not t.done():
                t.cancel()
        proc.stdout.close()
        proc.stderr.close()
    oom_after = oom_count()
    oom = oom_before is not None and oom_after is not None and oom_after > oom_before
    if timed_out:
        return _result(TIMEOUT_EXIT, started, out, timed_out=True, signal_=signal.SIGKILL, oom=oom)
    if returncode < 0:
        return _result(
            128 - returncode, started, out, timed_out=False, signal_=-returncode, oom=oom
        )
    return _result(returncode, started, out, timed_out=False, signal_=None, oom=oom)


def _result(
    code: int, started: float, out: _Output, *, timed_out: bool, signal_: int | None, oom: bool
) -> dict[str, Any]:
    return {
        "exit_code": code,
        "duration": time.monotonic() - started,
        "timed_out": timed_out,
        "truncated": out.truncated,
        "signal": signal_,
        "oom_killed": oom,
    }
