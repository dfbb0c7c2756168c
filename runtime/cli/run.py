"""`corral run` — the main job: an agent on a task in a fresh sandbox, steps shown live,
artifacts downloaded into a local folder, an exit code CI can act on."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
from pathlib import Path
from typing import Annotated

import typer

from runtime.agents.registry import resolve_agent
from runtime.cli.common import (
    EXIT_BUDGET,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    err_console,
    fail,
)
from runtime.cli.render import EventPrinter
from runtime.controller import open_controller
from runtime.errors import AgentSpecError, ConfigError, CorralError, NotFound
from runtime.providers.registry import default_model_from_env
from runtime.runner import RunOptions
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from sandbox.errors import SandboxError

EXIT_BY_STATUS = {
    "completed": EXIT_OK,
    "failed": EXIT_FAILED,
    "budget_exceeded": EXIT_BUDGET,
    "cancelled": EXIT_CANCELLED,
    "requires_action": EXIT_FAILED,
}


def run(
    task: Annotated[str, typer.Argument(help="What the agent should do.")],
    agent: Annotated[
        str | None,
        typer.Option(
            "--agent", "-a", help="Agent name or YAML file (default: the built-in general agent)."
        ),
    ] = None,
    model: Annotated[
        str | None,
        typer.Option(
            "--model", "-m", help="provider:model, e.g. openai:gpt-4o-mini or scripted:FILE."
        ),
    ] = None,
    image: Annotated[
        str | None, typer.Option(help="Sandbox image (overrides the agent's).")
    ] = None,
    max_steps: Annotated[int | None, typer.Option(help="Maximum model turns.")] = None,
    max_tool_calls: Annotated[int | None, typer.Option(help="Maximum tool calls.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Wall-clock limit in seconds.")] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where artifacts go (default ./corral-out/<run id>/)."),
    ] = None,
    continue_id: Annotated[
        str | None,
        typer.Option(
            "--continue",
            help="Continue a previous run (same conversation; same workspace while its sandbox lives).",
        ),
    ] = None,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep/--no-keep", help="Keep the sandbox for `--continue` until its idle TTL."
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON event per line on stdout (for CI).")
    ] = False,
) -> None:
    """Run an agent on TASK in a fresh sandbox and download what it produced."""
    settings = Settings.from_env()
    if agent is None and model is None and not _model_configured():
        # A fresh machine without a model key still gets a real run: the scripted demo.
        agent = "demo"
        if not as_json:
            err_console.print(
                "[yellow]No model configured (CORRAL_MODEL, OPENAI_API_KEY, ANTHROPIC_API_KEY "
                "or GEMINI_API_KEY): running the scripted demo agent.[/]"
            )
    try:
        spec = resolve_agent(agent)
    except (AgentSpecError, NotFound) as exc:
        fail(str(exc), EXIT_USAGE)
    try:
        chosen = model or spec.model or default_model_from_env()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    opts = RunOptions(
        keep_sandbox=keep,
        model=chosen,
        max_steps=max_steps,
        max_tool_calls=max_tool_calls,
        timeout=timeout,
        image=image,
    )
    try:
        final, out_dir, copied = asyncio.run(
            _run(settings, spec, task, opts, continue_id, out, as_json)
        )
    except (CorralError, SandboxError) as exc:
        fail(str(exc), EXIT_USAGE if isinstance(exc, (ConfigError, NotFound)) else EXIT_FAILED)
    code = EXIT_BY_STATUS.get(final.status, EXIT_FAILED)
    if not as_json:
        style = "green" if code == EXIT_OK else "red"
        console.print(
            f"[{style}]● {final.status}[/] run {final.id} · {final.usage.get('total_tokens', 0)} tokens · "
            f"{copied} artifact(s) in {out_dir}"
        )
        if final.status == "completed" and spec.model and spec.model.startswith("scripted:"):
            console.print(
                "[dim]This was a scripted demo run: no model was called. Set OPENAI_API_KEY (or ANTHROPIC_API_KEY / GEMINI_API_KEY) and the same command runs a real model.[/]"
            )
    raise typer.Exit(code)


def _model_configured() -> bool:
    try:
        default_model_from_env()
    except ConfigError:
        return False
    return True


async def _run(
    settings: Settings,
    spec: object,
    task: str,
    opts: RunOptions,
    continue_id: str | None,
    out: Path | None,
    as_json: bool,
) -> tuple[InteractionRecord, Path, int]:
    from runtime.agents.spec import AgentSpec

    assert isinstance(spec, AgentSpec)
    async with open_controller(settings) as ctl:
        with contextlib.suppress(SandboxError):
            await ctl.backend.reap_idle()
        rec = await ctl.runner.create(spec, task, options=opts, previous_interaction_id=continue_id)
        if not as_json:
            err_console.print(
                f"[dim]run {rec.id} · agent {spec.name} · model {rec.model} · image {opts.image or spec.sandbox_spec().image}[/]"
            )
        job = ctl.runner.start(rec)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, job.cancel)
        loop.add_signal_handler(signal.SIGTERM, job.cancel)
        printer = EventPrinter(console, as_json=as_json)
        try:
            async for ev in ctl.bus.subscribe(rec.id):
                if ev is not None:
                    printer(ev)
            final = await job
        finally:
            printer.close()
            loop.remove_signal_handler(signal.SIGINT)
            loop.remove_signal_handler(signal.SIGTERM)
        out_dir = out or Path.cwd() / "corral-out" / rec.id
        copied = await _download(ctl.store, rec.id, out_dir)
        return final, out_dir, copied


async def _download(store: object, interaction_id: str, out_dir: Path) -> int:
    from runtime.artifacts import safe_relpath
    from runtime.store.sql import SqlStore

    assert isinstance(store, SqlStore)
    arts = await store.list_artifacts(interaction_id)
    for a in arts:
        target = out_dir.joinpath(*safe_relpath(a.path).parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(shutil.copyfile, a.stored_path, target)
    return len(arts)
