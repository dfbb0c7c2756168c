"""One code-interpreter kernel: the `ikernel.py` process of a context and its pipes.

Requests go in on one pipe; the kernel's events (`stream`, `display`, `done`) come back on
another, and what its subprocesses write to fds 1/2 on two more. Everything read here comes
from code the sandbox runs, so it is checked: an event over `EVENT_MAX`, not JSON, or not one
of the expected kinds raises `KernelDied` (the caller then drops the kernel).

Closing is two steps: `kill()` (at once, from anywhere: a waiting cell wakes and ends) and
`release()` of our pipe ends once no cell waits on them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Mapping
from typing import Any

from .fdio import READ_SIZE, set_once
from .kernelproc import KernelDied, KernelProcess

__all__ = ["EVENT_MAX", "KERNEL", "Kernel", "KernelDied", "check_event"]

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ikernel.py")
EVENT_MAX = 24 << 20
"""One message from the kernel; larger means a hostile or broken kernel."""


class Kernel(KernelProcess):
    """One `ikernel.py` process and its three pipes (requests in; stdout, stderr, events out)."""

    message_max = EVENT_MAX

    def __init__(self, cwd: str, env: Mapping[str, str]) -> None:
        super().__init__(KERNEL, cwd, env)
        self.streams = {"stdout": self.stdout_fd, "stderr": self.stderr_fd}
        self.open_streams = dict(self.streams)
        self._waiter: asyncio.Future[None] | None = None

    def read_stream(self, name: str) -> bytes | None:
        """What stdout/stderr has now (b"" if nothing yet); None at EOF."""
        fd = self.open_streams.get(name)
        if fd is None or self.pipes_closed:
            return None
        try:
            data = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return b""
        if not data:
            del self.open_streams[name]
            return None
        return data

    def next_event(self) -> dict[str, Any] | None:
        """A complete event if one is buffered or readable now (KernelDied at EOF)."""
        body = self.read_message()
        return None if body is None else check_event(body)

    async def readable(self) -> None:
        """Wait until the event pipe or an open output stream has something (or EOF)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.closed:
            return
        fds = [*self.open_streams.values(), *(() if self.messages_eof else (self.msg_r,))]
        for fd in fds:
            loop.add_reader(fd, set_once, fut)
        self._waiter = fut
        try:
            await fut
        finally:
            self._waiter = None
            for fd in fds:
                loop.remove_reader(fd)

    def discard_output(self) -> None:
        """Drop what background threads printed between cells."""
        for name in list(self.open_streams):
            while self.read_stream(name):
                pass
        while self.next_event() is not None:
            pass

    def interrupt(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(self.proc.pid, signal.SIGINT)

    def kill(self) -> None:
        """Kill its process group; a cell waiting on it wakes up and ends (KernelDied)."""
        super().kill()
        if self._waiter is not None:
            set_once(self._waiter)

    def release(self) -> None:
        """Close our ends of its pipes. Only once no cell waits on them: a closed fd's number
        can be reused at once, and a waiting cell would then unregister someone else's."""
        self.kill()
        self.close_pipes()


def check_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json allows
        raise KernelDied("sent an event that is not JSON") from None
    if not isinstance(event, dict) or event.get("t") not in ("stream", "display", "done"):
        raise KernelDied("sent an unexpected event")
    return event
