"""The stateful Python session: one `kernel.py` child shared by every connection.

Cells run one at a time (a lock). A timeout sends SIGINT; if the cell does not stop within
`INTERRUPT_GRACE` seconds the kernel's process group is killed and a fresh kernel starts on
the next cell (variables are lost; the result says ``restarted``). A kernel that dies by
itself (``os._exit``, OOM) is restarted the same way.
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

from .fdio import READ_SIZE, kill_group, readable, reap_later, wait_exit, writable
from .privs import popen_credentials

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel.py")
INTERRUPT_GRACE = 2.0
OUTPUT_MAX = 1 << 20
"""Per stream and cell; the rest is dropped (and counted in a note)."""
_LEN = struct.Struct("!I")


class KernelDied(Exception):
    pass


class _Capture:
    """Continuously reads one of the kernel's output pipes into a capped buffer."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = bytearray()
        self.dropped = 0
        self.task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            if not self.drain():
                return
            await readable(self.fd)

    def drain(self) -> bool:
        """Read what is available now; False at EOF."""
        while True:
            try:
                data = os.read(self.fd, READ_SIZE)
            except BlockingIOError:
                return True
            if not data:
                return False
            room = OUTPUT_MAX - len(self.buf)
            self.buf += data[:room]
            self.dropped += max(0, len(data) - room)

    def take(self) -> str:
        text = self.buf.decode("utf-8", "replace")
        if self.dropped:
            text += f"\n[corral: {self.dropped} more bytes of output dropped]\n"
        self.buf.clear()
        self.dropped = 0
        return text


class _Kernel:
    def __init__(self, cwd: str, env: Mapping[str, str]) -> None:
        req_r, self.req_w = os.pipe()
        self.resp_r, resp_w = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, str(KERNEL), str(req_r), str(resp_w)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(req_r, resp_w),
                cwd=cwd,
                env=env,
                start_new_session=True,
                **popen_credentials(),
            )
        finally:
            os.close(req_r)
            os.close(resp_w)
        assert self.proc.stdout is not None and self.proc.stderr is not None
        for fd in (self.req_w, self.resp_r, self.proc.stdout.fileno(), self.proc.stderr.fileno()):
            os.set_blocking(fd, False)
        self.out = _Capture(self.proc.stdout.fileno())
        self.err = _Capture(self.proc.stderr.fileno())
        self._resp = bytearray()

    async def send(self, code: str) -> None:
        raw = json.dumps({"code": code}).encode()
        view = memoryview(_LEN.pack(len(raw)) + raw)
        while view:
            try:
                view = view[os.write(self.req_w, view) :]
            except BlockingIOError:
                await writable(self.req_w)
            except BrokenPipeError:
                raise KernelDied from None

    async def receive(self) -> dict[str, Any]:
        while True:
            if len(self._resp) >= _LEN.size:
                n = _LEN.unpack_from(self._resp)[0]
                if len(self._resp) >= _LEN.size + n:
                    body = bytes(self._resp[_LEN.size : _LEN.size + n])
                    del self._resp[: _LEN.size + n]
                    reply: dict[str, Any] = json.loads(body)
                    return reply
            try:
                data = os.read(self.resp_r, READ_SIZE)
            except BlockingIOError:
                await readable(self.resp_r)
                continue
            if not data:
                raise KernelDied
            self._resp += data

    def output(self) -> tuple[str, str]:
        self.out.drain()
        self.err.drain()
        return self.out.take(), self.err.take()

    def close(self) -> None:
        kill_group(self.proc)
        reap_later(self.proc)
        for cap in (self.out, self.err):
            cap.task.cancel()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self.proc.stdout.close()
        self.proc.stderr.close()
        os.close(self.req_w)
        os.close(self.resp_r)


class PythonSession:
    def __init__(self, cwd: str, env: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self._kernel: _Kernel | None = None
        self._lock = asyncio.Lock()

    def restart(self) -> None:
        """Forget all state (the next cell starts a fresh kernel)."""
        if self._kernel is not None:
            self._kernel.close()
            self._kernel = None

    close = restart

    async def run(self, code: str, timeout: float | None) -> dict[str, Any]:
        async with self._lock:
            if self._kernel is None:
                self._kernel = _Kernel(self.cwd, self.env)
            kernel = self._kernel
            kernel.output()  # discard what stray threads printed between cells
            timed_out = False
            try:
                await kernel.send(code)
                try:
                    reply = await asyncio.wait_for(kernel.receive(), timeout)
                except TimeoutError:
                    timed_out = True
                    os.kill(kernel.proc.pid, signal.SIGINT)
                    try:
                        reply = await asyncio.wait_for(kernel.receive(), INTERRUPT_GRACE)
                    except TimeoutError:
                        return self._lost(
                            kernel,
                            f"timed out after {timeout}s and did not stop on SIGINT; "
                            "the session was restarted (all variables are lost)",
                            timed_out=True,
                        )
                    reply["error"] = (
                        f"{reply.get('error') or ''}\n"
                        f"[corral: timed out after {timeout}s; interrupted with SIGINT, "
                        "session state kept]\n"
                    )
            except KernelDied:
                # Its pipes closed; give it a moment to be reaped so we can say how it ended.
                code_: int | None = None
                with contextlib.suppress(TimeoutError):
                    code_ = await asyncio.wait_for(wait_exit(kernel.proc), 2.0)
                return self._lost(
                    kernel,
                    f"the Python session died (exit status {code_}); it was restarted "
                    "(all variables are lost)",
                    timed_out=timed_out,
                )
            except asyncio.CancelledError:
                self.restart()  # we cannot know where the cell stopped
                raise
            stdout, stderr = kernel.output()
            return {
                "stdout": stdout,
                "stderr": stderr,
                "result_repr": reply.get("result_repr"),
                "error": reply.get("error"),
                "timed_out": timed_out,
                "restarted": False,
            }

    def _lost(self, kernel: _Kernel, message: str, *, timed_out: bool) -> dict[str, Any]:
        stdout, stderr = kernel.output()
        self.restart()
        return {
            "stdout": stdout,
            "stderr": stderr,
            "result_repr": None,
            "error": message,
            "timed_out": timed_out,
            "restarted": True,
        }
