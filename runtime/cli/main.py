"""`corral` — the command-line edge. Each command group lives in its own module."""

from __future__ import annotations

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
    settings = Settings.from_env()
    configure_logging(settings.log_format, settings.log_level)


def _register() -> None:
    # Imported here so `corral --help` stays one obvious place listing every group.
    from runtime.cli import doctor, images

    app.add_typer(images.app, name="images")
    app.command("doctor")(doctor.doctor)


def main() -> None:
    _register()
    app()
