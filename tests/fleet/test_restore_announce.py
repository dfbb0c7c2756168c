"""The collector of a continued run (taken over or adopted) against a real sandbox: restored
artifacts are announced again only when the run changed them, and the only superseded copy it
removes is one of this node's own, whatever the (shared, possibly tampered) rows say.

The output folder is the agent's: it can rewrite a restored file with other content of the
same size (announced, by hash); the artifact rows come from the shared database: a row naming
a host file or another node's copy must not make this node delete it."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from runtime.artifacts import ArtifactCollector
from runtime.settings import Settings
from runtime.store.base import ArtifactRecord, InteractionRecord
from runtime.store.sql import open_store
from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend

pytestmark = pytest.mark.docker
RID = "int_restored"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
async def sandbox(corral_home: Path) -> AsyncIterator[Sandbox]:
    backend = DockerBackend(corral_home)
    sb = await Sandbox.create(SandboxSpec(memory="256m"), backend=backend)
    try:
        yield sb
    finally:
        await sb.destroy()
        await backend.aclose()


async def test_restored_files_are_announced_only_when_changed(
    corral_home: Path, sandbox: Sandbox, tmp_path: Path
) -> None:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    own = settings.artifacts_dir / RID
    own.mkdir(parents=True)
    mine = own / ("a" * 32)  # this node's copy from before a restart
    mine.write_bytes(b"same\n")
    elsewhere = tmp_path / "other-home" / "artifacts" / RID / ("b" * 32)  # another node's
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(b"kept\n")
    victim = tmp_path / ("c" * 32)  # a host file a tampered row names
    victim.write_bytes(b"host\n")

    def row(path: str, data: bytes, stored: Path) -> ArtifactRecord:
        return ArtifactRecord(RID, path, len(data), _sha(data), stored_path=str(stored))

    restored = {
        "same.txt": row("same.txt", b"same\n", mine),
        "changed.txt": row("changed.txt", b"old!\n", elsewhere),
        "kept.txt": row("kept.txt", b"kept\n", elsewhere),
        "hostile.txt": row("hostile.txt", b"host\n", victim),
    }
    store = await open_store(settings)
    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, payload))

    try:
        await store.create_interaction(InteractionRecord(id=RID, tenant="t"))
        # What the takeover put back, then the run rewrote changed.txt keeping its size.
        script = (
            "mkdir -p out && printf 'same\\n' > out/same.txt && printf 'new!\\n' > out/changed.txt"
            " && printf 'kept\\n' > out/kept.txt && printf 'host\\n' > out/hostile.txt"
        )
        assert (await sandbox.exec(script)).exit_code == 0
        collector = ArtifactCollector(
            store=store,
            emit=emit,
            interaction_id=RID,
            sandbox=sandbox,
            output_dir="/workspace/out",
            dest_root=settings.artifacts_dir,
            restored=restored,
        )
        got = await collector.scan()
        arts = {a.path: a for a in await store.list_artifacts(RID)}
    finally:
        await store.aclose()

    assert sorted(a.path for a in got) == ["changed.txt", "hostile.txt", "kept.txt", "same.txt"]
    announced = [p["artifact"]["path"] for k, p in events if k == "artifact.created"]
    assert announced == ["changed.txt"]
    assert arts["changed.txt"].sha256 == _sha(b"new!\n")
    # Every row now points to this node's own new copy.
    assert all(Path(a.stored_path).parent == own for a in arts.values())
    assert not mine.exists()  # this node's superseded copy is removed
    assert elsewhere.read_bytes() == b"kept\n"  # another node's is left alone
    assert victim.read_bytes() == b"host\n"  # and so is whatever else a row names
    assert len(list(own.iterdir())) == 4
