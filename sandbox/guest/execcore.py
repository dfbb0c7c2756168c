"""The asyncio-free half of the `exec` tool: what to run, how it is started, how its output
is capped and how it ends. `execs.py` drives a `RunningExec` with asyncio; `prelude.py` drives
the same object synchronously for the first exec of a cold sandbox (and can hand it over to
`execs.follow` half-way). Semantics (documented in docs/rpc.md, summed up in execs.py) live
here once, so the two drivers cannot drift apart.

Imports stay cheap (no asyncio, no typing at run time beyond what args.py needs): this module is
on the cold-start path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from typing import IO, Any, Protocol

from . import args as A
from .errors import NOT_A_DIRECTORY, NOT_FOUND, ToolFailure, from_os_error
from .privs import dropexec, popen_credentials
from .shellless import plain_argv, shell_env
from .spawn import native_spawner, spawn_dropped

DEFAULT_OUTPUT_LIMIT = 1 << 20
TIMEOUT_EXIT = 124
POST_EXIT_DRAIN = 1 << 20
"""Read at most this much per stream after the main process exits."""
READ_SIZE = 1 << 16
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
OOM_FILES = ("/sys/fs/cgroup/memory/memory.oom_control", "/sys/fs/cgroup/memory.events")


def base_env(workspace: str) -> dict[str, str]:
    """The environment every child starts from (the call's env goes on top)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env.setdefault("PATH", DEFAULT_PATH)
    env.update(HOME=workspace, LANG="C.UTF-8", TERM="dumb")
    return env


def resolve_cwd(root: str, cwd: str | None) -> str:
    """A working directory: default the workspace `root`; relative paths are under it."""
    if cwd is None:
        return root
    path = os.path.join(root, cwd)
    if not os.path.isdir(path):
        if os.path.exists(path):
            raise ToolFailure(NOT_A_DIRECTORY, f"cwd {cwd}: not a directory")
        raise ToolFailure(NOT_FOUND, f"cwd {cwd}: no such directory")
    return path


class Process(Protocol):
    """What the exec tools use of a child: `subprocess.Popen`, or `spawner.AgentProcess`."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    @property
    def stdin(self) -> IO[bytes] | None: ...
    @property
    def stdout(self) -> IO[bytes] | None: ...
    @property
    def stderr(self) -> IO[bytes] | None: ...

    def poll(self) -> int | None: ...

    def wait(self, timeout: float | None = None) -> int: ...


def spawner() -> str:
    """How children start here: "native" (_agentspawn), "dropexec", or "fork" (Popen)."""
    if dropexec() is None:
        return "fork"
    return "native" if native_spawner() is not None else "dropexec"


def start(
    argv: list[str], *, cwd: str, env: Mapping[str, str], stdin: bool, merge_stderr: bool = False
) -> Process:
    """Start `argv` as the agent in a new session, pipes non-blocking. Raises
    FileNotFoundError, PermissionError, ... as Popen does.

    A server that dropped to the agent starts children through `dropexec` with posix_spawn
    (vfork) when the staged guest has it; else Popen forks the server (privs.py says why). A
    `/bin/sh -c` string the shell would only exec is exec'd directly (shellless.py)."""
    program: str | None = None
    direct = plain_argv(argv, env)
    if direct is not None:
        program, argv = direct
        env = shell_env(env, cwd)
    helper = dropexec()
    proc: Process
    if helper is not None:
        proc = spawn_dropped(
            helper, argv, program=program, cwd=cwd, env=env, stdin=stdin, merge=merge_stderr
        )
    else:
        proc = subprocess.Popen(
            argv,
            executable=program,
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


def kill_group(proc: Process, sig: int = signal.SIGKILL) -> None:
    """Signal the whole process group of `proc` (it was started in its own session)."""
    if proc.returncode is not None:
        return  # reaped: its pid (and so the group id) may belong to someone else now
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)


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


class Output:
    """The shared output cap of one exec (stdout + stderr together)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.left = limit
        self.truncated = False

    def take(self, data: bytes) -> list[bytes]:
        """The chunks to forward for `data`: all of it, its head plus the truncation marker
        once the cap is reached, or nothing after that."""
        if self.truncated:
            return []
        if len(data) <= self.left:
            self.left -= len(data)
            return [data]
        head, self.left, self.truncated = data[: self.left], 0, True
        marker = f"\n[corral: output truncated after {self.limit} bytes]\n".encode()
        return [head, marker] if head else [marker]


class Pipe:
    """One output pipe: read until EOF, or until EAGAIN once the main process has exited
    (then at most POST_EXIT_DRAIN more bytes), so leftover background writers never hold
    the call open."""

    def __init__(self, fd: int, stream: str) -> None:
        self.fd = fd
        self.stream = stream
        self.exited = False
        self.done = False
        self._drained = 0

    def read(self) -> bytes | None:
        """Bytes to forward; None when nothing is there yet (wait for readability). Sets
        `done` at the end (then returns b"")."""
        try:
            data = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            if self.exited:
                self.done = True
                return b""
            return None
        if not data:
            self.done = True
            return b""
        if self.exited:
            self._drained += len(data)
            if self._drained > POST_EXIT_DRAIN:
                self.done = True
                return b""
        return data


class StdinFeed:
    """The call's payload written to the child's stdin (non-blocking); a command that stops
    reading is not an error."""

    def __init__(self, fd: int, data: bytes) -> None:
        self.fd: int | None = fd
        self._view = memoryview(data)

    @property
    def done(self) -> bool:
        return self.fd is None

    def write_some(self) -> bool:
        """Write what the pipe takes; True once finished (the fd is then closed)."""
        while self.fd is not None and self._view:
            try:
                n = os.write(self.fd, self._view)
            except BlockingIOError:
                return False
            except (BrokenPipeError, ConnectionResetError):
                break
            self._view = self._view[n:]
        self.close()
        return True

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class RunningExec:
    """One exec from its arguments to its result dict, whichever loop drives it.

    `launch()` validates and starts; output read from `pipes` is capped by `out.take()`
    (`emit()` queues the chunks in `backlog`, for a driver that sends them later: the launch
    failure message, the prelude); `expire()` is the timeout; `result()` the final dict. A
    launch failure (127/126) leaves `proc` None, its message in `backlog` and `code` set.
    """

    def __init__(self, a: dict[str, Any], stdin: bytes, root: str, env0: Mapping[str, str]):
        self.argv = A.command(a)
        self.cwd = resolve_cwd(root, A.opt_string(a, "cwd"))
        self.env = {**env0, **A.env(a)}
        self.timeout = A.opt_seconds(a, "timeout")
        self.out = Output(A.integer(a, "output_limit", DEFAULT_OUTPUT_LIMIT))
        self.stdin = stdin
        self.proc: Process | None = None
        self.pipes: list[Pipe] = []
        self.feed: StdinFeed | None = None
        self.backlog: list[tuple[str, bytes]] = []
        self.timed_out = False
        self.code: int | None = None
        self.started = 0.0
        self.deadline: float | None = None
        self._oom_before: int | None = None

    def launch(self) -> None:
        """Start the command. Raises ToolFailure for errors that are the call's (E2BIG...)."""
        self._oom_before = oom_count()
        self.started = time.monotonic()
        try:
            proc = start(self.argv, cwd=self.cwd, env=self.env, stdin=bool(self.stdin))
        except (FileNotFoundError, PermissionError, NotADirectoryError) as exc:
            # Like a shell: 127 for "not found", 126 for "cannot execute".
            self.code = 127 if isinstance(exc, FileNotFoundError) else 126
            self.emit("stderr", f"corral: {self.argv[0]}: {exc.strerror}\n".encode())
            return
        except OSError as exc:  # E2BIG (command too long), EAGAIN (pids limit), ...
            raise from_os_error(exc, self.argv[0][:200]) from None
        assert proc.stdout is not None and proc.stderr is not None
        self.proc = proc
        self.pipes = [Pipe(proc.stdout.fileno(), "stdout"), Pipe(proc.stderr.fileno(), "stderr")]
        if self.stdin and proc.stdin is not None:
            self.feed = StdinFeed(os.dup(proc.stdin.fileno()), self.stdin)
            proc.stdin.close()
        if self.timeout is not None:
            self.deadline = self.started + self.timeout

    @property
    def exited(self) -> bool:
        return self.proc is None or self.proc.returncode is not None

    def emit(self, stream: str, data: bytes) -> None:
        self.backlog.extend((stream, chunk) for chunk in self.out.take(data))

    def expire(self) -> None:
        """The timeout: SIGKILL the whole group; the result says timed_out."""
        if self.proc is not None and self.proc.returncode is None:
            self.timed_out = True
            kill_group(self.proc)

    def main_exited(self) -> None:
        for p in self.pipes:
            p.exited = True

    def close(self) -> None:
        """Release the pipes; a main process still running (the call was cancelled or its
        connection lost) gets its group killed, and the caller reaps it."""
        if self.proc is None:
            return
        if self.proc.returncode is None:
            kill_group(self.proc)
        if self.feed is not None:
            self.feed.close()
        for f in (self.proc.stdout, self.proc.stderr):
            if f is not None:
                f.close()

    def result(self) -> dict[str, Any]:
        oom = False
        signal_: int | None = None
        if self.proc is not None:
            after = oom_count()
            oom = self._oom_before is not None and after is not None and after > self._oom_before
            rc = self.proc.returncode
            assert rc is not None
            if self.timed_out:
                self.code, signal_ = TIMEOUT_EXIT, signal.SIGKILL
            elif rc < 0:
                self.code, signal_ = 128 - rc, -rc
            else:
                self.code = rc
        return {
            "exit_code": self.code,
            "duration": time.monotonic() - self.started,
            "timed_out": self.timed_out,
            "truncated": self.out.truncated,
            "signal": signal_,
            "oom_killed": oom,
        }
