"""The code interpreter: named Python contexts, each its own `ikernel.py` process, whose cells
stream their output while they run.

RPC methods (registered by server.py from `HANDLERS`):

    interp_create  {language?, cwd?}            -> {id, language, cwd}
    interp_list    {}                           -> payload: JSON list of contexts
    interp_run     {code, context?, env?, timeout?}
                   streams data frames  s="stdout"|"stderr" (bytes as printed),
                                        s="display" (a JSON bundle; ``more`` while split)
                                        (the trailing expression's bundle last, ``main``)
                   -> {error: {name, value, traceback}|None, count, timed_out, restarted}
    interp_restart {context}                    the namespace is forgotten
    interp_remove  {context}                    its process is killed and the id forgotten

``default`` always exists and cannot be removed. At most `MAX_CONTEXTS` per sandbox (each is a
process). Cells of one context run one at a time, in order; contexts run in parallel.

Each cell's stdout and stderr are forwarded up to `OUTPUT_MAX` bytes each (the rest is read
and dropped, and a note says how much), display data up to `DISPLAY_MAX` per cell. The kernel
runs the sandbox's code, so everything it sends is checked (interp_kernel.py): an event that
is too large or not the expected JSON kills the kernel (its variables are lost, the cell says so).

A timeout (or the caller going away) sends SIGINT: the cell gets KeyboardInterrupt and the
namespace is kept; a cell that does not stop within `INTERRUPT_GRACE` seconds has its kernel
killed (a fresh one starts with the next cell).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from . import args as A
from .channel import CallState
from .errors import INVALID_ARGUMENT, LIMIT_EXCEEDED, NOT_FOUND, ToolFailure, from_os_error
from .execcore import resolve_cwd
from .fdio import wait_exit
from .interp_kernel import Kernel, KernelDied
from .wire import CHUNK

DEFAULT = "default"
LANGUAGES = ("python",)
MAX_CONTEXTS = 16
"""Per sandbox, `default` included: each context is a Python process."""
OUTPUT_MAX = 4 << 20
"""Bytes of stdout (and of stderr) forwarded per cell."""
DISPLAY_MAX = 32 << 20
"""Bytes of display data (results, figures) forwarded per cell."""
INTERRUPT_GRACE = 2.0
CODE_MAX = 4 << 20


class _Forward:
    """One cell's output on its way to the caller, capped per stream and for display data."""

    def __init__(self, state: CallState) -> None:
        self.state = state
        self.sent = {"stdout": 0, "stderr": 0, "display": 0}
        self.dropped = {"stdout": 0, "stderr": 0, "display": 0}

    async def stream(self, name: str, data: bytes) -> None:
        room = OUTPUT_MAX - self.sent[name]
        if room > 0:
            part = data[:room]
            self.sent[name] += len(part)
            await self.state.send_stream({"t": "data", "id": self.state.id, "s": name}, part)
        self.dropped[name] += max(0, len(data) - max(room, 0))

    async def display(self, data: Any, *, main: bool = False) -> None:
        """A bundle, split in frames of CHUNK (``more`` on all but the last); ``main`` marks
        the cell's own result (the trailing expression), which comes last."""
        if not isinstance(data, dict):
            return
        raw = json.dumps(data).encode()
        if self.sent["display"] + len(raw) > DISPLAY_MAX:
            self.dropped["display"] += len(raw)
            return
        self.sent["display"] += len(raw)
        for i in range(0, len(raw), CHUNK):
            more = i + CHUNK < len(raw)
            header = {"t": "data", "id": self.state.id, "s": "display", "more": more, "main": main}
            await self.state.send_stream(header, raw[i : i + CHUNK])

    async def notes(self) -> None:
        """Say what was left out, on stderr, where a reader of the output looks."""
        for name, n in self.dropped.items():
            if n:
                limit = DISPLAY_MAX if name == "display" else OUTPUT_MAX
                note = f"\n[corral: {n} more bytes of {name} dropped (limit {limit} per cell)]\n"
                self.sent["stderr"] = 0  # the note itself always gets through
                await self.stream("stderr", note.encode())


class _Context:
    def __init__(self, ctx_id: str, language: str, cwd: str) -> None:
        self.id = ctx_id
        self.language = language
        self.cwd = cwd
        self.kernel: Kernel | None = None
        self.lock = asyncio.Lock()

    def describe(self) -> dict[str, str]:
        return {"id": self.id, "language": self.language, "cwd": self.cwd}

    def restart(self) -> None:
        """Forget the namespace: kill the kernel (a running cell ends with KernelDied and
        releases it; else it is released now). The next cell starts a fresh one."""
        kernel, self.kernel = self.kernel, None
        if kernel is not None:
            kernel.kill()
            if not self.lock.locked():
                kernel.release()


