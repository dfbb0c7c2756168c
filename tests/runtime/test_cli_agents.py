"""`corral agents list|show|validate` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from runtime.cli import agents

EXAMPLES = Path(__file__).parents[2] / "examples" / "agents"


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.add_typer(agents.app, name="agents")
    return app


runner = CliRunner()


def test_list_shows_builtins_and_examples(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["agents", "list"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["name", "model", "tools", "from", "description"]
    assert any(line.split()[:2] == ["demo", "scripted:demo"] for line in lines)
    assert any(line.split()[0] == "researcher" and "example" in line for line in lines)


def test_list_json(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["agents", "list", "--json"])
    assert result.exit_code == 0
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["default"]["source"] == "builtin:default"
    assert rows["researcher"]["image"] == "corral/browser"
    assert {"coder", "data-analyst", "demo"} <= set(rows)


def test_list_warns_about_broken_user_file(cli: typer.Typer, corral_home: Path) -> None:
    (corral_home / "agents").mkdir()
    (corral_home / "agents" / "broken.yaml").write_text("name: broken\nlimits: [\n")
    result = runner.invoke(cli, ["agents", "list", "--json"])
    assert result.exit_code == 0
    assert "broken" not in {r["name"] for r in json.loads(result.stdout)}
    assert "warning: skipped" in result.stderr and "broken.yaml: line" in result.stderr


def test_show_by_name_prints_full_yaml(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["agents", "show", "coder"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"# source: {EXAMPLES / 'coder.yaml'}\n")
    shown = yaml.safe_load(result.stdout)
    assert shown["name"] == "coder"
    assert shown["limits"]["max_steps"] == 60
    assert shown["image"] == "corral/base"  # defaults filled in
    assert shown["output_dir"] == "/workspace/out"


def test_show_file_json(cli: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text("name: mine\ntools: [browser]\n")
    result = runner.invoke(cli, ["agents", "show", str(f), "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert (data["name"], data["image"], data["source"]) == ("mine", "corral/browser", str(f))


def test_show_unknown_is_one_line_and_nonzero(cli: typer.Typer) -> None:
    result = runner.invoke(cli, ["agents", "show", "nope"])
    assert result.exit_code == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("corral: error: unknown agent 'nope' (available: ")


def test_show_invalid_file_is_one_line(cli: typer.Typer, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("name: a\nlimits: {max_steps: x}\nnetwork: {mode: closed}\n")
    result = runner.invoke(cli, ["agents", "show", str(f)])
    assert result.exit_code == 2
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"corral: error: {f}: ")


def test_validate_ok_and_bad(cli: typer.Typer, tmp_path: Path) -> None:
    ok = runner.invoke(cli, ["agents", "validate", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    assert ok.exit_code == 0, ok.output
    assert ok.stdout.count("ok: ") == len(list(EXAMPLES.glob("*.yaml")))

    bad = tmp_path / "bad.yaml"
    bad.write_text("name: a\nlimits:\n  max_steps: many\n")
    result = runner.invoke(cli, ["agents", "validate", str(EXAMPLES / "coder.yaml"), str(bad)])
    assert result.exit_code == 1
    assert "ok: " in result.stdout
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{bad}: limits.max_steps: ")


def test_validate_missing_file(cli: typer.Typer, tmp_path: Path) -> None:
    result = runner.invoke(cli, ["agents", "validate", str(tmp_path / "x.yaml")])
    assert result.exit_code == 1
    assert result.stderr.strip() == f"{tmp_path / 'x.yaml'}: no such file"
