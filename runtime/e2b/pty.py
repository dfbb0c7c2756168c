"""E2B's PTY (`sb.pty`): a process on a pseudo-terminal in the sandbox.

Corral's RPC has no pseudo-terminal, so a PTY is the engine's exec with a TTY, as
`corral sandbox shell` does (runtime/cli/tty.py): run as the sandbox's user, in the sandbox's
cgroup, namespaces and read-only root, with every capability dropped — the same confinement as
any other process there. What it prints is the guest's bytes: they are only relayed to the
client, never interpreted, with one exception: the process's own pid, which a fixed `sh`
prologue (ours, run before anything the request names) prints first; it is parsed as a bounded
integer and only ever used to signal that session through the sandbox's RPC.

Input goes to the terminal as sent; `resize` is the engine's exec resize; `kill` sends SIGKILL
to the PTY's whole session (`pkill -s`) from inside the sandbox, as its user.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any, cast

from runtime.e2b.common import Command, E2BError, E2BState, status_of
from runtime.e2b.connect import b64, end_stream, envelope
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend, agent_user
from sandbox.backends.docker_errors import map_docker_error
from sandbox.errors import SandboxError

READ_CHUNK = 65536
PID_LINE_MAX = 32
"""Bytes the prologue's pid line may take; anything longer is not our prologue."""
PROLOGUE = 'echo "$$"; exec "$0" "$@"'
"""`sh -c` prologue: print our pid (the session's: the engine starts a TTY exec as a session
leader), then become the requested program under that same pid."""
KILL = 'pkill -KILL -s "$1" 2>/dev/null || kill -KILL -- "-$1"'
MAX_ROWS_COLS = 10_000
EXIT_POLLS = 50
EXIT_POLL = 0.02
_PID = re.compile(rb"\A(\d{1,9})\r?\n")


class PtySession:
    """One TTY exec: its socket to the engine, its in-sandbox pid."""

    def __init__(self, backend: DockerBackend, exec_id: str, sock: socket.socket) -> None:
        self._backend = backend
        self.exec_id = exec_id
        self._sock = sock
        self.pid = 0
        self.killed = False
        self._pending = b""

    @classmethod
    async def start(
        cls,
        backend: DockerBackend,
        sb: Sandbox,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        rows: int,
        cols: int,
    ) -> PtySession:
        api = backend.client.api

        def create() -> tuple[str, socket.socket]:
            exec_id = api.exec_create(
                sb.handle.container_id,
                ["/bin/sh", "-c", PROLOGUE, *argv],
                stdin=True,
                tty=True,
                user=agent_user(),
                workdir=cwd,
                environment=env,
            )["Id"]
            sock = api.exec_start(exec_id, tty=True, socket=True)
            return exec_id, cast(socket.socket, getattr(sock, "_sock", sock))

        try:
            exec_id, sock = await asyncio.to_thread(create)
        except Exception as exc:
            raise map_docker_error(exc, sandbox_id=sb.id) from exc
        sock.setblocking(False)
        session = cls(backend, exec_id, sock)
        try:
            await session.resize(rows, cols)
            session.pid = await session._read_pid()
        except BaseException:
            session.close()
            raise
        return session

    async def _read_pid(self) -> int:
        loop = asyncio.get_running_loop()
        buf = b""
        while b"\n" not in buf and len(buf) <= PID_LINE_MAX:
            data = await loop.sock_recv(self._sock, PID_LINE_MAX)
            if not data:
                break
            buf += data
        found = _PID.match(buf)
        if found is None:
            raise E2BError(400, "the PTY did not start (no /bin/sh in the sandbox's image?)")
        self._pending = buf[found.end() :]
        return int(found.group(1))

    async def read(self) -> bytes:
        """The terminal's next bytes; b"" once the session has ended."""
        if self._pending:
            data, self._pending = self._pending, b""
            return data
        try:
            return await asyncio.get_running_loop().sock_recv(self._sock, READ_CHUNK)
        except (ConnectionError, OSError):
            return b""

    async def write(self, data: bytes) -> None:
        await asyncio.get_running_loop().sock_sendall(self._sock, data)

    async def resize(self, rows: int, cols: int) -> None:
        if not (0 < rows <= MAX_ROWS_COLS and 0 < cols <= MAX_ROWS_COLS):
            raise E2BError(400, f"PTY size {cols}x{rows} out of range (1..{MAX_ROWS_COLS})")
        api = self._backend.client.api
        try:
            await asyncio.to_thread(api.exec_resize, self.exec_id, height=rows, width=cols)
        except Exception as exc:
            raise map_docker_error(exc) from exc

    async def running(self) -> bool:
        return bool((await self._inspect()).get("Running"))

    async def exit_code(self) -> int | None:
        code = (await self._inspect()).get("ExitCode")
        return code if isinstance(code, int) else None

    async def _inspect(self) -> dict[str, Any]:
        api = self._backend.client.api
        try:
            out: dict[str, Any] = await asyncio.to_thread(api.exec_inspect, self.exec_id)
        except Exception as exc:
            raise map_docker_error(exc) from exc
        return out

    async def kill(self, sb: Sandbox) -> bool:
        """SIGKILL the PTY's session, if it still runs (checked first: its pid may be reused
        once it has ended)."""
        if not self.pid or not await self.running():
            return False
        self.killed = True
        await sb.exec(["/bin/sh", "-c", KILL, "sh", str(self.pid)], timeout=10)
        return True

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()


def size_of(pty: Any) -> tuple[int, int]:
    """(rows, cols) of envd's `PTY {size {rows, cols}}`."""
    size = (pty.get("size") if isinstance(pty, dict) else None) or {}
    try:
        return int(size.get("rows") or 24), int(size.get("cols") or 80)
    except (TypeError, ValueError):
        raise E2BError(400, f"invalid PTY size {size!r}") from None


async def pty_frames(
    e2b: E2BState, sb: Sandbox, command: Command, pty: PtySession, timeout: float | None
) -> AsyncIterator[bytes]:
    """A PTY as envd's event stream: start, pty data..., end. The client going away or the
    stream's deadline kills the PTY's session, as for other commands."""
    procs = e2b.commands.setdefault(sb.id, {})
    procs[command.pid] = command
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    ended = False
    try:
        yield envelope({"event": {"start": {"pid": command.pid}}})
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                data = await asyncio.wait_for(pty.read(), left)
            except TimeoutError:
                yield end_stream(504, "PTY timed out")
                return
            if not data:
                break
            yield envelope({"event": {"data": {"pty": b64(data)}}})
        ended = True
        code = None
        for _ in range(EXIT_POLLS):  # the engine notes the exit just after the stream ends
            if (code := await pty.exit_code()) is not None:
                break
            await asyncio.sleep(EXIT_POLL)
        if pty.killed or code is None:
            end: dict[str, Any] = {"exitCode": -1, "exited": False, "status": "signal: killed"}
        else:
            end = {"exitCode": code, "exited": True, "status": f"exit status {code}"}
        yield envelope({"event": {"end": end}})
        yield end_stream()
    except SandboxError as exc:
        yield end_stream(*status_of(exc))
    finally:
        procs.pop(command.pid, None)
        if not ended:
            with contextlib.suppress(SandboxError, OSError):
                await pty.kill(sb)
        pty.close()
