"""Writing a run's artifacts into the caller's folder (`corral run --out`): agent-chosen names
meet whatever is already in that folder. Nothing is followed, nothing is deleted, every file
that can be written is, and each one that cannot is reported — the copy never stops early."""

from __future__ import annotations

import hashlib
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from runtime.artifacts import export_artifacts
from runtime.store.base import ArtifactRecord
from tests.security.test_run_disk_full import mounted_tmpfs

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def blob(root: Path, path: str, data: bytes, *, age: int = 0) -> ArtifactRecord:
    stored = root / hashlib.sha256(path.encode()).hexdigest()
    stored.write_bytes(data)
    return ArtifactRecord(
        interaction_id="int_x",
        path=path,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        stored_path=str(stored),
        created=T0 - timedelta(seconds=age),
    )


def leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".corral-*")]


async def test_five_files_all_written_despite_hostile_names(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    long = "n" * 250
    recs = [
        blob(store, "a.txt", b"a"),
        blob(store, ".b.part", b"agent part"),
        blob(store, "b", b"bee"),
        blob(store, long, b"long"),
        blob(store, "sub/c", b"c"),
    ]
    out = tmp_path / "out"
    report = await export_artifacts(recs, out)
    assert report.failed == []
    assert sorted(report.written) == sorted(r.path for r in recs)
    assert (out / ".b.part").read_bytes() == b"agent part"
    assert (out / "b").read_bytes() == b"bee"
    assert (out / long).read_bytes() == b"long"
    assert not leftovers(out)


async def test_planted_symlinks_in_the_destination_are_not_followed(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "target").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "docs").symlink_to(outside)  # a folder link: writing docs/x would land outside
    (out / "a").symlink_to(outside / "target")  # a file link: must be replaced, not followed
    recs = [blob(store, "docs/x", b"x"), blob(store, "a", b"new"), blob(store, "ok", b"ok")]
    report = await export_artifacts(recs, out)
    assert report.written == ["a", "ok"]
    assert [p for p, _ in report.failed] == ["docs/x"]
    assert "symbolic link" in report.failed[0][1]
    assert sorted(os.listdir(outside)) == ["target"]
    assert (outside / "target").read_bytes() == b"precious"
    assert not (out / "a").is_symlink() and (out / "a").read_bytes() == b"new"
    assert not leftovers(out)


async def test_file_and_folder_of_one_name_newest_wins(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    recs = [
        blob(store, "x", b"old file", age=10),
        blob(store, "x/y", b"newer", age=5),
        blob(store, "z/w", b"old in folder", age=10),
        blob(store, "z", b"newer file", age=5),
    ]
    out = tmp_path / "out"
    report = await export_artifacts(recs, out)
    assert sorted(report.written) == ["x/y", "z"]
    assert report.superseded == [("x", "x/y"), ("z/w", "z")]
    assert report.failed == []
    assert (out / "x" / "y").read_bytes() == b"newer"
    assert (out / "z").read_bytes() == b"newer file"


async def test_a_missing_stored_copy_does_not_stop_the_rest(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    recs = [blob(store, f"f{i}", b"%d" % i) for i in range(5)]
    os.unlink(recs[0].stored_path)
    report = await export_artifacts(recs, tmp_path / "out")
    assert report.written == ["f1", "f2", "f3", "f4"]
    assert [p for p, _ in report.failed] == ["f0"]


async def test_hostile_paths_from_the_store_are_refused(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    recs = [
        blob(store, "../escape", b"x"),
        blob(store, "/abs", b"x"),
        blob(store, "a/../../b", b"x"),
        blob(store, "ok", b"x"),
    ]
    out = tmp_path / "deep" / "out"
    report = await export_artifacts(recs, out)
    assert report.written == ["ok"]
    assert len(report.failed) == 3
    assert sorted(os.listdir(tmp_path)) == ["deep", "store"]
    assert os.listdir(out) == ["ok"]


async def test_a_full_destination_writes_what_fits(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    recs = [blob(store, "big", b"\0" * (4 << 20)), blob(store, "small", b"s")]
    out = tmp_path / "out"
    with mounted_tmpfs(out, "1m"):
        report = await export_artifacts(recs, out)
        assert report.written == ["small"]
        assert report.failed == [("big", "no space left in the destination")]
        assert not leftovers(out)
