"""Cells both code-interpreter suites run: the guest's (tests/sandbox/test_guest_interp.py)
and the real e2b-code-interpreter SDK's (tests/compat/test_e2b_code_interpreter.py)."""

from __future__ import annotations

import base64
from typing import Any

PNG = b"\x89PNG\r\n\x1a\n-not-really-a-png"
CHART = f"""
class Chart:
    def _repr_png_(self): return {PNG!r}
    def _repr_html_(self): return '<b>hi</b>'
    def _repr_markdown_(self): return '**hi**'
    def _repr_svg_(self): return '<svg/>'
    def _repr_json_(self): return {{'a': 1}}
    def _repr_latex_(self): return '$x$'
    def __repr__(self): return 'Chart()'
"""
"""Defines `Chart`, whose every ``_repr_*_`` the kernel reads: `Chart()` shows as
`CHART_BUNDLE`."""
CHART_BUNDLE: dict[str, Any] = {
    "image/png": base64.b64encode(PNG).decode(),
    "text/html": "<b>hi</b>",
    "text/markdown": "**hi**",
    "image/svg+xml": "<svg/>",
    "application/json": {"a": 1},
    "text/latex": "$x$",
    "text/plain": "Chart()",
}
