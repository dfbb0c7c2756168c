"""`corral sandbox egress status|start|stop`: the egress proxy of `network: allowlist` sandboxes.

The proxy is one container per Corral home (sandbox/egress/manager.py): started by the first
allowlist sandbox, restarted when it dies (the engine's `on-failure` policy, the server's
reaper, `start`), removed once no sandbox needs it (`corral sandbox gc`, the server's reaper,
the end of a `corral run` that started it). These commands show and steer that lifecycle.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from runtime.cli.common import fail, run_async
from runtime.settings import Settings
from sandbox.backends.docker import DockerBackend
from sandbox.egress import ProxyStatus

app = typer.Typer(
    help="The egress proxy of allowlist sandboxes: status, start, stop.", no_args_is_help=True
)


def _backend() -> DockerBackend:
    settings = Settings.from_env()
    settings.ensure_dirs()
    return DockerBackend(settings.home, egress=settings.egress_options())


def describe(st: ProxyStatus) -> str:
    needed = ", ".join(st.needed_by) or "no sandbox"
    extra = f", restarted {st.restarts}x after crashes" if st.restarts else ""
    since = f", up since {st.started}" if st.started else ""
    return f"egress proxy {st.name}: {st.health} (needed by {needed}{since}{extra})"


@app.command()
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """Show the proxy's health: ok (running, needed), idle (running, unused), down (needed,
    not running: exit 1), off (neither)."""

    async def go() -> ProxyStatus:
        backend = _backend()
        try:
            return await backend.egress.status()
        finally:
            await backend.aclose()

    st = run_async(go())
    print(json.dumps(st.to_dict()) if as_json else describe(st))
    if st.health == "down":
        raise typer.Exit(1)


@app.command()
def start() -> None:
    """Start the proxy again (re-wired to every sandbox network) if sandboxes need it."""

    async def go() -> tuple[str | None, ProxyStatus]:
        backend = _backend()
        try:
            live = {h.id for h in await backend.list()}
            before = await backend.egress.status()
            if before.running or not any(s in live for s in before.needed_by):
                return None, before
            done = await backend.egress.heal(live)
            return done, await backend.egress.status()
        finally:
            await backend.aclose()

    done, st = run_async(go())
    if done == "restarted":
        print(f"started {describe(st)}")
    elif st.running:
        print(f"already running: {describe(st)}")
    else:
        print(
            f"not started: no sandbox needs it; the first allowlist sandbox starts it ({st.name})"
        )


@app.command()
def stop(
    force: Annotated[
        bool, typer.Option("--force", help="Stop it even though sandboxes need it.")
    ] = False,
) -> None:
    """Remove the proxy container. Refused while sandboxes need it, unless --force (they lose
    their way out until `start`, the server's reaper or the next allowlist sandbox)."""

    async def go() -> tuple[bool, ProxyStatus]:
        backend = _backend()
        try:
            st = await backend.egress.status()
            if st.needed_by and not force:
                return False, st
            return await backend.egress.stop(), st
        finally:
            await backend.aclose()

    stopped, st = run_async(go())
    if st.needed_by and not force:
        fail(
            f"the egress proxy is needed by {', '.join(st.needed_by)}; "
            "remove those sandboxes first or pass --force"
        )
    print(f"stopped egress proxy {st.name}" if stopped else f"egress proxy {st.name}: not running")
