"""Shared helpers for CLI commands: one-line errors, exit codes, the async bridge."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, NoReturn, TypeVar

import typer
from rich.console import Console

T = TypeVar("T")

# Exit codes of `corral run` (and reused elsewhere where they fit).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_ARTIFACTS = 4
"""The run completed but not every artifact could be written where it was asked to go."""
EXIT_CANCELLED = 130

console = Console()
err_console = Console(stderr=True)


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    """Print one clear line to stderr and exit non-zero. Never a traceback."""
    first = message.strip().splitlines()[0] if message.strip() else "error"
    print(f"corral: error: {first}", file=sys.stderr)
    raise typer.Exit(code)


def error_line(message: str) -> None:
    """One `corral: …` line on stderr (newlines flattened, control characters shown as `?`:
    messages may carry text an agent or a model chose)."""
    flat = "".join(c if c.isprintable() else "?" for c in " ".join(message.split()))
    print(f"corral: {flat}", file=sys.stderr)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """The sync edge: run one coroutine to completion; Corral's errors become one line and a
    non-zero exit (2 for something that does not exist, 1 otherwise)."""
    from runtime.errors import CorralError
    from sandbox.errors import SandboxError

    try:
        return asyncio.run(coro)
    except CorralError as exc:
        fail(str(exc), EXIT_USAGE if exc.http_status == 404 else EXIT_FAILED)
    except SandboxError as exc:
        fail(str(exc))
