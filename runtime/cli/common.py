"""Shared helpers for CLI commands: one-line errors, exit codes, the async bridge."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine, Iterable
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer
from rich.console import Console

if TYPE_CHECKING:
    from runtime.store.base import Store
    from sandbox.backends.base import Backend

T = TypeVar("T")
ALL_RUNS = 1_000_000
"""Enough to see every run of a local home when matching an id prefix."""

# Exit codes of `corral run` (and reused elsewhere where they fit).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_BUDGET = 3
EXIT_ARTIFACTS = 4
"""The run completed but not every artifact could be written where it was asked to go."""
EXIT_CANCELLED = 130
EXIT_BY_STATUS = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "budget_exceeded": EXIT_BUDGET,
    "cancelled": EXIT_CANCELLED,
    "requires_action": EXIT_FAILED,
}
"""The exit code of a run that ended with this status (`corral run`, `corral runs logs -f`)."""

NO_WRAP_WIDTH = 100_000
"""The width the consoles take when their stream is not a terminal: lines are never wrapped
(and tables keep their natural width) for pipes, files and CI logs."""

console = Console()
err_console = Console(stderr=True)


def configure_consoles() -> None:
    """Once per command: a console whose stream is not a terminal never wraps (rich would
    otherwise hard-wrap everything at 80 columns); on a terminal the terminal's width rules."""
    for c in (console, err_console):
        if not c.is_terminal:
            c.soft_wrap = True
            c.width = NO_WRAP_WIDTH


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
    """The sync edge: run one coroutine to completion; Corral's errors (something that does
    not exist included) become one line and exit 1. Exit 2 is kept for usage errors."""
    from runtime.errors import CorralError
    from sandbox.errors import SandboxError

    try:
        return asyncio.run(coro)
    except (CorralError, SandboxError) as exc:
        fail(str(exc))


def pick_id(given: str, known: Iterable[str], what: str) -> str:
    """`given` itself when it is a known id, else the one known id it is a prefix of; no match
    or several is a one-line error (exit 1)."""
    ids = sorted(set(known))
    if given in ids:
        return given
    matches = [i for i in ids if given and i.startswith(given)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        fail(f"{what} {given!r} not found (no {what} id starts with it)")
    shown = ", ".join(matches[:5]) + (", …" if len(matches) > 5 else "")
    fail(f"{given!r} is ambiguous: {len(matches)} {what}s start with it ({shown})")


async def resolve_run_id(store: Store, tenant: str, given: str) -> str:
    """The run `given` names: its whole id or a unique prefix of it."""
    from runtime.errors import NotFound

    try:
        return (await store.get_interaction(tenant, given)).id
    except NotFound:
        pass
    recs = await store.list_interactions(tenant, limit=ALL_RUNS)
    return pick_id(given, (r.id for r in recs), "run")


async def resolve_sandbox_id(backend: Backend, given: str) -> str:
    """The sandbox `given` names: its whole id or a unique prefix of it."""
    return pick_id(given, (h.id for h in await backend.list()), "sandbox")
