"""`corral run` when the host itself is the problem: one line on stderr, a non-zero exit,
never a traceback (no Docker needed: these fail before a sandbox is asked for)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml


def agent_file(folder: Path) -> Path:
    script = folder / "turns.yaml"
    script.write_text(yaml.safe_dump({"turns": [{"text": "hi"}]}))
    path = folder / "agent.yaml"
    path.write_text(yaml.safe_dump({"name": "t", "model": f"scripted:{script}"}))
    return path


def corral_run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "CORRAL_HOME": str(home)},
        timeout=120,  # a hang guard
        check=False,
    )


def test_a_home_that_cannot_be_created_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    done = corral_run(blocker / "home", "--agent", str(agent_file(tmp_path)), "x")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("corral: error: "), done.stderr
