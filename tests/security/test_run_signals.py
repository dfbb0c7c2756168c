"""`corral run` as a real process always ends: SIGTERM cancels the run (sandbox removed, run
recorded `cancelled`), a second signal stops at once, and stderr never shows a traceback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import docker
import pytest
import yaml

pytestmark = pytest.mark.docker
CLI = [sys.executable, "-m", "runtime.cli", "run"]
HANG_GUARD = 120  # seconds; a hang fails the test instead of blocking the suite


def write_agent(folder: Path, turns: list[dict[str, Any]]) -> Path:
    script = folder / "turns.yaml"
    script.write_text(yaml.safe_dump({"turns": turns}))
    path = folder / "agent.yaml"
    spec = {"name": "t", "model": f"scripted:{script}", "tools": ["exec"]}
    path.write_text(yaml.safe_dump({**spec, "resources": {"memory": "256m"}}))
    return path


def start(home: Path, agent: Path, out: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "--agent", str(agent), "--json", "--out", str(out), "wait"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CORRAL_HOME": str(home)},
    )


def wait_for_line(proc: subprocess.Popen[str], marker: str) -> list[str]:
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if marker in line:
            return lines
    raise AssertionError(
        f"never saw {marker!r}; stderr: {proc.stderr.read() if proc.stderr else ''}"
    )


def containers_of(home: Path) -> list[Any]:
    client = docker.from_env()
    try:
        return [
            c
            for c in client.containers.list(all=True, filters={"label": "corral.managed=true"})
            if c.labels.get("corral.home") == str(home.resolve())
        ]
    finally:
        client.close()


def test_sigterm_cancels_the_run_and_exits(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(
        tmp_path,
        [
            {"tool_calls": [{"name": "exec", "arguments": {"command": "echo started; sleep 600"}}]},
            {"text": "never"},
        ],
    )
    proc = start(corral_home, agent, tmp_path / "o")
    try:
        lines = wait_for_line(proc, "started")
        proc.send_signal(signal.SIGTERM)
        rest, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.strip()] == [
        "corral: run cancelled: cancelled: the run was cancelled"
    ]
    evs = [json.loads(x) for x in "".join(lines).splitlines() + rest.splitlines() if x[:1] == "{"]
    final = [e for e in evs if e["event_type"] == "interaction.completed"][-1]
    assert final["interaction"]["status"] == "cancelled"
    assert containers_of(corral_home) == []


def test_a_second_sigterm_stops_at_once(tmp_path: Path, corral_home: Path) -> None:
    agent = write_agent(
        tmp_path,
        [
            {"tool_calls": [{"name": "exec", "arguments": {"command": "echo started; sleep 600"}}]},
            {"text": "never"},
        ],
    )
    proc = start(corral_home, agent, tmp_path / "o")
    try:
        wait_for_line(proc, "started")
        proc.send_signal(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("corral: "), err
