"""What both kernel scripts share (`kernel.py` for the Python session, `ikernel.py` for the
code interpreter): the framed pipes, how a cell runs, and how its traceback is shown.

Standard library only, and no package imports: the scripts run as ``python3 SCRIPT`` and
import this as a top-level module from their own folder (``sys.path[0]`` when they start).
Messages are a 4-byte big-endian length + a JSON object (the guest's side: `kernelproc.py`).

A cell runs like a Jupyter cell: its statements, then the value of a trailing expression.
`busy` is set only while the cell's own code runs, so the scripts' SIGINT handlers interrupt a
cell and never the framing around it.
"""

from __future__ import annotations

import ast
import json
import os
import struct
import traceback
from collections.abc import Iterator
from typing import Any

_LEN = struct.Struct("!I")
OWN_FILES = {os.path.abspath(__file__)}
"""Frames of these files are left out of a cell's traceback (a script adds its own)."""

busy = [False]


def keep_private(*fds: int) -> None:
    """The kernel's own pipes are not inherited by what cells start: a process left running in
    the background must not hold them open, or the guest would not see the kernel die."""
    for fd in fds:
        os.set_inheritable(fd, False)


def _read_exact(fd: int, n: int) -> bytes | None:
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return None
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def requests(fd: int) -> Iterator[Any]:
    """Each request read from `fd`, until EOF."""
    while True:
        head = _read_exact(fd, _LEN.size)
        if head is None:
            return
        body = _read_exact(fd, _LEN.unpack(head)[0])
        if body is None:
            return
        yield json.loads(body)


def framed(message: dict[str, Any]) -> bytes:
    raw = json.dumps(message).encode()
    return _LEN.pack(len(raw)) + raw


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def parse_cell(code: str) -> tuple[ast.Module, ast.Expression | None]:
    """The cell's statements, and its trailing expression if it ends with one (SyntaxError)."""
    tree = ast.parse(code, "<cell>", "exec")
    last = None
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        last = ast.Expression(tree.body[-1].value)
        tree.body.pop()
    return tree, last


def run_cell(cell: tuple[ast.Module, ast.Expression | None], ns: dict[str, Any]) -> Any:
    """Run a parsed cell in `ns`; the trailing expression's value (kept as ``_``) or None."""
    tree, last = cell
    busy[0] = True
    try:
        exec(compile(tree, "<cell>", "exec"), ns)
        value = eval(compile(last, "<cell>", "eval"), ns) if last is not None else None
    finally:
        busy[0] = False
    if value is not None:
        ns["_"] = value
    return value


def syntax_error_text(exc: SyntaxError) -> str:
    return "".join(traceback.format_exception_only(exc))


def traceback_text(exc: BaseException) -> str:
    """The traceback of `exc` with the cell's frames only (none of `OWN_FILES`)."""
    te = traceback.TracebackException.from_exception(exc)
    te.stack = traceback.StackSummary.from_list(
        [f for f in te.stack if f.filename not in OWN_FILES]
    )
    return "".join(te.format())
