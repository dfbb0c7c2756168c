"""`Sandbox.interpreter`: named Python contexts whose cells stream output and rich results.

    ctx = await sb.interpreter.create(cwd="/workspace/proj")
    cell = await sb.interpreter.run("print(1)\\nx = 2\\nx", context=ctx.id,
                                    on_output=lambda kind, data: ...)
    cell.result    # the trailing expression's MIME bundle: {"text/plain": "2", ...}

`on_output(kind, data)` is called while the cell runs, in order: ``"stdout"``/``"stderr"``
with text as printed, ``"display"`` with a MIME bundle (``display(obj)``, a matplotlib figure
shown or left open; ``image/png`` is base64), and last ``"result"`` with the bundle of the
trailing expression (also `Cell.result`). It may be a coroutine function; a slow one slows
the cell down (flow control), it never buffers without bound.

Unlike `Sandbox.python` (one session that answers when the cell ends), each context is its
own process in the sandbox (see sandbox/guest/interp.py for limits and timeouts). Guest
refusals raise `sandbox.errors` `ToolError`s: `NotFound` for an unknown context,
`LimitExceeded` past the context limit, `InvalidArgument` for another language.
"""

from __future__ import annotations

import asyncio
import codecs
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sandbox.errors import ProtocolError
from sandbox.guest.interp import DISPLAY_MAX, INTERRUPT_GRACE, OUTPUT_MAX
from sandbox.rpc import decode as D
from sandbox.rpc.client import GUARD, RpcClient

T = TypeVar("T")

CellCallback = Callable[[str, Any], Awaitable[None] | None]
KEEPALIVE = 30.0
_NOTE_SLACK = 4096


@dataclass(frozen=True)
class CodeContext:
    id: str
    language: str
    cwd: str


@dataclass(frozen=True)
class CellError:
    name: str
    """The exception's class name (``ZeroDivisionError``), or ``KernelDied`` / ``TimeoutError``
    when the context's process was lost."""
    value: str
    traceback: str


@dataclass(frozen=True)
class Cell:
    result: dict[str, Any] | None
    """MIME bundle of the trailing expression (None when there is none or it is None)."""
    error: CellError | None
    execution_count: int
    timed_out: bool
    """The cell ran past its timeout and was interrupted (or its process killed)."""
    restarted: bool
    """The context's process was lost: its variables are gone."""


class Caller(Protocol):
    def __call__(self, aw: Awaitable[T], /) -> Awaitable[T]: ...


async def _direct(aw: Awaitable[T]) -> T:
    return await aw


class Interpreter:
    """The code interpreter of the guest behind `rpc`; `call` wraps each call (`Sandbox`
    passes its own, which checks the sandbox is open and says why a lost guest died)."""

    def __init__(
        self, rpc: RpcClient, call: Caller = _direct, touch: Callable[[], None] | None = None
    ):
        self._rpc = rpc
        self._call = call
        self._touch = touch
        """Records use of the sandbox: called every `KEEPALIVE` seconds while a cell runs, so
        a long silent cell is use (the idle TTL does not remove the sandbox under it)."""

    async def create(self, *, language: str | None = None, cwd: str | None = None) -> CodeContext:
        result, _ = await self._call(
            self._rpc._call("interp_create", {"language": language, "cwd": cwd})
        )
        return _context(result)

    async def list(self) -> list[CodeContext]:
        _, data = await self._call(self._rpc._call("interp_list"))
        return [_context(r) for r in D.json_list(data)]

    async def restart(self, context: str) -> None:
        await self._call(self._rpc._call("interp_restart", {"context": context}))

    async def remove(self, context: str) -> None:
        await self._call(self._rpc._call("interp_remove", {"context": context}))

    async def run(
        self,
        code: str,
        *,
        context: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
        on_output: CellCallback | None = None,
    ) -> Cell:
        """Run a cell; `env` is set for this cell only; `timeout` interrupts it in the sandbox
        (KeyboardInterrupt, the namespace kept). Cancelling the awaiting task interrupts it too."""
        args = {"code": code, "context": context, "env": dict(env or {}), "timeout": timeout}
        return await self._call(self._run(args, timeout, on_output))

    async def _run(
        self, args: dict[str, Any], timeout: float | None, on_output: CellCallback | None
    ) -> Cell:
        conn = self._rpc._conn
        guard = None if timeout is None else timeout + INTERRUPT_GRACE + GUARD
        state = conn.start("interp_run", args)
        reader = _Output(on_output)
        keepalive = None if self._touch is None else asyncio.ensure_future(self._keepalive())
        try:
            async with asyncio.timeout(guard):
                while True:
                    header, data = await conn.receive(state)
                    if header["t"] == "result":
                        await reader.end()
                        return _cell(header["r"], reader.main)
                    await reader.feed(header, data)
                    state.consumed(len(data))
        finally:
            if keepalive is not None:
                keepalive.cancel()
            conn.finish(state)

    async def _keepalive(self) -> None:
        assert self._touch is not None
        while True:
            await asyncio.sleep(KEEPALIVE)
            self._touch()


