"""One `/execute` as E2B's JSON lines, streamed while the cell runs.

    {"type": "stdout"|"stderr", "text": "<one line>", "timestamp": <ns>}
    {"type": "result", "text": ..., "png": <base64>, "html": ..., "is_main_result": bool}
    {"type": "error", "name": ..., "value": ..., "traceback": ...}
    {"type": "number_of_executions", "execution_count": n}

The cell runs in a task that feeds a small queue (so a slow client slows the cell down
instead of filling the controller's memory); a client that goes away (the SDK's `timeout`
closes the request) cancels the task, which interrupts the cell in the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.requests import Request

from runtime.e2b.common import status_of
from sandbox.errors import SandboxError
from sandbox.interp import Cell, Interpreter

QUEUE = 64
"""Lines buffered between the cell and the client."""
MIME_FIELDS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "application/pdf": "pdf",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}
"""Jupyter MIME types as the fields of the SDK's `Result`; others go in `extra`."""
_END = b""


def result_line(bundle: Mapping[str, Any], *, main: bool) -> dict[str, Any]:
    line: dict[str, Any] = {"type": "result", "is_main_result": main}
    extra = {}
    for mime, value in bundle.items():
        name = MIME_FIELDS.get(mime)
        if name is None:
            extra[mime] = value
        else:
            line[name] = value
    if extra:
        line["extra"] = extra
    return line


def error_line(name: str, value: str, traceback: str) -> dict[str, Any]:
    return {"type": "error", "name": name, "value": value, "traceback": traceback}


class _Lines:
    """Splits a stream's text into lines (E2B's logs are one entry per line); a partial line
    waits for the rest of it or the end of the cell."""

    def __init__(self) -> None:
        self.partial = {"stdout": "", "stderr": ""}

    def feed(self, kind: str, text: str) -> list[str]:
        text = self.partial[kind] + text
        lines = text.splitlines(keepends=True)
        if lines and not lines[-1].endswith(("\n", "\r")):
            self.partial[kind] = lines.pop()
        else:
            self.partial[kind] = ""
        return lines

    def rest(self) -> list[tuple[str, str]]:
        out = [(k, v) for k, v in self.partial.items() if v]
        self.partial = {"stdout": "", "stderr": ""}
        return out


async def execute(
    request: Request,
    interp: Interpreter,
    code: str,
    *,
    context: str | None,
    env: Mapping[str, str],
) -> AsyncIterator[bytes]:
    """The JSON lines of one cell; runs it as the response is streamed."""
    queue: asyncio.Queue[bytes] = asyncio.Queue(QUEUE)
    lines = _Lines()

    async def put(data: dict[str, Any]) -> None:
        await queue.put((json.dumps(data) + "\n").encode())

    async def log(kind: str, text: str) -> None:
        for line in lines.feed(kind, text):
            await put({"type": kind, "text": line, "timestamp": time.time_ns()})

    async def on_output(kind: str, data: Any) -> None:
        if kind in ("stdout", "stderr"):
            await log(kind, data)
        elif kind in ("display", "result"):
            for k, rest in lines.rest():  # what was printed before it comes first
                await put({"type": k, "text": rest, "timestamp": time.time_ns()})
            await put(result_line(data, main=kind == "result"))

    async def run() -> None:
        try:
            cell: Cell = await interp.run(code, context=context, env=env, on_output=on_output)
            for k, rest in lines.rest():
                await put({"type": k, "text": rest, "timestamp": time.time_ns()})
            if cell.error is not None:
                e = cell.error
                await put(error_line(e.name, e.value, e.traceback))
            await put({"type": "number_of_executions", "execution_count": cell.execution_count})
        except SandboxError as exc:  # the answer has started: the error goes in the stream
            await put(error_line("SandboxError", status_of(exc)[1], ""))
        finally:
            await queue.put(_END)

    task = asyncio.ensure_future(run())
    watcher = asyncio.ensure_future(_disconnected(request))
    watcher.add_done_callback(lambda _: task.cancel())
    try:
        done = False
        while not done:
            # What is queued goes out in one write (a cell printing fast is not a write a line).
            items = [await queue.get()]
            while not queue.empty() and items[-1] != _END:
                items.append(queue.get_nowait())
            done = items[-1] == _END
            if len(items) > done:
                yield b"".join(items)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()  # the client went away: interrupt the cell in the sandbox
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects. Starlette stops reading the request once the
    body is in (ASGI 2.4 servers), so without this a silent cell would outlive its client."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
