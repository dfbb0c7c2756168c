"""`IPython.display` for the code interpreter's kernel when IPython is not installed.

Cells written for Jupyter (and E2B's examples) do ``from IPython.display import display,
Image, HTML``. Where the image has IPython, the real one is imported and its objects work
through their ``_repr_*_`` methods; otherwise `install()` provides this small stand-in:
`display` (the kernel's) and the display classes `HTML`, `Markdown`, `SVG`, `Latex`, `JSON`,
`Javascript`, `Image` (PNG/JPEG bytes, a file, base64 text), `Pretty`. Nothing else of IPython
is there (no shell, no magics): importing anything else from it fails as usual.

Standard library only; imported by ikernel.py before the cell's folder is on `sys.path`.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any


class DisplayObject:
    mime = "text/plain"
    binary = False

    def __init__(
        self, data: Any = None, url: str | None = None, filename: str | None = None, **kw: Any
    ) -> None:
        if data is None and filename is not None:
            with open(filename, "rb" if self.binary else "r") as f:
                data = f.read()
        self.data = data
        self.url = url
        self.filename = filename
        self.metadata = kw.get("metadata")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {} if self.data is None else {self.mime: self.data}

    def __repr__(self) -> str:
        return f"<IPython.core.display.{type(self).__name__} object>"


class HTML(DisplayObject):
    mime = "text/html"


class Markdown(DisplayObject):
    mime = "text/markdown"


class SVG(DisplayObject):
    mime = "image/svg+xml"


class Latex(DisplayObject):
    mime = "text/latex"


class Javascript(DisplayObject):
    mime = "application/javascript"


class JSON(DisplayObject):
    mime = "application/json"


class Pretty(DisplayObject):
    def __repr__(self) -> str:
        return str(self.data)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {}


class Image(DisplayObject):
    binary = True

    def __init__(
        self,
        data: Any = None,
        url: str | None = None,
        filename: str | None = None,
        format: str | None = None,
        **kw: Any,
    ) -> None:
        if isinstance(data, str) and filename is None and not data.startswith(("iVBOR", "/9j/")):
            filename, data = data, None  # Image("chart.png"), as IPython allows
        super().__init__(data, url, filename, **kw)
        fmt = (format or (filename or "").rsplit(".", 1)[-1] or "png").lower()
        if isinstance(self.data, bytes | bytearray):
            if self.data[:3] == b"\xff\xd8\xff":
                fmt = "jpeg"
            elif self.data[:8] == b"\x89PNG\r\n\x1a\n":
                fmt = "png"
        self.mime = "image/jpeg" if fmt in ("jpg", "jpeg") else "image/png"


CLASSES = (DisplayObject, HTML, Markdown, SVG, Latex, Javascript, JSON, Pretty, Image)


class _Loader(importlib.abc.Loader):
    def __init__(self, display: Callable[..., None]) -> None:
        self.display = display

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        module.display = self.display  # type: ignore[attr-defined]
        if module.__name__ == "IPython.display":
            for cls in CLASSES:
                setattr(module, cls.__name__, cls)


class _Finder(importlib.abc.MetaPathFinder):
    """Consulted last (after the image's own packages): only when IPython is not installed."""

    def __init__(self, display: Callable[..., None]) -> None:
        self.loader = _Loader(display)

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if name not in ("IPython", "IPython.display"):
            return None
        return importlib.util.spec_from_loader(name, self.loader, is_package=name == "IPython")


def install(display: Callable[..., None]) -> None:
    sys.meta_path.append(_Finder(display))