class _Output:
    """Checks and decodes a cell's stream frames (the guest is untrusted: sizes are capped
    at what the guest promises to send, plus room for its notes)."""

    def __init__(self, callback: CellCallback | None) -> None:
        self.callback = callback
        self.decoders = {
            "stdout": codecs.getincrementaldecoder("utf-8")("replace"),
            "stderr": codecs.getincrementaldecoder("utf-8")("replace"),
        }
        self.sizes = {"stdout": 0, "stderr": 0, "display": 0}
        self.display = bytearray()
        self.main: dict[str, Any] | None = None

    async def feed(self, header: dict[str, Any], data: bytes) -> None:
        kind = header.get("s")
        if kind not in self.sizes:
            raise ProtocolError(f"guest sent unexpected cell output ({kind!r:.40})")
        self.sizes[kind] += len(data)
        limit = DISPLAY_MAX if kind == "display" else OUTPUT_MAX
        if self.sizes[kind] > limit + _NOTE_SLACK * (2 if kind == "stderr" else 1):
            raise ProtocolError(f"guest sent more {kind} than a cell may produce")
        if kind == "display":
            self.display += data
            if header.get("more") is True:
                return
            raw, self.display = bytes(self.display), bytearray()
            try:
                bundle = _bundle(D.json_object(raw))
            except RecursionError:
                raise ProtocolError("guest sent a result nested too deep") from None
            if header.get("main") is True:
                self.main = bundle
            await self._emit("result" if header.get("main") is True else "display", bundle)
            return
        text = self.decoders[kind].decode(data)
        if text:
            await self._emit(kind, text)

    async def end(self) -> None:
        for kind, decoder in self.decoders.items():
            text = decoder.decode(b"", final=True)
            if text:
                await self._emit(kind, text)

    async def _emit(self, kind: str, data: Any) -> None:
        if self.callback is None:
            return
        maybe = self.callback(kind, data)
        if inspect.isawaitable(maybe):
            await maybe


def _context(r: dict[str, Any]) -> CodeContext:
    return CodeContext(
        id=D.field(r, "id", str), language=D.field(r, "language", str), cwd=D.field(r, "cwd", str)
    )


def _bundle(value: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(value.get("text/plain", ""), str):
        raise ProtocolError("guest sent a malformed cell result")
    return value


def _cell(r: Any, result: dict[str, Any] | None) -> Cell:
    if not isinstance(r, dict):
        raise ProtocolError("guest sent a malformed cell reply")
    err = r.get("error")
    error = None
    if err is not None:
        if not isinstance(err, dict):
            raise ProtocolError("guest sent a malformed cell error")
        error = CellError(
            name=D.field(err, "name", str),
            value=D.field(err, "value", str),
            traceback=D.field(err, "traceback", str),
        )
    return Cell(
        result=result,
        error=error,
        execution_count=D.field(r, "count", int),
        timed_out=D.field(r, "timed_out", bool),
        restarted=D.field(r, "restarted", bool),
    )
