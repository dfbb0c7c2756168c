"""WarmPool: pre-started, already-connected sandboxes per spec shape, refilled in the background.

Acquiring from the pool costs a dictionary lookup; the caller's first exec is then a plain RPC
round trip. Per-run settings that a running container cannot change are applied at acquire:
environment (merged into every exec) and data (copied in, since a pooled container was started
without the run's mounts).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import deque
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import structlog

from sandbox.api import Sandbox
from sandbox.backends.base import Backend
from sandbox.errors import SandboxError
from sandbox.spec import DataMount, SandboxSpec

log = structlog.get_logger("corral.sandbox.pool")
CLAIMED = "claimed"
"""Marker in a sandbox's host folder: this pooled sandbox now belongs to a run (adopt it). It
holds the labels the acquirer asked for (JSON), which a running container cannot take on."""
CLAIMED_MAX = 64 * 1024
CHUNK = 1024 * 1024


def claimed_labels(host_dir: Path) -> dict[str, str]:
    """The labels a pooled sandbox was acquired with (empty when unclaimed). The marker is in
    the controller's own folder (never mounted), so the guest cannot forge it."""
    try:
        with (host_dir / CLAIMED).open("rb") as f:
            data = json.loads(f.read(CLAIMED_MAX) or b"{}")
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items()}


class WarmPool:
    def __init__(self, backend: Backend, *, max_concurrent_creates: int = 4) -> None:
        self.backend = backend
        self._targets: dict[str, tuple[SandboxSpec, int]] = {}
        self._ready: dict[str, deque[Sandbox]] = {}
        self._fillers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._create_slots = asyncio.Semaphore(max_concurrent_creates)
        self._changed = asyncio.Condition()
        self._closed = False
        self.failures = 0

    def add(self, spec: SandboxSpec, size: int) -> None:
        """Keep `size` sandboxes of this spec's shape ready (starts filling at once)."""
        base = spec.model_copy(update={"env": {}, "data": (), "labels": {}})
        key = base.pool_key()
        self._targets[key] = (base, size)
        self._ready.setdefault(key, deque())
        self._wake.setdefault(key, asyncio.Event()).set()
        if key not in self._fillers:
            self._fillers[key] = asyncio.create_task(self._fill(key), name=f"pool-fill-{key[:24]}")

    def ready(self, spec: SandboxSpec) -> int:
        return len(self._ready.get(spec.pool_key(), ()))

    async def wait_ready(
        self, spec: SandboxSpec, count: int | None = None, timeout: float = 120
    ) -> None:
        """Wait until `count` (default: the target size) sandboxes of this shape are ready."""
        key = spec.pool_key()
        want = count if count is not None else self._targets[key][1]
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self._ready.get(key, ())) >= want)

    async def acquire(
        self, spec: SandboxSpec, *, labels: Mapping[str, str] | None = None
    ) -> Sandbox:
        """A ready sandbox for `spec` (from the pool when one matches, else a cold create)."""
        if self._closed:
            raise SandboxError("pool is closed", reason="closed")
        key = spec.pool_key()
        queue = self._ready.get(key)
        sb: Sandbox | None = None
        while queue:
            candidate = queue.popleft()
            if candidate.rpc.closed:  # died while waiting in the pool
                await _quietly_destroy(candidate)
                continue
            sb = candidate
            break
        if key in self._wake:
            self._wake[key].set()
        if sb is None:
            return await Sandbox.create(spec, backend=self.backend, labels=labels)
        (sb.handle.host_dir / CLAIMED).write_text(json.dumps(dict(labels or {})))
        sb.env = dict(spec.env)
        try:
            for mount in spec.data:
                await copy_in(sb, mount)
        except BaseException:
            await _quietly_destroy(sb)
            raise
        log.debug("pool.acquired", sandbox=sb.id)
        return sb

    async def _fill(self, key: str) -> None:
        wake = self._wake[key]
        while not self._closed:
            await wake.wait()
            wake.clear()
            spec, size = self._targets[key]
            queue = self._ready[key]
            missing = size - len(queue)
            if missing <= 0:
                continue
            results = await asyncio.gather(
                *(self._create_one(spec) for _ in range(missing)), return_exceptions=True
            )
            for r in results:
                if isinstance(r, Sandbox):
                    if self._closed:
                        await _quietly_destroy(r)
                    else:
                        queue.append(r)
                elif isinstance(r, BaseException):
                    self.failures += 1
                    log.warning("pool.refill_failed", error=str(r))
            async with self._changed:
                self._changed.notify_all()
            if any(isinstance(r, BaseException) for r in results):
                await asyncio.sleep(1.0)  # back off; do not spin on a broken image
                wake.set()

    async def _create_one(self, spec: SandboxSpec) -> Sandbox:
        async with self._create_slots:
            sb = await Sandbox.create(spec, backend=self.backend, labels={"corral.role": "pool"})
        try:
            # The guest serves a cold sandbox's first calls before it loads asyncio (docs/rpc.md).
            # `info` is not one of them: it returns once the full server runs, so an acquirer
            # meets a fully started guest instead of waiting for that import.
            await sb.rpc.info()
        except BaseException:
            await _quietly_destroy(sb)
            raise
        return sb

    async def aclose(self) -> None:
        """Stop refilling and destroy every sandbox still waiting in the pool."""
        self._closed = True
        for task in self._fillers.values():
            task.cancel()
        for task in self._fillers.values():
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        waiting = [sb for q in self._ready.values() for sb in q]
        self._ready.clear()
        await asyncio.gather(*(_quietly_destroy(sb) for sb in waiting))


async def copy_in(sb: Sandbox, mount: DataMount) -> None:
    """Copy a host file or folder into the sandbox at `mount.target` (pooled sandboxes)."""
    src = Path(mount.source)
    if src.is_file():
        await sb.files.upload(mount.target, _read_chunks(src))
        return
    if not src.is_dir():
        raise SandboxError(f"data source {src} does not exist", reason="invalid_spec")
    for path in sorted(src.rglob("*")):
        if path.is_symlink():
            continue  # never follow host symlinks out of the data folder
        rel = path.relative_to(src).as_posix()
        dest = f"{mount.target.rstrip('/')}/{rel}"
        if path.is_dir():
            await sb.files.mkdir(dest)
        elif path.is_file():
            await sb.files.upload(dest, _read_chunks(path))


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    import aiofiles

    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(CHUNK):
            yield chunk


async def _quietly_destroy(sb: Sandbox) -> None:
    with contextlib.suppress(Exception):
        await sb.destroy()