class Interpreters:
    """The contexts of one sandbox (shared by every connection to the guest)."""

    def __init__(self, root: str, env: Mapping[str, str]) -> None:
        self.root = root
        self.env = dict(env)
        self.contexts: dict[str, _Context] = {DEFAULT: _Context(DEFAULT, "python", root)}

    def create(self, language: str | None, cwd: str | None) -> _Context:
        language = language or "python"
        if language not in LANGUAGES:
            raise ToolFailure(
                INVALID_ARGUMENT, f"language {language!r} is not supported (python only)"
            )
        if len(self.contexts) >= MAX_CONTEXTS:
            raise ToolFailure(
                LIMIT_EXCEEDED,
                f"at most {MAX_CONTEXTS} code contexts per sandbox; remove one first",
            )
        ctx = _Context(os.urandom(16).hex(), language, resolve_cwd(self.root, cwd))
        try:  # started now (as E2B starts a kernel), so its first cell does not wait for it
            ctx.kernel = Kernel(ctx.cwd, self.env)
        except OSError as exc:
            raise from_os_error(exc, f"starting Python in {ctx.cwd}") from None
        self.contexts[ctx.id] = ctx
        return ctx

    def get(self, ctx_id: str | None) -> _Context:
        ctx = self.contexts.get(ctx_id or DEFAULT)
        if ctx is None:
            raise ToolFailure(NOT_FOUND, f"code context {ctx_id} not found")
        return ctx

    def remove(self, ctx_id: str) -> None:
        if ctx_id == DEFAULT:
            raise ToolFailure(INVALID_ARGUMENT, "the default code context cannot be removed")
        self.get(ctx_id).restart()
        del self.contexts[ctx_id]

    def close(self) -> None:
        for ctx in self.contexts.values():
            ctx.restart()

    async def run(
        self,
        state: CallState,
        ctx: _Context,
        code: str,
        env: dict[str, str],
        timeout: float | None,
    ) -> dict[str, Any]:
        await ctx.lock.acquire()
        handed_over = False
        kernel: Kernel | None = None
        try:
            if ctx.kernel is None or ctx.kernel.closed:
                try:
                    ctx.kernel = Kernel(ctx.cwd, self.env)
                except OSError as exc:
                    raise from_os_error(exc, f"starting Python in {ctx.cwd}") from None
            kernel = ctx.kernel
            out = _Forward(state)
            try:
                kernel.discard_output()
                await kernel.send({"code": code, "env": env})
                reply, timed_out = await _cell(kernel, out, timeout)
            except KernelDied as exc:
                reply, timed_out = await _lost(ctx, kernel, exc), False
            except asyncio.CancelledError:
                # The caller went away mid-cell: stop the cell in the background, keeping the
                # context locked until it has stopped so the next cell starts clean.
                handed_over = True
                _spawn(_abandon(ctx, kernel))
                raise
            # The result can be large (a PNG): it travels as a stream, not in the reply.
            await out.display(reply.pop("result"), main=True)
            await out.notes()
            reply["timed_out"] = timed_out
            return reply
        finally:
            if not handed_over:
                if kernel is not None and kernel.closed:
                    kernel.release()
                ctx.lock.release()


async def _pump(kernel: Kernel, out: _Forward | None) -> dict[str, Any] | None:
    """Forward what is readable now; the `done` event if it came. What went to fds 1/2
    (subprocesses) before an event is in their pipes by the time the event is (the kernel
    writes events after), so draining them once an event is read, and before forwarding it,
    keeps that order."""
    while True:
        event = kernel.next_event()
        for name in ("stdout", "stderr"):
            while data := kernel.read_stream(name):
                if out is not None:
                    await out.stream(name, data)
        if event is None or event["t"] == "done":
            return event
        if out is None:
            continue
        if event["t"] == "stream":
            kind, text = event.get("name"), event.get("text")
            if kind in ("stdout", "stderr") and isinstance(text, str):
                await out.stream(kind, text.encode("utf-8", "replace"))
        else:
            await out.display(event.get("data"))


async def _until_done(kernel: Kernel, out: _Forward | None) -> dict[str, Any]:
    while True:
        event = await _pump(kernel, out)
        if event is not None:
            return event
        await kernel.readable()


