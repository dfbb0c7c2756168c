"""The Python session kernel: a child of the guest that runs cells in one namespace.

Standalone script (standard library only, no package imports) started as
``python3 kernel.py REQUEST_FD RESPONSE_FD``. Messages on both pipes are a 4-byte big-endian
length + a JSON object: requests ``{"code": str}``, responses
``{"result_repr": str | None, "error": str | None}``. The cell's own stdout/stderr are the
process's fds 1 and 2, read by the guest; they are flushed before each response.

Like Jupyter, the value of a trailing expression is returned (and kept as ``_``). A SIGINT
while a cell runs becomes KeyboardInterrupt inside the cell; otherwise it is ignored.
"""

from __future__ import annotations

import ast
import builtins
import contextlib
import json
import os
import signal
import struct
import sys
import traceback
from typing import Any

_LEN = struct.Struct("!I")
REPR_MAX = 64 << 10


_busy = [False]


def _on_sigint(signum: int, frame: object) -> None:
    # Interrupt only a running cell; between cells (reading a request, writing a response)
    # a late SIGINT is ignored so the pipe framing stays intact.
    if _busy[0]:
        raise KeyboardInterrupt


def _read_exact(fd: int, n: int) -> bytes | None:
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _format_error(exc: BaseException) -> str:
    # Drop the kernel's own frame so the traceback starts in the cell.
    tb = exc.__traceback__.tb_next if exc.__traceback__ is not None else None
    return "".join(traceback.format_exception(type(exc), exc, tb))


def run_cell(code: str, ns: dict[str, Any]) -> dict[str, Any]:
    try:
        tree = ast.parse(code, "<cell>", "exec")
    except SyntaxError as exc:
        return {"result_repr": None, "error": "".join(traceback.format_exception_only(exc))}
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body[-1].value)
        tree.body.pop()
    result = None
    try:
        _busy[0] = True
        try:
            exec(compile(tree, "<cell>", "exec"), ns)
            value = eval(compile(last, "<cell>", "eval"), ns) if last is not None else None
        finally:
            _busy[0] = False
        if value is not None:
            ns["_"] = value
            result = repr(value)
            if len(result) > REPR_MAX:
                result = result[:REPR_MAX] + "...[truncated]"
    except BaseException as exc:  # the cell's error (even SystemExit) is its result
        return {"result_repr": None, "error": _format_error(exc)}
    return {"result_repr": result, "error": None}


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    signal.signal(signal.SIGINT, _on_sigint)
    sys.path[0] = ""  # import from the working directory, like a notebook
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    while True:
        head = _read_exact(req_fd, _LEN.size)
        if head is None:
            return
        body = _read_exact(req_fd, _LEN.unpack(head)[0])
        if body is None:
            return
        try:
            reply = run_cell(json.loads(body)["code"], ns)
        except KeyboardInterrupt:
            reply = {"result_repr": None, "error": "KeyboardInterrupt\n"}
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # the cell may have closed or replaced it
                stream.flush()
        raw = json.dumps(reply).encode()
        _write_all(resp_fd, _LEN.pack(len(raw)) + raw)


if __name__ == "__main__":
    main()
