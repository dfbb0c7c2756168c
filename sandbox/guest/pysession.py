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
from collections.abc import Mapping
from typing import Any

from .fdio import READ_SIZE, readable, wait_exit
from .kernelproc import KernelDied, KernelProcess

KERNEL = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel.py")
INTERRUPT_GRACE = 2.0
OUTPUT_MAX = 1 << 20
"""Per stream and cell; the rest is dropped (and counted in a note)."""


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


class _Kernel(KernelProcess):
    """The `kernel.py` process; its stdout/stderr are captured per cell."""

    def __init__(self, cwd: str, env: Mapping[str, str]) -> None:
        super().__init__(KERNEL, cwd, env)
        self.out = _Capture(self.stdout_fd)
        self.err = _Capture(self.stderr_fd)

    async def receive(self) -> dict[str, Any]:
        while (body := self.read_message()) is None:
            await readable(self.msg_r)
        reply: dict[str, Any] = json.loads(body)
        return reply

    def output(self) -> tuple[str, str]:
        self.out.drain()
        self.err.drain()
        return self.out.take(), self.err.take()

    def close(self) -> None:
        self.kill()
        for cap in (self.out, self.err):
            cap.task.cancel()
        self.close_pipes()


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
                await kernel.send({"code": code})
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
