"""Python wheels for an image, downloaded on the host (`pip download`) into a cache folder.

Images cannot reach PyPI over HTTPS (they do not trust the host's CAs), so the host fetches
wheels for bookworm's interpreter (CPython 3.11, glibc 2.36, x86_64) and the build installs
them with `--no-index`. requirements.txt must pin every package, dependencies included;
downloads use `--no-deps` so the pins are the whole truth.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sandbox.errors import SandboxError
from sandbox.images.inputs import pinned_requirements

# Tags bookworm's python3 accepts; pip does not widen an explicit --platform on its own.
PLATFORMS = (
    "manylinux_2_36_x86_64",
    "manylinux_2_35_x86_64",
    "manylinux_2_34_x86_64",
    "manylinux_2_31_x86_64",
    "manylinux_2_28_x86_64",
    "manylinux_2_24_x86_64",
    "manylinux_2_17_x86_64",
    "manylinux2014_x86_64",
    "manylinux2010_x86_64",
    "manylinux1_x86_64",
    "linux_x86_64",
)
GUEST_PYTHON = "3.11.2"
"""bookworm's python3, patch level included: pip checks Requires-Python against it (some
releases need a later 3.11.x and must not be picked for the guest)."""
GUEST_ABI = "cp311"


def default_cache() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "corral" / "wheels"


def download_command(requirements: Path, dest: Path) -> list[str]:
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--quiet",
        "--no-deps", "--only-binary=:all:", "--implementation", "cp",
        "--python-version", GUEST_PYTHON, "--abi", GUEST_ABI,
        "--abi", "abi3", "--abi", "none",
    ]  # fmt: skip
    for p in PLATFORMS:
        cmd += ["--platform", p]
    return [*cmd, "-r", str(requirements), "-d", str(dest)]


def download_wheels(folder: Path, cache: Path) -> list[Path]:
    """Wheels for the folder's pinned requirements.txt, from `cache` or downloaded into it.

    Returns only the wheels named by the pins, so an old version left in the cache never
    reaches an image.
    """
    pins = pinned_requirements(folder)
    if not pins:
        return []
    cache.mkdir(parents=True, exist_ok=True)
    wanted = {_key(*pin.split("==")) for pin in pins}
    if not wanted <= _cached(cache).keys():
        proc = subprocess.run(
            download_command(folder / "requirements.txt", cache),
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no output"]
            raise SandboxError(
                f"pip download for {folder.name} failed: {lines[-1]}", reason="wheels_failed"
            )
    have = _cached(cache)
    missing = sorted(f"{n}=={v}" for n, v in wanted - have.keys())
    if missing:
        raise SandboxError(
            f"pip download for {folder.name} gave no wheel for: {', '.join(missing)}",
            reason="wheels_failed",
        )
    return sorted(have[k] for k in wanted)


def _cached(cache: Path) -> dict[tuple[str, str], Path]:
    out = {}
    for whl in cache.glob("*.whl"):
        name, version = whl.name.split("-")[:2]
        out[_key(name, version)] = whl
    return out


def _key(name: str, version: str) -> tuple[str, str]:
    # Wheel file names normalise `-` and `.` in the project name to `_` (PEP 427 / 503).
    return name.strip().lower().replace("-", "_").replace(".", "_"), version.strip()
