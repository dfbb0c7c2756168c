"""A kernel script's process and its pipes: what the Python session (`pysession.py`, running
`kernel.py`) and the code interpreter (`interp_kernel.py`, running `ikernel.py`) share.

The child gets two pipes: requests in, messages out, both framed as a 4-byte big-endian length
+ a JSON object (the scripts' side of the framing is `kernelcore.py`). Its fds 1 and 2 are
pipes too, read by the subclasses. It runs in its own session (a timeout kills its whole
group) with the agent's credentials. Our ends are non-blocking.

Closing is two steps: `kill()` (at once, from anywhere) and `close_pipes()` of our ends, once.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from .fdio import READ_SIZE, kill_group, reap_later, writable
from .privs import popen_credentials

_LEN = struct.Struct("!I")


class KernelDied(Exception):
    pass


class KernelProcess:
    """One kernel script's process: requests in on `req_w`, messages out on `msg_r`."""

    message_max: int | None = None
    """A message from the kernel larger than this raises KernelDied (None: no limit)."""

    def __init__(self, script: str, cwd: str, env: Mapping[str, str]) -> None:
        req_r, self.req_w = os.pipe()
        self.msg_r, msg_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, script, str(req_r), str(msg_w)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, msg_w),
                cwd=cwd,
                env=dict(env),
                start_new_session=True,
                **popen_credentials(),
            )
        except BaseException:
            os.close(self.req_w)
            os.close(self.msg_r)
            raise
        finally:
            os.close(req_r)
            os.close(msg_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.stdout_fd = self.proc.stdout.fileno()
        self.stderr_fd = self.proc.stderr.fileno()
        for fd in (self.req_w, self.msg_r, self.stdout_fd, self.stderr_fd):
            os.set_blocking(fd, False)
        self._inbox = bytearray()
        self.messages_eof = False
        self.closed = False
        """Killed by us: reading a message then raises KernelDied("restarted")."""
        self.pipes_closed = False

    async def send(self, request: dict[str, Any]) -> None:
        raw = json.dumps(request).encode()
        view = memoryview(_LEN.pack(len(raw)) + raw)
        while view:
            try:
                view = view[os.write(self.req_w, view) :]
            except BlockingIOError:
                await writable(self.req_w)
            except OSError:  # BrokenPipeError above all: the kernel is gone
                raise KernelDied from None

    def read_message(self) -> bytes | None:
        """The next whole message if one is buffered or readable now, else None; KernelDied
        at EOF (or once killed) when no whole message is left."""
        while True:
            if len(self._inbox) >= _LEN.size:
                n = _LEN.unpack_from(self._inbox)[0]
                if self.message_max is not None and n > self.message_max:
                    raise KernelDied(f"sent a {n}-byte event (more than {self.message_max})")
                if len(self._inbox) >= _LEN.size + n:
                    body = bytes(self._inbox[_LEN.size : _LEN.size + n])
                    del self._inbox[: _LEN.size + n]
                    return body
            if self.closed:
                raise KernelDied("restarted")
            if self.messages_eof:
                raise KernelDied
            try:
                data = os.read(self.msg_r, READ_SIZE)
            except BlockingIOError:
                return None
            if not data:
                self.messages_eof = True
            self._inbox += data

    def kill(self) -> None:
        """Kill its process group (reaped in the background)."""
        if not self.closed:
            self.closed = True
            kill_group(self.proc)
            reap_later(self.proc)

    def close_pipes(self) -> None:
        """Close our ends of its pipes, once (kill first)."""
        if self.pipes_closed:
            return
        self.pipes_closed = True
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        os.close(self.req_w)
        os.close(self.msg_r)
