"""`corral runs …` — what ran: list, show, logs [--follow], artifacts, delete."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from runtime.artifacts import ExportReport, export_artifacts, printable, skipped_from_events
from runtime.cli.common import (
    EXIT_ARTIFACTS,
    EXIT_BY_STATUS,
    EXIT_FAILED,
    console,
    error_line,
    resolve_run_id,
    run_async,
)
from runtime.cli.render import EventPrinter
from runtime.events import TERMINAL_EVENT
from runtime.settings import Settings
from runtime.steps import materialize
from runtime.store.base import ArtifactRecord
from runtime.store.sql import SqlStore, open_store
from runtime.views import artifact_view, interaction_view
from sandbox.backends.docker import DockerBackend

app = typer.Typer(help="Past and running agent runs.", no_args_is_help=True)
TENANT = "local"
FOLLOW_POLL = 0.3


async def _store() -> SqlStore:
    settings = Settings.from_env()
    settings.ensure_dirs()
    return await open_store(settings)


@app.command("list")
def list_(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """List runs, newest first."""

    async def go() -> list[dict[str, Any]]:
        store = await _store()
        try:
            recs = await store.list_interactions(TENANT, limit=limit, status=status)
            return [interaction_view(r, []) | {"input": r.input} for r in recs]
        finally:
            await store.aclose()

    rows = run_async(go())
    if as_json:
        print(json.dumps(rows))
        return
    # Whole ids, never cut: they are what every other command takes (or a unique prefix).
    width = max((len(str(r["id"])) for r in rows), default=2)
    table = Table()
    table.add_column("id", no_wrap=True, min_width=width)
    for name in ("status", "agent", "model", "created", "task"):
        table.add_column(name)
    for r in rows:
        table.add_row(
            str(r["id"]),
            str(r["status"]),
            str(r.get("agent") or ""),
            str(r.get("model") or ""),
            str(r["created"]),
            str(r.get("input"))[:50],
        )
    console.print(table)


@app.command()
def show(run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")]) -> None:
    """Print a run as JSON (the Interactions view, with all steps)."""

    async def go() -> dict[str, object]:
        store = await _store()
        try:
            rec = await store.get_interaction(TENANT, await resolve_run_id(store, TENANT, run_id))
            run_id_ = rec.id
            steps = materialize(events := await store.list_events(run_id_))
            view = interaction_view(rec, steps, include_input=True)
            view["artifacts"] = [artifact_view(a) for a in await store.list_artifacts(run_id_)]
            view["skipped_artifacts"] = skipped_from_events(events)
            return view
        finally:
            await store.aclose()

    print(json.dumps(run_async(go()), indent=2))


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    follow: Annotated[
        bool,
        typer.Option(
            "--follow",
            "-f",
            help="Keep following until the run ends; then print its status and exit as "
            "`corral run` would (0 completed, 1 failed, 3 budget exceeded, 130 cancelled).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Replay a run's events (and follow a live one, also from another process)."""

    async def go() -> tuple[str, str] | None:
        store = await _store()
        printer = EventPrinter(console, as_json=as_json)
        try:
            rid = await resolve_run_id(store, TENANT, run_id)
            last = 0
            while True:
                for ev in await store.list_events(rid, after=last):
                    last = ev.event_id
                    printer(ev)
                    if ev.event_type == TERMINAL_EVENT:
                        return rid, (await store.get_interaction(TENANT, rid)).status
                if not follow:
                    return None
                await asyncio.sleep(FOLLOW_POLL)
        finally:
            printer.close()
            await store.aclose()

    ended = run_async(go())
    if follow and ended is not None:
        rid, status = ended
        code = EXIT_BY_STATUS.get(status, EXIT_FAILED)
        if not as_json:
            style = "green" if status == "completed" else "red"
            console.print(f"[{style}]● {status}[/] run {rid}")
        raise typer.Exit(code)


@app.command()
def artifacts(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
    download: Annotated[
        Path | None, typer.Option("--download", "-d", help="Copy them into this folder.")
    ] = None,
) -> None:
    """List (or download) the files a run produced, and the ones it skipped."""

    async def go() -> tuple[list[ArtifactRecord], list[dict[str, Any]], ExportReport | None]:
        store = await _store()
        try:
            rid = await resolve_run_id(store, TENANT, run_id)
            arts = list(await store.list_artifacts(rid))
            skipped = skipped_from_events(await store.list_events(rid))
        finally:
            await store.aclose()
        report = None if download is None else await export_artifacts(arts, download)
        return arts, skipped, report

    arts, skipped, report = run_async(go())
    table = Table("path", "size", "media type", "sha256")
    for a in arts:
        table.add_row(escape(printable(a.path)), str(a.size), a.media_type, a.sha256[:16])
    for sk in skipped:
        table.add_row(escape(str(sk["path"])), "-", f"skipped: {sk['reason']}", "")
    console.print(table)
    if report is not None:
        for path, newer in report.superseded:
            error_line(f"artifact {path} not saved: the newer artifact {newer} needs its name")
        for path, why in report.failed:
            error_line(f"artifact {path} not saved in {download}: {why}")
        if report.failed:
            raise typer.Exit(EXIT_ARTIFACTS)


@app.command()
def delete(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix).")],
) -> None:
    """Delete a run: its events, artifacts (files too) and its sandbox."""

    async def go() -> str:
        settings = Settings.from_env()
        store = await _store()
        backend = DockerBackend(settings.home, egress=settings.egress_options())
        try:
            rec = await store.get_interaction(TENANT, await resolve_run_id(store, TENANT, run_id))
            if rec.sandbox_id:
                await backend.destroy(rec.sandbox_id)
            await store.delete_interaction(TENANT, rec.id)
            shutil.rmtree(settings.artifacts_dir / rec.id, ignore_errors=True)
            return rec.id
        finally:
            await backend.aclose()
            await store.aclose()

    print(f"deleted {run_async(go())}")
