"""The code interpreter's kernel: one namespace, cells in order, Jupyter-style rich results.

Standalone script (standard library only; matplotlib is used when the image has it;
`kernelcore.py` beside it has what it shares with the Python session's kernel.py) started
by `interp.py` as ``python3 ikernel.py REQUEST_FD EVENT_FD``. Both pipes carry messages of a
4-byte big-endian length + a JSON object:

    request  {"code": str, "env": {name: value}}         env is set for this cell only
    event    {"t": "stream", "name": "stdout"|"stderr", "text": str}   sys.stdout/err
    event    {"t": "display", "data": bundle}            display(...), plt.show(), open figures
    event    {"t": "done", "result": bundle | None,      the trailing expression's value
              "error": {"name", "value", "traceback"} | None, "count": int}

A bundle maps MIME types to data (``text/plain`` always; ``image/png`` base64; ...), built
from the object's ``_repr_*_`` methods as IPython does. `sys.stdout`/`sys.stderr` send their
text as ``stream`` events, a line at a time, so prints and results keep their order; what
subprocesses write goes to the process's fds 1 and 2, read by the guest beside. A SIGINT while a cell runs becomes
KeyboardInterrupt in the cell; between cells it is ignored (the framing stays intact).
"""

from __future__ import annotations

import base64
import builtins
import codecs
import contextlib
import importlib.abc
import importlib.machinery
import io
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import kernelcore
else:
    import kernelcore  # beside this file (sys.path[0] until main() changes it)

kernelcore.OWN_FILES.add(os.path.abspath(__file__))
TEXT_MAX = 64 << 10
"""``text/plain`` (a repr) is cut here."""
ITEM_MAX = 8 << 20
"""Any other representation larger than this is left out (and the text says so)."""

FORMATS = (
    ("text/html", "_repr_html_"),
    ("text/markdown", "_repr_markdown_"),
    ("image/svg+xml", "_repr_svg_"),
    ("image/png", "_repr_png_"),
    ("image/jpeg", "_repr_jpeg_"),
    ("application/pdf", "_repr_pdf_"),
    ("text/latex", "_repr_latex_"),
    ("application/json", "_repr_json_"),
    ("application/javascript", "_repr_javascript_"),
)
BINARY = {"image/png", "image/jpeg", "application/pdf"}

_writing = [False]
_pending_interrupt = [False]
_event_fd = [-1]
_event_lock = threading.RLock()
BATCH = 0.005
"""Seconds a printed line may wait to share an event with the next ones (a loop printing
100k lines sends a few hundred events, not 100k); a lone line goes at once."""


def _on_sigint(signum: int, frame: object) -> None:
    if not kernelcore.busy[0]:
        return
    if _writing[0]:  # never leave half an event in the pipe: interrupt once it is written
        _pending_interrupt[0] = True
        return
    raise KeyboardInterrupt


_streams: list[Any] = []
"""Our `_Stream`s, flushed even when a cell has replaced `sys.stdout`/`sys.stderr`."""


def _flush_streams() -> None:
    for stream in {id(s): s for s in (*_streams, sys.stdout, sys.stderr)}.values():
        with contextlib.suppress(Exception):  # the cell may have closed or replaced it
            stream.flush()


def _write_event(message: dict[str, Any]) -> None:
    """One whole event (threads of the cell print too; a SIGINT waits until it is out)."""
    view = memoryview(kernelcore.framed(message))
    main = threading.current_thread() is threading.main_thread()
    with _event_lock:
        _writing[0] = main  # SIGINT lands in the main thread: only its writes defer it
        try:
            while view:
                view = view[os.write(_event_fd[0], view) :]
        finally:
            if main:
                _writing[0] = False
    if main and _pending_interrupt[0] and kernelcore.busy[0]:
        _pending_interrupt[0] = False
        raise KeyboardInterrupt


def _send(message: dict[str, Any]) -> None:
    _flush_streams()
    _write_event(message)


