"""The Python session kernel: a child of the guest that runs cells in one namespace.

Standalone script (standard library only; `kernelcore.py` beside it has what it shares with
the code interpreter's ikernel.py) started as ``python3 kernel.py REQUEST_FD RESPONSE_FD``.
Messages on both pipes are a 4-byte big-endian length + a JSON object: requests ``{"code": str}``, responses
``{"result_repr": str | None, "error": str | None}``. The cell's own stdout/stderr are the
process's fds 1 and 2, read by the guest; they are flushed before each response.

Like Jupyter, the value of a trailing expression is returned (and kept as ``_``). A SIGINT
while a cell runs becomes KeyboardInterrupt inside the cell; otherwise it is ignored.
"""

from __future__ import annotations

import builtins
import contextlib
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import kernelcore
else:
    import kernelcore  # beside this file (sys.path[0] until main() changes it)

REPR_MAX = 64 << 10

kernelcore.OWN_FILES.add(os.path.abspath(__file__))


def _on_sigint(signum: int, frame: object) -> None:
    # Interrupt only a running cell; between cells (reading a request, writing a response)
    # a late SIGINT is ignored so the pipe framing stays intact.
    if kernelcore.busy[0]:
        raise KeyboardInterrupt


def run_cell(code: str, ns: dict[str, Any]) -> dict[str, Any]:
    try:
        cell = kernelcore.parse_cell(code)
    except SyntaxError as exc:
        return {"result_repr": None, "error": kernelcore.syntax_error_text(exc)}
    result = None
    try:
        value = kernelcore.run_cell(cell, ns)
        if value is not None:
            result = repr(value)
            if len(result) > REPR_MAX:
                result = result[:REPR_MAX] + "...[truncated]"
    except BaseException as exc:  # the cell's error (even SystemExit) is its result
        return {"result_repr": None, "error": kernelcore.traceback_text(exc)}
    return {"result_repr": result, "error": None}


def main() -> None:
    req_fd, resp_fd = int(sys.argv[1]), int(sys.argv[2])
    kernelcore.keep_private(req_fd, resp_fd)
    signal.signal(signal.SIGINT, _on_sigint)
    sys.path[0] = ""  # import from the working directory, like a notebook
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for request in kernelcore.requests(req_fd):
        try:
            reply = run_cell(request["code"], ns)
        except KeyboardInterrupt:
            reply = {"result_repr": None, "error": "KeyboardInterrupt\n"}
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):  # the cell may have closed or replaced it
                stream.flush()
        kernelcore.write_all(resp_fd, kernelcore.framed(reply))


if __name__ == "__main__":
    main()
