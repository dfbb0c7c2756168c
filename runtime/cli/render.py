"""Rendering run events for people (rich) or machines (--json, one event per line).

`--json` lines carry `event_type` and `event_id` like the SSE payloads (`event_id` a string,
as the google-genai SDK types it) over the recorded payload: every event the run recorded,
Corral's own (`artifact.created`, ...) included, steps as recorded (`function_call` for exec).
"""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.status import Status

from runtime.cli.common import error_line
from runtime.store.base import EventRecord

TAIL_LINES = 6


class EventPrinter:
    """Prints events as they come. On a terminal a spinner says what the run is waiting for
    (the model, a tool); it pauses while model text streams so lines are never torn.

    A run's `error` events are one `corral: error: CODE: message` line on stderr in both modes
    (the `--json` line on stdout too), unless `errors_on_stderr` is off because the caller
    reports the run's errors itself (`corral run` does, once the run has ended)."""

    def __init__(
        self, console: Console, *, as_json: bool = False, errors_on_stderr: bool = True
    ) -> None:
        self.console = console
        self.as_json = as_json
        self.errors_on_stderr = errors_on_stderr
        self._open_text: int | None = None
        self._steps: dict[int, dict[str, Any]] = {}
        self._status: Status | None = (
            console.status("starting…", spinner="dots")
            if console.is_terminal and not as_json
            else None
        )
        self._spinning = False

    def _busy(self, text: str) -> None:
        if self._status is None:
            return
        self._status.update(f"[dim]{escape(text)}[/]")
        if not self._spinning:
            self._status.start()
            self._spinning = True

    def _idle(self) -> None:
        if self._status is not None and self._spinning:
            self._status.stop()
            self._spinning = False

    def close(self) -> None:
        self._idle()

    def __call__(self, ev: EventRecord) -> None:
        if ev.event_type == "error" and self.errors_on_stderr:
            self._end_text()
            err = ev.payload.get("error") or {}
            error_line(f"error: {err.get('code')}: {err.get('message')}")
        if self.as_json:
            sys.stdout.write(
                json.dumps(
                    {**ev.payload, "event_type": ev.event_type, "event_id": str(ev.event_id)}
                )
                + "\n"
            )
            sys.stdout.flush()
            return
        p = ev.payload
        t = ev.event_type
        self._track(t, p)
        if t == "step.start":
            step = p["step"]
            self._steps[p["index"]] = step
            self._start(step, p["index"])
        elif t == "step.delta":
            delta = p.get("delta") or {}
            if delta.get("type") == "text":
                self._text(delta.get("text", ""))
            elif delta.get("type") == "tool_output":
                self._end_text()
                lines = delta.get("text", "").rstrip("\n").splitlines()[-TAIL_LINES:]
                style = "red" if delta.get("stream") == "stderr" else "dim"
                for line in lines:
                    self.console.print(f"   [{style}]│ {escape(line[:200])}[/]")
        elif t == "step.stop":
            if self._open_text == p["index"]:
                self._end_text()
        elif t == "artifact.created":
            a = p["artifact"]
            self._end_text()
            self.console.print(
                f"[green]  + artifact[/] {escape(a['path'])} [dim]({_size(a['size'])})[/]"
            )
        elif t == "network.refused":
            self._end_text()
            self.console.print(
                f"[yellow]  ⊘ network refused[/] {escape(str(p.get('host')))}:{p.get('port')} "
                f"[dim]({escape(str(p.get('reason')))})[/]"
            )
        elif t == "artifact.skipped":
            self.console.print(f"[yellow]  ! {escape(p.get('message', ''))}[/]")
        elif t == "error":
            self._end_text()  # the error itself is a line on stderr (see the class docstring)

    def _track(self, t: str, p: dict[str, Any]) -> None:
        """Keep the spinner's line in step with what the run is doing."""
        if t == "interaction.created":
            self._busy("starting the sandbox…")
        elif t == "step.start":
            kind = p["step"].get("type")
            if kind == "model_output":
                self._idle()
            elif kind == "function_call":
                self._busy(f"running {p['step'].get('name', 'tool')}…")
            elif kind in ("function_result", "user_input"):
                self._busy("waiting for the model…")
        elif t == "step.stop" and self._open_text == p.get("index"):
            self._end_text()  # finish the text line before the spinner takes the line
            self._busy("waiting for the model…")
        elif t in ("interaction.completed", "error"):
            self._idle()

    def _start(self, step: dict[str, Any], index: int) -> None:
        kind = step.get("type")
        if kind == "model_output":
            text = "".join(
                c.get("text", "") for c in step.get("content", []) if c.get("type") == "text"
            )
            self._open_text = index
            self.console.print("[bold cyan]◆[/] ", end="")
            if text:
                self._text(text)
        elif kind == "thought":
            self._end_text()
            summary = "".join(c.get("text", "") for c in step.get("summary", []))
            self.console.print(f"[dim italic]  … {escape(summary[:300])}[/]")
        elif kind == "function_call":
            self._end_text()
            self.console.print(
                f"[bold yellow]▶ {escape(step.get('name', '?'))}[/] {escape(_args(step.get('arguments')))}"
            )
        elif kind == "function_result":
            result = str(step.get("result", ""))
            first = result.splitlines()[0] if result else ""
            if str(step.get("name", "")).startswith("browser_") and first.startswith("Page: "):
                # Browser steps: the page the action left us on (title — URL).
                mark = "[red]✗[/]" if step.get("is_error") else "[green]✓[/]"
                self.console.print(f"  {mark} [blue]🌐 {escape(first[6:][:200])}[/]")
                return
            mark = "[red]✗[/]" if step.get("is_error") else "[green]✓[/]"
            self.console.print(f"  {mark} [dim]{escape(first[:160])}[/]")
        elif kind == "user_input":
            pass

    def _text(self, text: str) -> None:
        self.console.print(escape(text), end="", highlight=False)

    def _end_text(self) -> None:
        if self._open_text is not None:
            self.console.print()
            self._open_text = None


def _args(args: Any) -> str:
    if isinstance(args, dict):
        if "command" in args:
            return str(args["command"])[:300]
        if "code" in args:
            first = str(args["code"]).strip().splitlines()
            return (first[0] + (" …" if len(first) > 1 else ""))[:300] if first else ""
        if "path" in args:
            return str(args["path"])
        for key in ("url", "ref", "text", "key", "action", "expression"):  # browser tools
            if key in args:
                more = f" {args['value']!r}" if "value" in args else ""
                return f"{key}={str(args[key])[:250]}{more[:60]}"
    return json.dumps(args)[:300]


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"
