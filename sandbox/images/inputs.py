"""The input hash that decides whether an image is current (pure functions, no Docker).

An image is current when its `corral.inputs` label equals the hash over everything its build
reads: the parent image id and every file in its folder (Dockerfile, helper files, the pinned
requirements). Downloaded wheels are not hashed: they follow from the pinned requirements, so
the check needs no network and a no-op `corral images build` takes seconds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

LABEL_INPUTS = "corral.inputs"
LABEL_PARENT = "corral.parent"

# Files the build writes into the context (never inputs) and editor/VCS noise.
IGNORED_PARTS = frozenset({"wheels", "__pycache__", ".git"})
_VERSION = b"corral-image-inputs/1\0"


def context_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(posix relative path, path) of every input file in the folder, sorted."""
    found = []
    for p in folder.rglob("*"):
        rel = p.relative_to(folder)
        if any(part in IGNORED_PARTS for part in rel.parts) or not p.is_file():
            continue
        found.append((rel.as_posix(), p))
    yield from sorted(found)


def inputs_hash(folder: Path, parent_id: str) -> str:
    """sha256 hex over the parent image id and each file's path and bytes."""
    h = hashlib.sha256(_VERSION)
    _field(h, parent_id.encode())
    for rel, path in context_files(folder):
        _field(h, rel.encode())
        _field(h, path.read_bytes())
    return h.hexdigest()


def _field(h: hashlib._Hash, data: bytes) -> None:
    # Length-prefixed so that no two different inputs can concatenate to the same bytes.
    h.update(len(data).to_bytes(8, "big"))
    h.update(data)


def pinned_requirements(folder: Path) -> list[str]:
    """The `name==version` lines of the folder's requirements.txt (empty when there is none).

    Every line must pin an exact version: unpinned wheels would make the hash lie.
    """
    req = folder / "requirements.txt"
    if not req.is_file():
        return []
    pins = []
    for raw in req.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if (
            not sep
            or not name.strip()
            or not version.strip()
            or any(c in version for c in "<>=,*;")
        ):
            raise ValueError(f"{req}: {line!r} is not pinned as name==version")
        pins.append(f"{name.strip()}=={version.strip()}")
    return pins
