"""`corral run` — the main job: an agent on a task in a fresh sandbox, steps shown live,
artifacts downloaded into a local folder, an exit code CI can act on.

Exit codes: 0 completed (and every stored artifact written to `--out`), 1 failed, 2 usage
(bad agent, unknown run), 3 budget exceeded, 4 completed but some stored artifacts could not
be written to `--out` (each named on stderr), 130 cancelled (SIGINT or SIGTERM).

Files the collector skipped during the run (symbolic links, names the host cannot keep, over a
cap) are part of the run's record: reported as they happen and counted in the summary, they
do not change the exit code. A run that does not complete prints each of its errors as one
`corral: run failed: CODE: message` line on stderr. Errors of the command itself are one
`corral: error: …` line — never a traceback — and the command always ends: a first SIGINT or
SIGTERM cancels the run, which gets STOP_GRACE seconds to end cleanly; a second stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.agents.registry import resolve_agent
from runtime.agents.spec import AgentSpec
from runtime.artifacts import export_artifacts, host_error, skipped_from_events
from runtime.cli.common import (
    EXIT_ARTIFACTS,
    EXIT_BY_STATUS,
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    console,
    err_console,
    error_line,
    fail,
    resolve_run_id,
    run_async,
)
from runtime.cli.render import EventPrinter
from runtime.controller import Controller, open_controller
from runtime.errors import AgentSpecError, ConfigError, CorralError, NotFound
from runtime.providers.registry import default_model_from_env
from runtime.runner import RunOptions
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import open_store
from sandbox.errors import SandboxError

TENANT = "local"
STOP_GRACE = 15.0
"""Seconds a cancelled run gets to end cleanly (remove its sandbox, record its end)."""
FOLLOW_DRAIN = 5.0
"""Seconds the live output may lag behind a run that has ended."""


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
            help="Continue a previous run (its id or a unique prefix): same conversation, same "
            "agent, model and limits unless given here; same workspace while its sandbox lives.",
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
    previous: InteractionRecord | None = None
    if continue_id is not None:
        previous = run_async(_previous_run(settings, continue_id))
        continue_id = previous.id
    if agent is None and model is None and previous is None and not _model_configured():
        # A fresh machine without a model key still gets a real run: the scripted demo.
        agent = "demo"
        if not as_json:
            err_console.print(
                "[yellow]No model configured (CORRAL_MODEL, OPENAI_API_KEY, ANTHROPIC_API_KEY "
                "or GEMINI_API_KEY): running the scripted demo agent.[/]"
            )
    try:
        if previous is not None and agent is None:
            # --continue: the run's own agent, as it ran (not whatever the default is now).
            spec = AgentSpec.from_dict(
                previous.config["agent_spec"], source=f"agent of {previous.id}"
            )
        else:
            spec = resolve_agent(agent)
    except (AgentSpecError, NotFound) as exc:
        fail(str(exc), EXIT_USAGE)
    before = _previous_options(previous)
    try:
        inherited = previous.model if previous is not None and agent is None else None
        chosen = model or inherited or spec.model or default_model_from_env()
    except ConfigError as exc:
        fail(str(exc), EXIT_USAGE)
    opts = RunOptions(
        keep_sandbox=keep,
        model=chosen,
        max_steps=max_steps if max_steps is not None else before.max_steps,
        max_tool_calls=max_tool_calls if max_tool_calls is not None else before.max_tool_calls,
        max_total_tokens=before.max_total_tokens,
        timeout=timeout if timeout is not None else before.timeout,
        image=image or (before.image if agent is None else None),
    )
    try:
        final, out_dir, report = asyncio.run(
            _run(settings, spec, task, opts, continue_id, out, as_json)
        )
    except (CorralError, SandboxError) as exc:
        fail(str(exc), EXIT_USAGE if isinstance(exc, (ConfigError, NotFound)) else EXIT_FAILED)
    except (asyncio.CancelledError, KeyboardInterrupt):
        fail("interrupted before the run could end cleanly", EXIT_CANCELLED)
    except OSError as exc:
        fail(str(host_error(exc)))
    except Exception as exc:  # one line, never a traceback (CORRAL_LOG_LEVEL=debug for more)
        fail(f"internal error: {type(exc).__name__}: {exc}")
    code = EXIT_BY_STATUS.get(final.status, EXIT_FAILED)
    if final.status != "completed":
        for e in final.errors:
            error_line(f"run {final.status}: {e.get('code')}: {e.get('message')}")
    for path, newer in report.superseded:
        error_line(f"artifact {path} not saved: the newer artifact {newer} needs its name")
    for path, why in report.failed:
        error_line(f"artifact {path} not saved in {out_dir}: {why}")
    if code == EXIT_OK and report.failed:
        code = EXIT_ARTIFACTS
    if not as_json:
        style = "green" if code == EXIT_OK else "red"
        skipped = f", {len(report.skipped)} skipped (listed above)" if report.skipped else ""
        console.print(
            f"[{style}]● {final.status}[/] run {final.id} · {final.usage.get('total_tokens', 0)} tokens · "
            f"{len(report.written)} artifact(s) in {out_dir}{skipped}"
        )
        if final.status == "completed" and spec.model and spec.model.startswith("scripted:"):
            console.print(
                "[dim]This was a scripted demo run: no model was called. Set OPENAI_API_KEY (or ANTHROPIC_API_KEY / GEMINI_API_KEY) and the same command runs a real model.[/]"
            )
    raise typer.Exit(code)


async def _previous_run(settings: Settings, given: str) -> InteractionRecord:
    """The run `--continue` names (its id or a unique prefix)."""
    settings.ensure_dirs()
    store = await open_store(settings)
    try:
        return await store.get_interaction(TENANT, await resolve_run_id(store, TENANT, given))
    finally:
        await store.aclose()


def _previous_options(previous: InteractionRecord | None) -> RunOptions:
    """The limits (and image) the continued run was given on its command line, if any."""
    if previous is None:
        return RunOptions()
    given = previous.config.get("options") or {}
    fields = {f for f in RunOptions.__dataclass_fields__}
    return RunOptions(**{k: v for k, v in given.items() if k in fields})


def _model_configured() -> bool:
    try:
        default_model_from_env()
    except ConfigError:
        return False
    return True


@dataclass
class OutReport:
    """What `--out` received: files written, files not written (path, why), and the files the
    collector skipped during the run (reported there, as `artifact.skipped` events)."""

    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    superseded: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


async def _run(
    settings: Settings,
    spec: object,
    task: str,
    opts: RunOptions,
    continue_id: str | None,
    out: Path | None,
    as_json: bool,
) -> tuple[InteractionRecord, Path, OutReport]:
    from runtime.agents.spec import AgentSpec

    assert isinstance(spec, AgentSpec)
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    job: asyncio.Task[InteractionRecord] | None = None
    signals = 0
    grace: asyncio.TimerHandle | None = None

    def on_signal() -> None:
        # First SIGINT/SIGTERM: cancel the run (it ends `cancelled`, its sandbox removed) and
        # give that STOP_GRACE seconds; a second signal, or the grace running out, stops now.
        nonlocal signals, grace
        signals += 1
        if job is not None and not job.done() and signals == 1:
            job.cancel()
            grace = loop.call_later(STOP_GRACE, main.cancel)
        else:
            main.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        async with open_controller(settings) as ctl:
            with contextlib.suppress(SandboxError):
                await ctl.backend.reap_idle()
            rec = await ctl.runner.create(
                spec, task, options=opts, previous_interaction_id=continue_id
            )
            if not as_json:
                err_console.print(
                    f"[dim]run {rec.id} · agent {spec.name} · model {rec.model} · image {opts.image or spec.sandbox_spec().image}[/]"
                )
            printer = EventPrinter(console, as_json=as_json, errors_on_stderr=False)
            follower = asyncio.create_task(_follow(ctl, rec.id, printer))
            job = ctl.runner.start(rec)
            try:
                final = await job
                if grace is not None:
                    grace.cancel()  # the run ended in time: what follows is not interrupted
                # The run has ended and released its followers; this only bounds a follower
                # that could not read the store, so `corral run` always returns.
                with contextlib.suppress(TimeoutError, Exception):
                    await asyncio.wait_for(asyncio.shield(follower), FOLLOW_DRAIN)
            finally:
                follower.cancel()
                with contextlib.suppress(BaseException):
                    await follower
                printer.close()
            out_dir = out or Path.cwd() / "corral-out" / rec.id
            report = OutReport()
            with contextlib.suppress(CorralError, OSError):
                report.skipped = skipped_from_events(await ctl.store.list_events(rec.id))
            try:
                arts = await ctl.store.list_artifacts(rec.id)
            except CorralError as exc:
                report.failed.append(("(all)", f"the run's artifact list cannot be read: {exc}"))
            else:
                exported = await export_artifacts(arts, out_dir)
                report.written, report.failed = exported.written, exported.failed
                report.superseded = exported.superseded
            return final, out_dir, report
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _follow(ctl: Controller, interaction_id: str, printer: EventPrinter) -> None:
    async for ev in ctl.bus.subscribe(interaction_id):
        if ev is not None:
            printer(ev)
