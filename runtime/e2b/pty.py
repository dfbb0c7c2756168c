"""E2B's PTY (`sb.pty`) as envd's event stream, on `sandbox.pty.Pty` (the engine's TTY exec;
its confinement and what is read from it are described there)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from runtime.e2b.common import Command, E2BError, E2BState, status_of
from runtime.e2b.connect import b64, end_stream, envelope
from sandbox.api import Sandbox
from sandbox.errors import SandboxError
from sandbox.pty import Pty

EXIT_POLLS = 50
EXIT_POLL = 0.02


def size_of(pty: Any) -> tuple[int, int]:
    """(rows, cols) of envd's `PTY {size {rows, cols}}`."""
    size = (pty.get("size") if isinstance(pty, dict) else None) or {}
    try:
        return int(size.get("rows") or 24), int(size.get("cols") or 80)
    except (TypeError, ValueError):
        raise E2BError(400, f"invalid PTY size {size!r}") from None


async def pty_frames(
    e2b: E2BState, sb: Sandbox, command: Command, pty: Pty, timeout: float | None
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
