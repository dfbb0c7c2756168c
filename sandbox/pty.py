"""A process on a pseudo-terminal in a sandbox (`Pty`), for front doors that offer one
(E2B's `sb.pty`).

The RPC has no pseudo-terminal, so a PTY is the engine's exec with a TTY, as
`corral sandbox shell` does (runtime/cli/tty.py): run as the sandbox's user, in the sandbox's
cgroup, namespaces and read-only root, with every capability dropped — the same confinement as
any other process there. What it prints is the sandbox's bytes: they are only relayed, never
interpreted, with one exception: the process's own pid, which a fixed `sh` prologue (ours, run
before anything the caller names) prints first; it is parsed as a bounded integer and only
ever used to signal that session through the sandbox's RPC, as the sandbox's user.

Input goes to the terminal as sent; `resize` is the engine's exec resize; `kill` sends SIGKILL
to the PTY's whole session (`pkill -s`) from inside the sandbox. Docker backend only.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
from typing import Any, cast

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
_PID = re.compile(rb"\A(\d{1,9})\r?\n")


class Pty:
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
        sb: Sandbox,
        argv: list[str],
        *,
        cwd: str,
        env: dict[str, str],
        rows: int,
        cols: int,
    ) -> Pty:
        backend = sb.backend
        if not isinstance(backend, DockerBackend):
            raise SandboxError("a PTY needs the Docker backend", reason="invalid_argument")
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
            raise SandboxError(
                "the PTY did not start (no /bin/sh in the sandbox's image?)", reason="start_failed"
            )
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
            raise SandboxError(
                f"PTY size {cols}x{rows} out of range (1..{MAX_ROWS_COLS})",
                reason="invalid_argument",
            )
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
