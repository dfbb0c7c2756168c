"""One structured log stream: structlog's events and the standard library's records (uvicorn,
libraries, `warnings`) rendered by the same renderer — JSON lines for machines
(`CORRAL_LOG_FORMAT=json`), readable lines on a terminal — to stderr.

uvicorn is run with `log_config=None` and without its access log (`runtime.api.server`), so it
adds no handler or format of its own: its records reach the root handler installed here. HTTP
access lines are structlog events (`http.access` with method, path, status, duration_ms; see
`runtime.api.accesslog`).
"""

from __future__ import annotations

import logging
import sys

import structlog

# Loggers whose own handlers would print plain lines beside ours.
FOREIGN = ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi")


def _drop_color_message(
    _logger: object, _name: str, event: structlog.typing.EventDict
) -> structlog.typing.EventDict:
    event.pop("color_message", None)  # uvicorn's ANSI copy of the message
    return event


class _CurrentStderr:
    """Whatever `sys.stderr` is when a line is written, not when logging was configured: a
    host that swaps it (a CLI test runner, an embedding app) and closes the old one must not
    make every later log call raise, killing the loop that logged (the server's reaper)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def readable_logs(fmt: str) -> bool:
    """Whether logs in format `fmt` are lines for a person (else JSON, one object a line)."""
    return fmt == "console" or (fmt == "auto" and sys.stderr.isatty())


def configure_logging(fmt: str = "auto", level: str = "warning") -> None:
    lvl = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    pretty = readable_logs(fmt)
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if pretty
        else structlog.processors.JSONRenderer()
    )
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(_CurrentStderr())
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                *shared,
                structlog.stdlib.add_logger_name,
                structlog.stdlib.ExtraAdder(),
                _drop_color_message,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_corral", False):
            root.removeHandler(old)
    handler._corral = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(lvl)
    for name in FOREIGN:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
        foreign.setLevel(lvl)
    logging.captureWarnings(True)
