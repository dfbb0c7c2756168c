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
import struct
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .fdio import READ_SIZE, kill_group, reap_later, set_once, writable
from .privs import popen_credentials

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ikernel.py")
EVENT_MAX = 24 << 20
"""One message from the kernel; larger means a hostile or broken kernel."""
_LEN = struct.Struct("!I")


class KernelDied(Exception):
    pass


class Kernel:
    """One `ikernel.py` process and its three pipes (requests in; stdout, stderr, events out)."""

    def __init__(self, cwd: str, env: Mapping[str, str]) -> None:
        req_r, self.req_w = os.pipe()
        self.ev_r, ev_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, KERNEL, str(req_r), str(ev_w)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, ev_w),
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                **popen_credentials(),
            )
        except BaseException:
            os.close(self.req_w)
            os.close(self.ev_r)
            raise
        finally:
            os.close(req_r)
            os.close(ev_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.streams = {"stdout": self.proc.stdout.fileno(), "stderr": self.proc.stderr.fileno()}
        for fd in (self.req_w, self.ev_r, *self.streams.values()):
            os.set_blocking(fd, False)
        self.open_streams = dict(self.streams)
        self._events = bytearray()
        self.events_eof = False
        self.closed = False
        """Killed (restart, remove, timeout): the cell in progress ends with KernelDied."""
        self._released = False
        self._waiter: asyncio.Future[None] | None = None

    async def send(self, request: dict[str, Any]) -> None:
        raw = json.dumps(request).encode()
        view = memoryview(_LEN.pack(len(raw)) + raw)
        while view:
            try:
                view = view[os.write(self.req_w, view) :]
            except BlockingIOError:
                await writable(self.req_w)
            except (BrokenPipeError, OSError):
                raise KernelDied from None

    def read_stream(self, name: str) -> bytes | None:
        """What stdout/stderr has now (b"" if nothing yet); None at EOF."""
        fd = self.open_streams.get(name)
        if fd is None or self._released:
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
        while True:
            if len(self._events) >= _LEN.size:
                n = _LEN.unpack_from(self._events)[0]
                if n > EVENT_MAX:
                    raise KernelDied(f"sent a {n}-byte event (more than {EVENT_MAX})")
                if len(self._events) >= _LEN.size + n:
                    body = bytes(self._events[_LEN.size : _LEN.size + n])
                    del self._events[: _LEN.size + n]
                    return check_event(body)
            if self.closed:
                raise KernelDied("restarted")
            if self.events_eof:
                raise KernelDied
            try:
                data = os.read(self.ev_r, READ_SIZE)
            except BlockingIOError:
                return None
            if not data:
                self.events_eof = True
            self._events += data

    async def readable(self) -> None:
        """Wait until the event pipe or an open output stream has something (or EOF)."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.closed:
            return
        fds = [*self.open_streams.values(), *(() if self.events_eof else (self.ev_r,))]
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
        if not self.closed:
            self.closed = True
            kill_group(self.proc)
            reap_later(self.proc)
        if self._waiter is not None:
            set_once(self._waiter)

    def release(self) -> None:
        """Close our ends of its pipes. Only once no cell waits on them: a closed fd's number
        can be reused at once, and a waiting cell would then unregister someone else's."""
        self.kill()
        if self._released:
            return
        self._released = True
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        os.close(self.req_w)
        os.close(self.ev_r)


def check_event(body: bytes) -> dict[str, Any]:
    try:
        event = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than json allows
        raise KernelDied("sent an event that is not JSON") from None
    if not isinstance(event, dict) or event.get("t") not in ("stream", "display", "done"):
        raise KernelDied("sent an unexpected event")
    return event
