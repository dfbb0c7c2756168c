"""`corral agents …` — the agents Corral can run: list, show, validate."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from runtime.agents.registry import EXAMPLES_DIR, list_agents, resolve_agent
from runtime.agents.spec import AgentSpec, load_agent_file
from runtime.cli.common import EXIT_FAILED, EXIT_USAGE, console, fail
from runtime.errors import AgentSpecError, NotFound
from runtime.settings import Settings

app = typer.Typer(help="Agent definitions: built-in, examples and your own.", no_args_is_help=True)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (instructions) as readable `|` blocks, not escaped one-liners."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


_COLUMNS = ("name", "model", "tools", "from", "description")


def _origin(spec: AgentSpec) -> str:
    """Short provenance for the table: builtin, example, user, or the file path."""
    src = spec.source
    if src.startswith("builtin:"):
        return "builtin"
    path = Path(src)
    if path.parent == EXAMPLES_DIR:
        return "example"
    if path.parent == Settings.from_env().agents_dir:
        return "user"
    return src


def _tool_labels(spec: AgentSpec) -> list[str]:
    return [t if isinstance(t, str) else f"{t.type}:{t.name}" for t in spec.tools]


def _summary(spec: AgentSpec) -> dict[str, object]:
    return {
        "name": spec.name,
        "description": spec.description,
        "model": spec.model,
        "tools": _tool_labels(spec),
        "image": spec.resolved_image(),
        "network": spec.network.mode,
        "source": spec.source,
    }


@app.command("list")
def list_(
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """List the agents you can run by name (built-ins, examples, $CORRAL_HOME/agents)."""
    problems: list[AgentSpecError] = []
    specs = list_agents(on_error=problems.append)
    for p in problems:
        # A broken file must not hide the others; say which and why, on stderr.
        print(f"warning: skipped {str(p).splitlines()[0]}", file=sys.stderr)
    if as_json:
        print(json.dumps([_summary(s) for s in specs]))
        return
    rows = [
        (s.name, s.model or "(default)", ",".join(_tool_labels(s)), _origin(s), s.description)
        for s in specs
    ]
    widths = [max([len(t), *(len(r[i]) for r in rows)]) for i, t in enumerate(_COLUMNS[:4])]
    # The description gets the room left on the line and is cut with "…"; the rest never wrap.
    room = max(console.width - sum(widths) - 2 * len(_COLUMNS) - 1, 20)
    table = Table(*_COLUMNS, box=None)
    for col in table.columns:
        col.no_wrap = True
    for row in rows:
        desc = row[4] if len(row[4]) <= room else row[4][: room - 1] + "…"
        table.add_row(*(escape(cell) for cell in (*row[:4], desc)))
    console.print(table)


@app.command("show")
def show(
    agent: Annotated[str, typer.Argument(metavar="NAME|FILE", help="Agent name or spec file.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON on stdout.")] = False,
) -> None:
    """Print an agent's full spec, defaults filled in."""
    try:
        spec = resolve_agent(agent)
    except (AgentSpecError, NotFound) as exc:
        fail(str(exc), EXIT_USAGE)
    full = spec.model_dump(mode="json", exclude_none=True)
    full["image"] = spec.resolved_image()
    if as_json:
        print(json.dumps(full | {"source": spec.source}))
        return
    print(f"# source: {spec.source}")
    print(yaml.dump(full, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100), end="")


@app.command("validate")
def validate(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...", help="Spec files to check.")],
) -> None:
    """Check agent spec files; every problem is printed as FILE: field: reason."""
    bad = 0
    for f in files:
        try:
            spec = load_agent_file(f)
        except AgentSpecError as exc:
            bad += 1
            for line in str(exc).splitlines():
                print(line, file=sys.stderr)
            continue
        print(f"ok: {f} ({spec.name})")
    if bad:
        raise typer.Exit(EXIT_FAILED)
