"""The images Corral knows how to build, where their folders live, and in which order."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import SpecError

DEBIAN_PULL = "debian:bookworm-slim"
"""The upstream base, used when it is present locally or can be pulled."""
DEBIAN_LOCAL = "corral/debian:bookworm"
"""The offline fallback: bootstrapped with debootstrap and `docker import`-ed under this tag."""


@dataclass(frozen=True)
class ImageDef:
    """One buildable image: a folder with a Dockerfile (its build context) and a parent."""

    name: str
    """Short name used on the command line (`base`, `browser`, ...)."""
    repository: str
    """Docker repository; the image is tagged `<repository>:latest`."""
    folder: Path
    parent: str | None
    """Name of the catalog image it is built FROM, or None for the Debian root image."""
    default: bool = True
    """Built by a plain `corral images build` (else only when named or with --all)."""

    @property
    def tag(self) -> str:
        return f"{self.repository}:latest"


def images_dir() -> Path:
    """The folder holding one sub-folder per image (`$CORRAL_IMAGES_DIR` overrides)."""
    env = os.environ.get("CORRAL_IMAGES_DIR")
    if env:
        return Path(env).expanduser()
    # sandbox/images/catalog.py -> repository root -> images/
    return Path(__file__).resolve().parents[2] / "images"


def catalog(root: Path | None = None) -> list[ImageDef]:
    """The known images, parents before children."""
    root = root or images_dir()
    return [
        ImageDef("base", "corral/base", root / "base", parent=None),
        ImageDef("browser", "corral/browser", root / "browser", parent="base"),
        ImageDef("research", "corral/research", root / "research", parent="browser", default=False),
    ]


def select(
    names: Sequence[str], *, all_images: bool = False, known: Iterable[ImageDef] | None = None
) -> list[ImageDef]:
    """The images to build for the given names, with their parents, parents first.

    No names means the default images (all of them with `all_images`).
    """
    defs = list(known) if known is not None else catalog()
    by_name = {d.name: d for d in defs}
    for n in names:
        if n not in by_name and not any(d.repository == n or d.tag == n for d in defs):
            choices = ", ".join(by_name)
            raise SpecError(f"unknown image {n!r} (known: {choices})")
    wanted = {
        d.name
        for d in defs
        if (d.name in names or d.repository in names or d.tag in names)
        or (not names and (all_images or d.default))
    }
    # Close over parents: a child cannot be current unless its parent exists.
    changed = True
    while changed:
        changed = False
        for n in list(wanted):
            parent = by_name[n].parent
            if parent is not None and parent not in wanted:
                wanted.add(parent)
                changed = True
    return _topological([d for d in defs if d.name in wanted], by_name)


def _topological(defs: list[ImageDef], by_name: dict[str, ImageDef]) -> list[ImageDef]:
    def depth(d: ImageDef) -> int:
        n = 0
        while d.parent is not None:
            d = by_name[d.parent]
            n += 1
        return n

    return sorted(defs, key=depth)  # stable: catalog order among equals