class _Stream(io.TextIOBase):
    """`sys.stdout`/`sys.stderr`: text goes out as ``stream`` events on the event pipe, a
    line at a time, so it stays in order with display results (as in ipykernel). Writes to
    the file descriptors themselves (subprocesses, `os.write(1, ...)`) still reach fds 1/2."""

    encoding = "utf-8"
    errors = "replace"

    def __init__(self, kind: str, fd: int) -> None:
        super().__init__()
        self._kind = kind
        self._fd = fd
        self._parts: list[str] = []
        self._size = 0
        self._last = 0.0
        self.buffer = _Bytes(self)

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        return self._fd

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            raise TypeError(f"write() argument must be str, not {type(s).__name__}")
        with _event_lock:
            self._parts.append(s)
            self._size += len(s)
            size = self._size
        if size >= 8192:
            self.flush()
        elif "\n" in s:
            if time.monotonic() - self._last >= BATCH:
                self.flush()
            else:
                _flusher.poke()  # more lines may follow: the flusher sends them together
        return len(s)

    def flush(self) -> None:
        # Taking the text and writing it under one lock keeps events in order across threads.
        with _event_lock:
            if self._parts:
                text = "".join(self._parts)
                self._parts.clear()
                self._size = 0
                self._last = time.monotonic()
                _write_event({"t": "stream", "name": self._kind, "text": text})


class _Flusher:
    """A daemon thread that sends lines held back by `_Stream.write` after `BATCH`."""

    def __init__(self) -> None:
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def poke(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="corral-flush", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            time.sleep(BATCH)
            self._wake.clear()
            for stream in _streams:  # ours only: a cell's own replacement is not thread-safe
                with contextlib.suppress(Exception):  # a closed pipe: the kernel is going away
                    stream.flush()


_flusher = _Flusher()


class _Bytes(io.RawIOBase):
    """`sys.stdout.buffer`: bytes decoded (UTF-8) into the text stream."""

    def __init__(self, text: _Stream) -> None:
        super().__init__()
        self._text = text
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        self._text.write(self._decoder.decode(data))
        return len(data)

    def flush(self) -> None:
        self._text.flush()


# -- rich representations ---------------------------------------------------------------------
def _encode(mime: str, value: Any) -> Any:
    """A representation as JSON can carry it, or None to leave it out."""
    if isinstance(value, tuple) and len(value) == 2:  # (data, metadata), as IPython allows
        value = value[0]
    if value is None:
        return None
    if mime in BINARY:
        if isinstance(value, bytes | bytearray | memoryview):
            return base64.b64encode(bytes(value)).decode()
        return value if isinstance(value, str) else None
    if mime == "application/json":
        if isinstance(value, str):
            with contextlib.suppress(ValueError):
                value = json.loads(value)
        return value if isinstance(value, dict | list) else None
    return value if isinstance(value, str) else None


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value))


def bundle(obj: Any) -> dict[str, Any]:
    """The MIME bundle of `obj`: its repr plus every ``_repr_*_`` it answers (IPython's rules:
    a method that raises or returns None adds nothing; classes are shown by repr only)."""
    data: dict[str, Any] = {}
    dropped: list[str] = []
    if _is_figure(obj):
        data["image/png"] = _figure_png(obj)
    elif not isinstance(obj, type):
        found: list[tuple[str, Any]] = []
        mimebundle = getattr(obj, "_repr_mimebundle_", None)
        if callable(mimebundle):
            with contextlib.suppress(Exception):
                got = mimebundle(include=None, exclude=None)
                got = got[0] if isinstance(got, tuple) else got
                if isinstance(got, dict):
                    found += [(str(k), v) for k, v in got.items()]
        for mime, name in FORMATS:
            method = getattr(obj, name, None)
            if callable(method) and not any(m == mime for m, _ in found):
                with contextlib.suppress(Exception):
                    found.append((mime, method()))
        for mime, raw in found:
            if mime == "text/plain":
                continue
            value = _encode(mime, raw)
            if value is None:
                continue
            if _size(value) > ITEM_MAX:
                dropped.append(f"{mime} ({_size(value)} bytes)")
                continue
            data[mime] = value
    try:
        text = repr(obj)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}: {exc}>"
    if len(text) > TEXT_MAX:
        text = text[:TEXT_MAX] + "...[truncated]"
    if dropped:
        text += f"\n[corral: left out {', '.join(dropped)}: over {ITEM_MAX} bytes]"
    data["text/plain"] = text
    return data


