"""Artifacts: files a run writes under its output folder, copied out while the run goes on.

After every tool call (and at the end) the collector lists the output folder in the sandbox;
new or changed files are streamed out (never loaded whole) into
`$CORRAL_HOME/artifacts/<interaction>/<path>`, hashed on the way, recorded in the store and
announced as `artifact.created` events. Caps on count and bytes protect the host's disk.
"""

from __future__ import annotations

import hashlib
import mimetypes
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import aiofiles
import aiofiles.os
import structlog

from runtime.store.base import ArtifactRecord, Store
from runtime.views import artifact_view
from sandbox.api import Sandbox
from sandbox.errors import ToolError

log = structlog.get_logger("corral.artifacts")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Where artifact events go (the run's Recorder, so they stay in order with its steps)."""


@dataclass(frozen=True)
class ArtifactLimits:
    max_files: int = 1000
    max_bytes: int = 2 * 1024**3


def safe_relpath(path: str) -> PurePosixPath:
    """A relative path with no `..`, no absolute part and no empty names — or ValueError."""
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or any(part in ("..", "", ".") for part in p.parts):
        raise ValueError(f"unsafe artifact path: {path!r}")
    return p


class ArtifactCollector:
    def __init__(
        self,
        *,
        store: Store,
        emit: Emit,
        interaction_id: str,
        sandbox: Sandbox,
        output_dir: str,
        dest_root: Path,
        limits: ArtifactLimits = ArtifactLimits(),
    ) -> None:
        self.store = store
        self.emit = emit
        self.interaction_id = interaction_id
        self.sandbox = sandbox
        self.output_dir = output_dir.rstrip("/")
        self.dest = dest_root / interaction_id
        self.limits = limits
        self._seen: dict[str, tuple[int, float]] = {}
        self._bytes = 0
        self._warned = False

    async def scan(self) -> list[ArtifactRecord]:
        try:
            infos = await self.sandbox.files.list(self.output_dir, recursive=True)
        except ToolError:
            return []  # the folder does not exist (yet)
        prefix = self._prefix()
        found: list[ArtifactRecord] = []
        for info in infos:
            if info.is_dir or getattr(info, "is_symlink", False):
                continue
            rel = info.path[len(prefix) :] if info.path.startswith(prefix) else info.path
            key = (info.size, info.mtime)
            if self._seen.get(rel) == key:
                continue
            if rel not in self._seen and len(self._seen) >= self.limits.max_files:
                await self._warn(
                    f"artifact count cap ({self.limits.max_files}) reached; {rel} not kept"
                )
                continue
            if self._bytes + info.size > self.limits.max_bytes:
                await self._warn(
                    f"artifact size cap ({self.limits.max_bytes} bytes) reached; {rel} not kept"
                )
                continue
            try:
                rec = await self._copy(rel, info.path)
            except (ToolError, ValueError) as exc:
                log.warning("artifact.copy_failed", path=rel, error=str(exc))
                continue
            self._seen[rel] = key
            self._bytes += rec.size
            found.append(rec)
        return found

    def _prefix(self) -> str:
        # FileInfo paths are relative to the workspace; the output folder is absolute.
        out = self.output_dir
        ws = self.sandbox.spec.workdir.rstrip("/")
        rel = out[len(ws) + 1 :] if out.startswith(ws + "/") else out.lstrip("/")
        return rel + "/" if rel else ""

    async def _copy(self, rel: str, sandbox_path: str) -> ArtifactRecord:
        relpath = safe_relpath(rel)
        target = self.dest.joinpath(*relpath.parts)
        if not target.resolve().is_relative_to(self.dest.resolve()):
            raise ValueError(f"unsafe artifact path: {rel!r}")
        await aiofiles.os.makedirs(target.parent, exist_ok=True)
        tmp = target.with_name(f".{target.name}.part")
        digest = hashlib.sha256()
        size = 0
        async with aiofiles.open(tmp, "wb") as f:
            async for chunk in self.sandbox.files.download(sandbox_path):
                digest.update(chunk)
                size += len(chunk)
                await f.write(chunk)
        os.replace(tmp, target)
        media = mimetypes.guess_type(relpath.name)[0] or "application/octet-stream"
        rec = ArtifactRecord(
            interaction_id=self.interaction_id,
            path=str(relpath),
            size=size,
            sha256=digest.hexdigest(),
            media_type=media,
            stored_path=str(target),
        )
        await self.store.add_artifact(rec)
        await self.emit("artifact.created", {"artifact": artifact_view(rec)})
        return rec

    async def _warn(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            await self.emit("artifact.skipped", {"message": message})
