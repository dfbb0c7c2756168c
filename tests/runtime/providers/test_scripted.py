from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.errors import ConfigError
from runtime.providers.base import Message, ModelProvider, ToolSpec
from runtime.providers.registry import demo_script_path
from runtime.providers.scripted import EXHAUSTED_TEXT, ScriptedProvider, load_script
from tests.runtime.providers.conftest import RecordingSleep

SCRIPT = """
turns:
  - text: Looking at the system first.
    thought: start simple
    tool_calls:
      - name: exec
        arguments: {command: uname -a}
      - name: exec
        arguments: {command: df -h}
    delay: 0.25
  - text: All done for ${task}.
    usage: {input_tokens: 100, output_tokens: 7}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_replays_turns_then_says_it_is_exhausted(tmp_path: Path) -> None:
    sleep = RecordingSleep()
    provider = ScriptedProvider(load_script(write(tmp_path, SCRIPT)), sleep=sleep)
    assert isinstance(provider, ModelProvider)
    pieces: list[str] = []

    async def on_text(text: str) -> None:
        pieces.append(text)

    history = [Message(role="user", content="the demo")]
    first = await provider.complete(
        history,
        system="sys",
        tools=[ToolSpec("exec", "run", {"type": "object"})],
        on_text=on_text,
    )
    assert first.text == "Looking at the system first."
    assert len(pieces) > 1 and "".join(pieces) == first.text
    assert first.thought == "start simple"
    assert [c.arguments for c in first.tool_calls] == [
        {"command": "uname -a"},
        {"command": "df -h"},
    ]
    ids = [c.id for c in first.tool_calls]
    assert all(ids) and len(set(ids)) == 2
    assert first.stop_reason == "tool_use"
    assert first.usage.input_tokens > 0 and first.usage.output_tokens > 0  # estimated
    assert sleep.delays == [0.25]

    second = await provider.complete(history)
    assert second.text == "All done for the demo."
    assert (second.usage.input_tokens, second.usage.output_tokens) == (100, 7)
    assert second.tool_calls == [] and second.stop_reason == "end_turn"

    third = await provider.complete(history)
    assert third.text == EXHAUSTED_TEXT
    assert third.tool_calls == []
    await provider.aclose()


async def test_json_and_bare_list_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, json.dumps([{"tool_calls": [{"name": "list_files"}]}]), "s.json")
    provider = ScriptedProvider.from_file(path)
    turn = await provider.complete([Message(role="user", content="x")])
    assert [(c.name, c.arguments) for c in turn.tool_calls] == [("list_files", {})]
    assert provider.model == str(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("turns: 3", r"expected `turns:`"),
        ("turns: [{text: 1}]", r"turn 0: text: must be a string"),
        ("turns: [{}]", r"turn 0: text: a turn needs text or tool_calls"),
        ("- text: ok\n- tool_calls: [{arguments: {}}]", r"turn 1: tool_calls\[0\]\.name: must"),
        ("- tool_calls: [{name: x, arguments: [1]}]", r"turn 0: tool_calls\[0\]\.arguments"),
        ("- {text: hi, colour: red}", r"turn 0: colour: unknown field"),
        ("- {text: hi, usage: {input_tokens: -1}}", r"turn 0: usage.input_tokens: must be"),
        ("- {text: hi, delay: soon}", r"turn 0: delay: must be a number"),
        ("turns: [text: [", r"not valid YAML"),
        ("tunrs: []", r"unknown top-level key"),
    ],
)
def test_validation_errors_name_file_turn_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_script(path)
    assert str(path) in str(info.value)
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_script(tmp_path / "nope.yaml")


# --- the bundled demo script ---------------------------------------------------------------

DEMO_TOOLS = {"exec", "python", "write_file", "read_file", "list_files"}


def test_demo_script_is_valid_and_ends_plainly() -> None:
    turns = load_script(demo_script_path())
    assert 4 <= len(turns) <= 7
    assert all(c.name in DEMO_TOOLS for t in turns for c in t.tool_calls)
    assert turns[-1].tool_calls == ()
    assert "This was a scripted demo run (no model was called)" in turns[-1].text
    paths = [c.arguments["path"] for t in turns for c in t.tool_calls if "path" in c.arguments]
    assert paths and all(p.startswith("/workspace/out") for p in paths)
    for t in turns:
        for c in t.tool_calls:
            if c.name == "python":
                ast.parse(c.arguments["code"])


def test_demo_python_steps_really_run(tmp_path: Path) -> None:
    """Run the demo's Python steps here, with /workspace pointed at a temp folder, so a broken
    demo fails in the unit tests rather than on a new user's first command."""
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "task.txt").write_text("count primes\n")
    for t in load_script(demo_script_path()):
        for c in t.tool_calls:
            if c.name == "python":
                code = c.arguments["code"].replace("/workspace", str(tmp_path))
                subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    report = (tmp_path / "out" / "report.md").read_text()
    assert "scripted demo run" in report
    assert "**Task given:** count primes" in report
    assert "1229 primes" in report
    lines = (tmp_path / "out" / "primes.csv").read_text().splitlines()
    assert lines[0] == "n,prime,gap_to_next" and len(lines) == 1230