async def _cell(
    kernel: Kernel, out: _Forward, timeout: float | None
) -> tuple[dict[str, Any], bool]:
    try:
        async with asyncio.timeout(timeout):
            return _reply(await _until_done(kernel, out)), False
    except TimeoutError:
        pass
    kernel.interrupt()
    try:
        async with asyncio.timeout(INTERRUPT_GRACE):
            reply = _reply(await _until_done(kernel, out))
    except TimeoutError:
        kernel.kill()
        return _failure(
            "TimeoutError",
            f"the cell timed out after {timeout}s and did not stop on KeyboardInterrupt; "
            "its Python process was killed (the context's variables are lost)",
            restarted=True,
        ), True
    return reply, True


def _reply(event: dict[str, Any]) -> dict[str, Any]:
    result, error, count = event.get("result"), event.get("error"), event.get("count")
    if result is not None and not isinstance(result, dict):
        raise KernelDied("sent a malformed result")
    if error is not None and not (
        isinstance(error, dict) and all(isinstance(error.get(k), str) for k in _ERROR_KEYS)
    ):
        raise KernelDied("sent a malformed error")
    return {
        "result": result,
        "error": None if error is None else {k: error[k] for k in _ERROR_KEYS},
        "count": count if isinstance(count, int) and not isinstance(count, bool) else 0,
        "restarted": False,
    }


_ERROR_KEYS = ("name", "value", "traceback")


def _failure(name: str, value: str, *, restarted: bool) -> dict[str, Any]:
    return {
        "result": None,
        "error": {"name": name, "value": value, "traceback": f"{name}: {value}\n"},
        "count": 0,
        "restarted": restarted,
    }


async def _lost(ctx: _Context, kernel: Kernel, exc: KernelDied) -> dict[str, Any]:
    why = f" ({exc})" if str(exc) else ""
    status = None
    if not kernel.closed and not str(exc):  # its pipes closed: it is exiting, say how
        with contextlib.suppress(TimeoutError):
            status = await asyncio.wait_for(wait_exit(kernel.proc), INTERRUPT_GRACE)
    kernel.kill()
    if ctx.kernel is kernel:
        ctx.kernel = None
    how = f"exited with status {status}" if status is not None else f"was stopped{why}"
    return _failure(
        "KernelDied",
        f"the context's Python process {how} during this cell; its variables are lost "
        "and the next cell starts a fresh one",
        restarted=True,
    )


async def _abandon(ctx: _Context, kernel: Kernel) -> None:
    """Interrupt an abandoned cell and wait for it to end (else kill it); then unlock."""
    try:
        kernel.interrupt()
        async with asyncio.timeout(INTERRUPT_GRACE):
            await _until_done(kernel, None)
    except (TimeoutError, KernelDied, OSError):
        kernel.kill()
        if ctx.kernel is kernel:
            ctx.kernel = None
    finally:
        if kernel.closed:
            kernel.release()
        ctx.lock.release()


_BACKGROUND: set[asyncio.Task[None]] = set()


def _spawn(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


# -- RPC handlers ----------------------------------------------------------------------------
# `c` is server.Connection (not imported: server imports this module); `c.guest.interp` is
# the sandbox's `Interpreters`.
Result = tuple[dict[str, Any], bytes]


def _env(a: dict[str, Any]) -> dict[str, str]:
    env = a.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and k and "=" not in k and "\0" not in k + v
        for k, v in env.items()
    ):
        raise ToolFailure(INVALID_ARGUMENT, "'env' must map variable names to strings")
    return env


async def _create(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    interp: Interpreters = c.guest.interp
    ctx = interp.create(A.opt_string(a, "language"), A.opt_string(a, "cwd"))
    return ctx.describe(), b""


async def _list(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    interp: Interpreters = c.guest.interp
    return {}, json.dumps([ctx.describe() for ctx in interp.contexts.values()]).encode()


async def _run(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    interp: Interpreters = c.guest.interp
    code = A.string(a, "code")
    if len(code) > CODE_MAX:
        raise ToolFailure(LIMIT_EXCEEDED, f"a cell is at most {CODE_MAX} characters")
    ctx = interp.get(A.opt_string(a, "context"))
    return await interp.run(s, ctx, code, _env(a), A.opt_seconds(a, "timeout")), b""


async def _restart(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    interp: Interpreters = c.guest.interp
    interp.get(A.string(a, "context")).restart()
    return {}, b""


async def _remove(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    interp: Interpreters = c.guest.interp
    interp.remove(A.string(a, "context"))
    return {}, b""


HANDLERS = {
    "interp_create": _create,
    "interp_list": _list,
    "interp_run": _run,
    "interp_restart": _restart,
    "interp_remove": _remove,
}

__all__ = ["HANDLERS", "Interpreters"]
