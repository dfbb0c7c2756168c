"""A compromised guest: the collector must not trust the listing it gets back.

The real guest never lists `..`, absolute paths or names outside the output folder (see
test_artifacts_names.py for the real sandbox); here a stand-in guest does, to show the host
side checks them itself. No Docker: this is the host's validation of guest answers.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from runtime.artifacts import ArtifactCollector, sweep_staging
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import open_store
from sandbox.types import FileInfo


class LyingFiles:
    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.downloads: list[str] = []

    async def list(self, path: str, *, recursive: bool = False) -> list[FileInfo]:
        return [FileInfo(p, 3, False, 0o644, 1.0, False) for p in self.paths]

    async def download(self, path: str) -> AsyncIterator[bytes]:
        self.downloads.append(path)
        yield b"abc"


async def test_hostile_listing_entries_are_refused(corral_home: Path) -> None:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    store = await open_store(settings)
    try:
        await store.create_interaction(InteractionRecord(id="int_l", tenant="t"))
        files = LyingFiles(
            [
                "out/../../../etc/passwd",
                "/etc/shadow",
                "elsewhere/x",
                "out//double",
                "out/./dot",
                "out/ok",
            ]
        )
        sandbox: Any = SimpleNamespace(files=files, spec=SimpleNamespace(workdir="/workspace"))
        events: list[tuple[str, dict[str, Any]]] = []

        async def emit(kind: str, payload: dict[str, Any]) -> None:
            events.append((kind, payload))

        collector = ArtifactCollector(
            store=store,
            emit=emit,
            interaction_id="int_l",
            sandbox=sandbox,
            output_dir="/workspace/out",
            dest_root=settings.artifacts_dir,
        )
        got = await collector.scan()
        assert [a.path for a in got] == ["ok"]
        assert files.downloads == ["out/ok"]
        reasons = [p["reason"] for k, p in events if k == "artifact.skipped"]
        assert reasons == ["invalid_name"] * 5
        stored = Path(got[0].stored_path)
        assert stored.parent == settings.artifacts_dir / "int_l"
        assert hashlib.sha256(stored.read_bytes()).hexdigest() == got[0].sha256
        everything = sorted(p.name for p in settings.home.rglob("*") if p.is_file())
        assert "passwd" not in everything and "shadow" not in everything
    finally:
        await store.aclose()


def test_staging_left_by_a_dead_process_is_swept(tmp_path: Path) -> None:
    staging = tmp_path / ".staging"
    staging.mkdir()
    dead = 2**22 + 12345  # above the default pid_max: no such process
    (staging / f"{dead}-abc.part").write_bytes(b"x")
    (staging / f"{os.getpid()}-def.part").write_bytes(b"y")  # a live writer's
    assert sweep_staging(tmp_path) == 1
    assert sorted(os.listdir(staging)) == [f"{os.getpid()}-def.part"]
