"""`corral open ID`: the run's page in the web console, opened in the browser.

The run must exist in this home's store (whole id or unique prefix, as `corral runs show`); the
page is `<server URL>/runs/<full id>`, served by `corral serve` (`--url` / `CORRAL_URL`, default
the address `corral serve` listens on by default).
"""

from __future__ import annotations

import os
import sys
import webbrowser
from typing import Annotated
from urllib.parse import quote, urlsplit

import typer

from runtime.cli.common import EXIT_USAGE, fail, resolve_run_id, run_async
from runtime.settings import Settings
from runtime.store.sql import open_store

DEFAULT_URL = "http://127.0.0.1:8000"
"""Where `corral serve` listens when given no --host/--port."""
TENANT = "local"
"""The CLI's tenant in the local store (the same as `corral runs`)."""


def open_run(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    url: Annotated[
        str | None,
        typer.Option(help=f"The console's server (env CORRAL_URL; default {DEFAULT_URL})."),
    ] = None,
    print_only: Annotated[
        bool, typer.Option("--print", help="Print the URL; do not open a browser.")
    ] = False,
) -> None:
    """Open a run's page in the web console (served by `corral serve`) and print its URL."""
    base = _base_url(url or os.environ.get("CORRAL_URL") or DEFAULT_URL)

    async def go() -> str:
        settings = Settings.from_env()
        settings.ensure_dirs()
        store = await open_store(settings)
        try:
            return await resolve_run_id(store, TENANT, run_id)
        finally:
            await store.aclose()

    page = f"{base}/runs/{quote(run_async(go()), safe='')}"
    print(page)
    if print_only:
        return
    if not webbrowser.open(page):
        print("corral: no browser found; open the URL above yourself", file=sys.stderr)


def _base_url(given: str) -> str:
    """`http(s)://host[:port][/prefix]` without a trailing slash; anything else is refused."""
    parts = urlsplit(given.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        fail(f"--url / CORRAL_URL must be an http(s):// URL, got {given!r}", EXIT_USAGE)
    if parts.query or parts.fragment:
        fail(f"--url / CORRAL_URL must not carry a query or fragment, got {given!r}", EXIT_USAGE)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
