"""A full disk where Corral keeps its state (CORRAL_HOME on a small tmpfs, for real).

Whether the agent fills it with an artifact or the store cannot grow, the run ends `failed`
with `storage_full`, leaves no partial file, and `corral run` exits with one line on stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
import structlog
import yaml

from runtime.agents.registry import resolve_agent
from runtime.controller import open_controller
from runtime.settings import Settings
from runtime.store.sql import open_store


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """`folder` as a tmpfs of `size` bytes for the block; skips if mounting is not allowed."""
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False, capture_output=True)


@pytest.fixture(autouse=True)
def fresh_logging() -> None:
    # An in-process CLI test elsewhere may have pointed structlog at a stream since closed.
    structlog.reset_defaults()


@pytest.fixture
def small_home(
    corral_home: Path, monkeypatch: pytest.MonkeyPatch, session_root: Path
) -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="full-", dir=session_root))
    with mounted_tmpfs(home, "24m"):
        monkeypatch.setenv("CORRAL_HOME", str(home))
        try:
            yield home
        finally:
            _remove_containers(home)


def _remove_containers(home: Path) -> None:
    client = docker.from_env()
    try:
        for c in client.containers.list(all=True, filters={"label": "corral.managed=true"}):
            if c.labels.get("corral.home") == str(home.resolve()):
                c.remove(force=True, v=True)
    finally:
        client.close()


def write_agent(folder: Path, turns: list[dict[str, Any]]) -> Path:
    script = folder / "turns.yaml"
    script.write_text(yaml.safe_dump({"turns": turns}))
    path = folder / "agent.yaml"
    spec = {
        "name": "filler",
        "model": f"scripted:{script}",
        "tools": ["exec", "files"],
        "resources": {"memory": "512m"},
    }
    path.write_text(yaml.safe_dump(spec))
    return path


def exec_call(command: str) -> dict[str, Any]:
    return {"tool_calls": [{"name": "exec", "arguments": {"command": command}}]}


def partial_files(home: Path) -> list[Path]:
    staging = home / "artifacts" / ".staging"
    return [p for p in home.rglob("*.part")] + (
        [p for p in staging.iterdir()] if staging.exists() else []
    )


def corral_run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CORRAL_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "runtime.cli", "run", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,  # a hang guard, not a measurement
        check=False,
    )


@pytest.mark.docker
def test_an_artifact_that_fills_the_disk_fails_the_run_cleanly(
    small_home: Path, tmp_path: Path
) -> None:
    agent = write_agent(
        tmp_path,
        [
            exec_call("mkdir -p out && printf small > out/a.txt"),
            exec_call("head -c 64000000 /dev/zero > out/huge.bin"),
            {"text": "never reached"},
        ],
    )
    out = tmp_path / "out"
    done = corral_run(small_home, "--agent", str(agent), "--out", str(out), "--json", "fill")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    err_lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert any("storage_full" in line for line in err_lines), done.stderr
    final = [
        json.loads(line)
        for line in done.stdout.splitlines()
        if line.startswith("{") and '"interaction.completed"' in line
    ][-1]["interaction"]
    assert final["status"] == "failed"
    assert [e["code"] for e in final["errors"]] == ["storage_full"]
    assert not partial_files(small_home)
    assert (out / "a.txt").read_bytes() == b"small"  # what was stored before is delivered

    async def stored() -> tuple[str, list[str]]:
        store = await open_store(Settings(home=small_home))
        try:
            rec = await store.get_interaction("local", final["id"])
            arts = await store.list_artifacts(final["id"])
            for a in arts:
                assert Path(a.stored_path).stat().st_size == a.size
            return rec.status, [a.path for a in arts]
        finally:
            await store.aclose()

    assert asyncio.run(stored()) == ("failed", ["a.txt"])


@pytest.mark.docker
async def test_a_store_that_cannot_grow_ends_the_run(small_home: Path, tmp_path: Path) -> None:
    agent = resolve_agent(str(write_agent(tmp_path, [exec_call("seq 1 200000"), {"text": "done"}])))
    settings = Settings(home=small_home)
    async with open_controller(settings) as ctl:
        rec = await ctl.runner.create(agent, "x")
        filler = small_home / "filler"
        with open(filler, "wb") as f, contextlib.suppress(OSError):  # fills the disk on purpose
            while True:
                f.write(b"\0" * (1 << 20))
        try:
            follow = asyncio.create_task(_follow(ctl, rec.id))
            final = await ctl.runner.run(rec)
            await follow  # the live stream ends too
            assert final.status == "failed"
            assert final.errors and final.errors[0]["code"] == "storage_full"
            assert "Traceback" not in final.errors[0]["message"]
            # Recorded although the disk is still full: the reserve made room for the verdict.
            stored = await ctl.store.get_interaction("local", rec.id)
            assert (stored.status, stored.errors[0]["code"]) == ("failed", "storage_full")
        finally:
            filler.unlink()
    assert not partial_files(small_home)


async def _follow(ctl: Any, interaction_id: str) -> None:
    async for _ in ctl.bus.subscribe(interaction_id):
        pass
