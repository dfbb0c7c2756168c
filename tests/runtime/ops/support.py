"""Helpers the ops suites share (the live server and the `corral` command are imported from
tests/runtime/api/conftest.py and tests/runtime/test_cli_frictions.py)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

HANG_GUARD = 300.0
"""Seconds before a poll gives up: a guard against hangs, not a measure."""


def poll(check: Callable[[], Any]) -> Any:
    """Call `check` until it returns something true, and return that."""
    deadline = time.monotonic() + HANG_GUARD
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.2)
    raise AssertionError("condition never held")
