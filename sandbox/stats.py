"""One sample of a sandbox's resource use, now (`sample`): CPU, memory, workspace disk.

- CPU: two one-shot `docker stats` reads `CPU_WINDOW` apart; the share of the sandbox's CPUs
  used in between (0-100).
- Memory: the container's cgroup (usage minus inactive page cache, the cache, the cgroup
  limit, which covers the tmpfs workspace and /tmp on top of the sandbox's memory).
- Disk: the workspace tmpfs as `statfs` sees it, read by `/usr/bin/stat -f` run in the sandbox
  as its user through the engine (not the RPC: sampling is not use of the sandbox, its idle
  clock is left alone). Its output is the sandbox's (hostile) text: only three bounded
  integers are taken from it, so a sandbox can at worst misreport its own disk.
Docker backend only.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from sandbox.backends.docker import DockerBackend, agent_user
from sandbox.backends.docker_errors import map_docker_error
from sandbox.spec import SandboxSpec


@dataclass(frozen=True)
class SandboxStats:
    at: float
    """Unix time of the sample."""
    cpu_count: int
    cpu_used_pct: float
    mem_used: int
    mem_total: int
    mem_cache: int
    disk_used: int
    disk_total: int


CPU_WINDOW = 0.25
"""Seconds between the two CPU reads (a one-shot read has no previous sample to diff)."""
DISK_TIMEOUT = 5.0
_STATFS = re.compile(rb"\A(\d{1,20}) (\d{1,20}) (\d{1,12})\n?\Z")


async def sample(
    backend: DockerBackend, sandbox_id: str, container_id: str, spec: SandboxSpec
) -> SandboxStats:
    first = await _stats(backend, sandbox_id, container_id)
    await asyncio.sleep(CPU_WINDOW)
    second = await _stats(backend, sandbox_id, container_id)
    mem = second.get("memory_stats") or {}
    usage = _int(mem.get("usage"))
    cache = _int((mem.get("stats") or {}).get("total_inactive_file"))
    disk_used, disk_total = await _disk(backend, container_id, spec)
    return SandboxStats(
        at=time.time(),
        cpu_count=max(1, math.ceil(spec.cpus)),
        cpu_used_pct=round(_cpu_pct(first, second, spec.cpus), 2),
        mem_used=max(0, usage - cache),
        mem_total=_int(mem.get("limit")),
        mem_cache=_int((mem.get("stats") or {}).get("total_cache")),
        disk_used=disk_used,
        disk_total=disk_total,
    )


async def _stats(backend: DockerBackend, sandbox_id: str, container_id: str) -> dict[str, Any]:
    try:
        out: dict[str, Any] = await asyncio.to_thread(
            backend.client.api.stats, container_id, stream=False, one_shot=True
        )
    except Exception as exc:
        raise map_docker_error(exc, sandbox_id=sandbox_id) from exc
    return out


def _cpu_pct(first: dict[str, Any], second: dict[str, Any], cpus: float) -> float:
    """Share of the sandbox's CPUs used between two reads. The engine's `system_cpu_usage`
    is host time summed over its online CPUs, so dividing by them gives wall time."""

    def used(s: dict[str, Any]) -> int:
        return _int(((s.get("cpu_stats") or {}).get("cpu_usage") or {}).get("total_usage"))

    def system(s: dict[str, Any]) -> int:
        return _int((s.get("cpu_stats") or {}).get("system_cpu_usage"))

    online = max(1, _int((second.get("cpu_stats") or {}).get("online_cpus")) or 1)
    wall = (system(second) - system(first)) / online
    if wall <= 0:
        return 0.0
    return min(100.0, max(0.0, (used(second) - used(first)) / (wall * cpus) * 100))


async def _disk(backend: DockerBackend, container_id: str, spec: SandboxSpec) -> tuple[int, int]:
    """(used, total) bytes of the workspace; the spec's size and 0 used if unreadable.
    An engine exec, not the RPC: asking for metrics must not count as using the sandbox
    (the RPC would restart its idle clock)."""
    total, workdir = spec.disk, spec.workdir
    api = backend.client.api

    def run() -> bytes:
        exec_id = api.exec_create(
            container_id,
            ["/usr/bin/stat", "-f", "-c", "%b %f %S", workdir],
            user=agent_user(),
            stdout=True,
            stderr=False,
        )["Id"]
        out: bytes = api.exec_start(exec_id)
        return out[:256]

    try:
        out = await asyncio.wait_for(asyncio.to_thread(run), DISK_TIMEOUT)
    except Exception:  # no figure is better than a failed call: the rest still holds
        return 0, total
    found = _STATFS.match(out)
    if found is None:
        return 0, total
    blocks, free, size = (int(g) for g in found.groups())
    return max(0, (blocks - free) * size), blocks * size or total


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
