"""`corral` — the command-line edge. Each command group lives in its own module."""

from __future__ import annotations

import sys

import structlog
import typer

from runtime.logs import configure_logging
from runtime.settings import Settings

app = typer.Typer(
    name="corral",
    help="Self-hosted runtime for managed AI agents in per-run Linux sandboxes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    from runtime.cli.common import configure_consoles

    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)
    configure_consoles()


def _register() -> None:
    # Imported here so `corral --help` stays one obvious place listing every group.
    from runtime.cli import agents, doctor, images, mcp, open, run, runs, sandbox, serve

    app.command("run")(run.run)
    app.add_typer(runs.app, name="runs")
    app.command("open")(open.open_run)
    app.add_typer(agents.app, name="agents")
    app.add_typer(sandbox.app, name="sandbox")
    app.add_typer(images.app, name="images")
    app.command("doctor")(doctor.doctor)
    app.command("serve")(serve.serve)
    app.command("mcp")(mcp.mcp)


_register()


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        print("corral: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # last line of defence: one line, never a traceback
        structlog.get_logger("corral.cli").debug("cli.crashed", exc_info=True)
        print(f"corral: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        print("corral: rerun with CORRAL_LOG_LEVEL=debug for details", file=sys.stderr)
        sys.exit(1)
