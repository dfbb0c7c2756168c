"""`corral images build|list` — the sandbox images, built offline-capable (see docs/images.md)."""

from __future__ import annotations

import time
from typing import Annotated

import docker
import typer
from rich.status import Status
from rich.table import Table
from rich.text import Text

from runtime.cli.common import console, fail
from sandbox.backends.docker_errors import map_docker_error
from sandbox.errors import SandboxError
from sandbox.images import BuildResult, build_images, catalog, image_status, select

app = typer.Typer(help="Build and inspect the sandbox images.", no_args_is_help=True)


def human_size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit in ("B", "KB") else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # unreachable: the loop returns at GB


def connect() -> docker.DockerClient:
    """A docker client that answers, or one CLI line saying why not."""
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # any failure here means "no engine": map, then one line
        fail(str(map_docker_error(exc)))
    return client


class RichReporter:
    """A spinner with the current step of the current image; one line per finished image."""

    def __init__(self, status: Status, verbose: bool) -> None:
        self._status = status
        self._verbose = verbose
        self._stage = ""

    def stage(self, image: str, text: str) -> None:
        self._stage = f"[bold]{image}[/]: {text}"
        self._status.update(self._stage)

    def line(self, image: str, text: str) -> None:
        # Dockerfile steps are the outline of a build; everything else only with --verbose.
        if text.startswith("Step ") or self._verbose:
            flat = " ".join(text.split())  # Dockerfile continuation lines, on one line
            console.print(
                Text(f"  {image} | {flat}", style="dim"), no_wrap=True, overflow="ellipsis"
            )
        self._status.update(Text.from_markup(self._stage) + Text(f" {text[:80]}", style="dim"))

    def done(self, result: BuildResult) -> None:
        if result.action in ("up to date", "found"):
            what = "[green]up to date[/]"
        else:
            what = f"[green]{result.action}[/] in {result.seconds:.1f} s"
        console.print(f"[bold]{result.tag}[/] {what} ({human_size(result.size)})")


@app.command("build")
def build(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Images to build (base, browser, research). Default: base, browser."),
    ] = None,
    all_images: Annotated[bool, typer.Option("--all", help="Also build optional images.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild even when current, without layer cache.")
    ] = False,
    no_pull: Annotated[
        bool, typer.Option("--no-pull", help="Never try Docker Hub for the Debian base.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Show all build output.")
    ] = False,
) -> None:
    """Build the sandbox images, skipping those whose inputs have not changed."""
    try:
        wanted = select(names or [], all_images=all_images)
    except SandboxError as exc:
        fail(str(exc), code=2)
    client = connect()
    t0 = time.monotonic()
    try:
        with console.status("starting") as status:
            build_images(
                client,
                wanted,
                force=force,
                reporter=RichReporter(status, verbose),
                pull=not no_pull,
            )
    except SandboxError as exc:
        fail(str(exc))
    finally:
        client.close()
    console.print(f"[dim]done in {time.monotonic() - t0:.1f} s[/]")


@app.command("list")
def list_images() -> None:
    """The known images: present, current, size."""
    client = connect()
    table = Table("image", "default", "present", "current", "size", "note")
    table.columns[0].no_wrap = True
    try:
        for image in catalog():
            st = image_status(client, image)
            table.add_row(
                st.tag,
                "yes" if image.default else "no (--all)",
                _mark(st.present),
                _mark(st.current),
                human_size(st.size),
                "" if st.current else st.reason,
            )
    except SandboxError as exc:
        fail(str(exc))
    finally:
        client.close()
    console.print(table)


def _mark(ok: bool) -> str:
    return "[green]yes[/]" if ok else "[red]no[/]"
