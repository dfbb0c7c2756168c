"""Artifact collection against a real sandbox: streamed out, hashed, capped."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from runtime.artifacts import ArtifactCollector, ArtifactLimits
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import open_store
from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend

pytestmark = pytest.mark.docker


async def test_collects_new_and_changed_files_within_caps(corral_home: Path) -> None:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    store = await open_store(settings)
    await store.create_interaction(InteractionRecord(id="int_a", tenant="t"))
    backend = DockerBackend(corral_home)
    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, payload))

    sb = await Sandbox.create(SandboxSpec(memory="256m"), backend=backend)
    try:
        collector = ArtifactCollector(
            store=store,
            emit=emit,
            interaction_id="int_a",
            sandbox=sb,
            output_dir="/workspace/out",
            dest_root=settings.artifacts_dir,
            limits=ArtifactLimits(max_files=2, max_bytes=10_000),
        )
        assert await collector.scan() == []  # no output folder yet: nothing, no error
        await sb.exec(
            "mkdir -p out/d && printf one > out/a.txt && printf two > out/d/b.txt && ln -s /etc/passwd out/link"
        )
        got = await collector.scan()
        assert sorted(a.path for a in got) == ["a.txt", "d/b.txt"]  # the symlink is not followed
        stored = Path(next(a.stored_path for a in got if a.path == "d/b.txt"))
        assert stored.read_bytes() == b"two"
        assert stored.parent == settings.artifacts_dir / "int_a"  # a name of ours, not the agent's
        assert {a.sha256 for a in got} == {
            hashlib.sha256(b"one").hexdigest(),
            hashlib.sha256(b"two").hexdigest(),
        }
        assert await collector.scan() == []  # unchanged: not copied again
        await sb.exec(
            "printf changed > out/a.txt && printf three > out/c.txt && head -c 20000 /dev/zero > out/a.txt"
        )
        again = await collector.scan()
        assert again == []  # a.txt now exceeds the byte cap, c.txt the count cap
        skipped = {p["path"]: p["reason"] for k, p in events if k == "artifact.skipped"}
        assert skipped == {"link": "symlink", "a.txt": "size_cap", "c.txt": "count_cap"}
        announced = [p["artifact"]["path"] for k, p in events if k == "artifact.created"]
        assert sorted(announced) == ["a.txt", "d/b.txt"]
        assert [a.path for a in await store.list_artifacts("int_a")] == ["a.txt", "d/b.txt"]
    finally:
        await sb.destroy()
        await backend.aclose()
        await store.aclose()