def display(*objs: Any, **kwargs: Any) -> None:
    """Jupyter's `display`: each object becomes a result of the cell while it runs."""
    for obj in objs:
        _send({"t": "display", "data": bundle(obj)})


# -- matplotlib ------------------------------------------------------------------------------
def _is_figure(obj: Any) -> bool:
    mod = sys.modules.get("matplotlib.figure")
    return mod is not None and isinstance(obj, mod.Figure)


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is not None:
        plt.close(fig)  # shown once, like Jupyter's inline backend
    return base64.b64encode(buf.getvalue()).decode()


def flush_figures() -> None:
    """Every open pyplot figure becomes a display result (PNG), then is closed."""
    plt = sys.modules.get("matplotlib.pyplot")
    if plt is None:
        return
    for num in list(plt.get_fignums()):
        fig = plt.figure(num)
        with contextlib.suppress(Exception):
            display(fig)
        plt.close(fig)


def _show(*args: Any, **kwargs: Any) -> None:
    flush_figures()


class _PyplotHook(importlib.abc.MetaPathFinder):
    """Replaces `pyplot.show` as pyplot is imported, so `plt.show()` shows the figures
    (as a PNG result) where it is called; the Agg backend would only warn."""

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name != "matplotlib.pyplot":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        inner: Callable[[Any], None] = loader.exec_module

        def exec_module(module: Any) -> None:
            inner(module)
            module.show = _show

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


# -- cells -----------------------------------------------------------------------------------
def _error(exc: BaseException) -> dict[str, str]:
    # The traceback shows the cell's frames, not the kernel's (run_cell, the SIGINT handler).
    return {
        "name": type(exc).__name__,
        "value": str(exc),
        "traceback": kernelcore.traceback_text(exc),
    }


def _set_env(env: dict[str, str]) -> dict[str, str | None]:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    return old


def _restore_env(old: dict[str, str | None]) -> None:
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def run_cell(code: str, ns: dict[str, Any]) -> tuple[dict[str, Any] | None, dict[str, str] | None]:
    try:
        cell = kernelcore.parse_cell(code)
    except SyntaxError as exc:
        tb = kernelcore.syntax_error_text(exc)
        return None, {"name": "SyntaxError", "value": str(exc), "traceback": tb}
    try:
        value = kernelcore.run_cell(cell, ns)
        result = None
        if value is not None:
            result = bundle(value)
        flush_figures()
    except BaseException as exc:  # the cell's error (even SystemExit) is its result
        return None, _error(exc)
    return result, None


def main() -> None:
    req_fd, _event_fd[0] = int(sys.argv[1]), int(sys.argv[2])
    kernelcore.keep_private(req_fd, _event_fd[0])
    signal.signal(signal.SIGINT, _on_sigint)
    # Lines reach the guest as they are printed, in order with display results.
    # `sys.__stdout__` (fd 1) flushes per line too, for code that prints there directly.
    with contextlib.suppress(Exception):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    sys.stdout = _Stream("stdout", 1)
    sys.stderr = _Stream("stderr", 2)
    _streams.extend((sys.stdout, sys.stderr))
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("MPLCONFIGDIR", f"/tmp/.matplotlib-{os.getuid()}")
    sys.meta_path.insert(0, _PyplotHook())
    import ipyshim  # beside this file (sys.path[0] until the line below)

    ipyshim.install(display)
    builtins.display = display  # type: ignore[attr-defined]
    sys.path[0] = ""  # import from the working directory, like a notebook
    ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    for count, request in enumerate(kernelcore.requests(req_fd), start=1):
        old = _set_env(request.get("env") or {})
        try:
            result, error = run_cell(request["code"], ns)
        except KeyboardInterrupt as exc:  # arrived just outside the cell's own frame
            result, error = None, _error(exc)
        finally:
            _restore_env(old)
        _send({"t": "done", "result": result, "error": error, "count": count})


if __name__ == "__main__":
    main()
