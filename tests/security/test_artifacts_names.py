"""Hostile names in the output folder: the artifact collector against a real sandbox.

Everything under the output folder is chosen by the agent. None of it may crash the run, make
the collector overwrite or delete another artifact, or make the controller open, follow or
write anything outside its own folders. What the host cannot keep is reported, never dropped
silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime.artifacts import ArtifactCollector
from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import SqlStore, open_store
from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend

pytestmark = pytest.mark.docker
LONG = "n" * 250  # a legal name inside the sandbox; `.NAME.part` would not be (256 bytes)


@dataclass
class Rig:
    settings: Settings
    store: SqlStore
    sandbox: Sandbox
    collector: ArtifactCollector
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def sh(self, command: str) -> None:
        r = await self.sandbox.exec(command)
        assert r.exit_code == 0, r.stderr

    def skipped(self) -> dict[str, str]:
        return {p["path"]: p["reason"] for k, p in self.events if k == "artifact.skipped"}

    async def assert_store_matches_disk(self) -> None:
        """Every listed artifact has its bytes, with the recorded hash; nothing else is kept."""
        arts = await self.store.list_artifacts("int_h")
        for a in arts:
            data = Path(a.stored_path).read_bytes()
            assert hashlib.sha256(data).hexdigest() == a.sha256, a.path
            assert len(data) == a.size
        kept = {str(p) for p in (self.settings.artifacts_dir / "int_h").rglob("*") if p.is_file()}
        assert kept == {a.stored_path for a in arts}
        assert not _staging_files(self.settings)


def _staging_files(settings: Settings) -> list[Path]:
    return [p for p in settings.home.rglob("*.part")] + [
        p for p in (settings.artifacts_dir / ".staging").rglob("*") if p.is_file()
    ]


@pytest.fixture
async def rig(corral_home: Path) -> AsyncIterator[Rig]:
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    store = await open_store(settings)
    await store.create_interaction(InteractionRecord(id="int_h", tenant="t"))
    backend = DockerBackend(corral_home)
    sb = await Sandbox.create(SandboxSpec(memory="256m"), backend=backend)
    events: list[tuple[str, dict[str, Any]]] = []

    async def emit(kind: str, payload: dict[str, Any]) -> None:
        events.append((kind, payload))

    collector = ArtifactCollector(
        store=store,
        emit=emit,
        interaction_id="int_h",
        sandbox=sb,
        output_dir="/workspace/out",
        dest_root=settings.artifacts_dir,
    )
    try:
        yield Rig(settings, store, sb, collector, events)
    finally:
        await sb.destroy()
        await backend.aclose()
        await store.aclose()


async def test_a_250_byte_name_is_collected(rig: Rig) -> None:
    await rig.sh(f"mkdir -p out && printf long > out/{LONG} && printf ok > out/ok.txt")
    got = await rig.collector.scan()
    assert sorted(a.path for a in got) == sorted([LONG, "ok.txt"])
    await rig.assert_store_matches_disk()


async def test_a_file_that_becomes_a_folder_and_back(rig: Rig) -> None:
    await rig.sh("mkdir -p out && printf file > out/x && printf dir > out/d")
    await rig.collector.scan()
    await rig.sh("rm out/x out/d && mkdir -p out/x out/d/e && printf in > out/x/y")
    await rig.sh("printf deep > out/d/e/f")
    got = await rig.collector.scan()
    assert sorted(a.path for a in got) == ["d/e/f", "x/y"]
    await rig.sh("rm -r out/x && printf again > out/x")
    assert [a.path for a in await rig.collector.scan()] == ["x"]
    await rig.assert_store_matches_disk()
    assert (await rig.store.get_artifact("int_h", "x/y")).size == 2


async def test_a_file_named_like_a_staging_file_is_not_clobbered(rig: Rig) -> None:
    await rig.sh("mkdir -p out && printf agent-part > out/.b.part && printf bee > out/b")
    await rig.sh("printf p2 > 'out/.corral-staging' && printf t > out/.b.part.part")
    await rig.collector.scan()
    await rig.sh("printf bee2 > out/b")  # changed: copied again beside the agent's .b.part
    await rig.collector.scan()
    arts = {a.path: a for a in await rig.store.list_artifacts("int_h")}
    assert set(arts) == {".b.part", "b", ".corral-staging", ".b.part.part"}
    assert Path(arts[".b.part"].stored_path).read_bytes() == b"agent-part"
    assert Path(arts["b"].stored_path).read_bytes() == b"bee2"
    await rig.assert_store_matches_disk()


async def test_symlinks_are_reported_never_followed(rig: Rig) -> None:
    await rig.sh(
        "mkdir -p out && ln -s /etc/passwd out/passwd && ln -s /etc out/etc "
        "&& ln -s .. out/up && ln -s /workspace/out/missing out/dangling && printf ok > out/ok"
    )
    got = await rig.collector.scan()
    assert [a.path for a in got] == ["ok"]
    skipped = rig.skipped()
    assert set(skipped) == {"passwd", "etc", "up", "dangling"}
    assert all(r == "symlink" for r in skipped.values())
    assert await rig.collector.scan() == []
    assert len(rig.skipped()) == 4  # reported once each, not after every tool call
    await rig.assert_store_matches_disk()


async def test_names_the_host_cannot_store_are_skipped_with_a_reason(rig: Rig) -> None:
    await rig.sh(
        "mkdir -p out && printf a > \"$(printf 'out/bad\\377name')\" "
        "&& printf b > \"$(printf 'out/esc\\033[2Jname')\" && printf c > out/fine.txt"
    )
    got = await rig.collector.scan()
    assert [a.path for a in got] == ["fine.txt"]
    reasons = set(rig.skipped().values())
    assert reasons == {"invalid_name"}
    shown = [p["path"] for k, p in rig.events if k == "artifact.skipped"]
    assert all(s.isprintable() for s in shown)  # shown escaped: one safe line each
    await rig.assert_store_matches_disk()


async def test_a_swapped_file_is_skipped_not_followed(rig: Rig, corral_home: Path) -> None:
    """A file listed as regular and replaced by a symlink before the copy is not followed."""
    await rig.sh("mkdir -p out && printf one > out/a")
    infos = await rig.sandbox.files.list("/workspace/out", recursive=True)
    await rig.sh("rm out/a && ln -s /etc/shadow out/a")
    await rig.collector._collect(infos)  # the listing the agent raced against
    assert await rig.store.list_artifacts("int_h") == []
    assert rig.skipped() == {"a": "unreadable"}
    await rig.assert_store_matches_disk()


async def test_a_copy_cancelled_midway_leaves_nothing_behind(rig: Rig) -> None:
    await rig.sh("mkdir -p out && head -c 100000000 /dev/zero > out/big")
    task = asyncio.create_task(rig.collector.scan())
    staging = rig.settings.artifacts_dir / ".staging"
    while not task.done() and not (staging.exists() and any(staging.iterdir())):
        await asyncio.sleep(0.001)  # until the copy is under way
    assert not task.done(), "the copy ended before it could be cancelled"
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await rig.assert_store_matches_disk()
    got = await rig.collector.scan()  # and the next scan copies it whole
    assert [a.path for a in got] == ["big"] and got[0].size == 100_000_000
    await rig.assert_store_matches_disk()
