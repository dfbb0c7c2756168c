"""Rendering run events for people (rich) or machines (--json, one event per line)."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from runtime.store.base import EventRecord

TAIL_LINES = 6


class EventPrinter:
    def __init__(self, console: Console, *, as_json: bool = False) -> None:
        self.console = console
        self.as_json = as_json
        self._open_text: int | None = None
        self._steps: dict[int, dict[str, Any]] = {}

    def __call__(self, ev: EventRecord) -> None:
        if self.as_json:
            sys.stdout.write(
                json.dumps({"event_id": ev.event_id, "event_type": ev.event_type, **ev.payload})
                + "\n"
            )
            sys.stdout.flush()
            return
        p = ev.payload
        t = ev.event_type
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
            self._end_text()
            err = p.get("error", {})
            self.console.print(
                f"[red]✗ {escape(str(err.get('code')))}: {escape(str(err.get('message')))}[/]"
            )

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
