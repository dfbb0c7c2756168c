"""E2B's `get_metrics()`: one sample of a sandbox's CPU, memory and workspace disk, now.

E2B keeps a time series (one sample every few seconds); Corral keeps no history, so the
answer is the sample taken when asked, returned when `now` is inside the caller's
`[start, end]` window (an empty list otherwise, and for a paused sandbox, which runs nothing).

- CPU: two one-shot `docker stats` reads `CPU_WINDOW` apart; the share of the sandbox's CPUs
  used in between (0-100).
- Memory: the container's cgroup (usage minus page cache, the cache, the cgroup limit, which
  covers the tmpfs workspace and /tmp on top of the sandbox's memory).
- Disk: the workspace tmpfs as `statfs` sees it, read by `/usr/bin/stat -f` run in the
  sandbox as its user. Its output is the guest's (hostile) text: only three bounded integers are taken
  from it, so a guest can at worst misreport its own disk.
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from datetime import UTC, datetime
from typing import Any

from runtime.store.base import SandboxRecord
from sandbox.backends.docker import DockerBackend, agent_user
from sandbox.backends.docker_errors import map_docker_error

CPU_WINDOW = 0.25
"""Seconds between the two CPU reads (a one-shot read has no previous sample to diff)."""
DISK_TIMEOUT = 5.0
_STATFS = re.compile(rb"\A(\d{1,20}) (\d{1,20}) (\d{1,12})\n?\Z")


async def sample(backend: DockerBackend, rec: SandboxRecord) -> dict[str, Any]:
    """One E2B `SandboxMetric` of the sandbox, now."""
    first = await _stats(backend, rec)
    await asyncio.sleep(CPU_WINDOW)
    second = await _stats(backend, rec)
    cpus = float(rec.spec.get("cpus") or 1.0)
    mem = second.get("memory_stats") or {}
    usage = _int(mem.get("usage"))
    cache = _int((mem.get("stats") or {}).get("total_inactive_file"))
    disk_used, disk_total = await _disk(backend, rec)
    now = time.time()
    return {
        "timestamp": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "timestampUnix": int(now),
        "cpuCount": max(1, math.ceil(cpus)),
        "cpuUsedPct": round(_cpu_pct(first, second, cpus), 2),
        "memUsed": max(0, usage - cache),
        "memTotal": _int(mem.get("limit")),
        "memCache": _int((mem.get("stats") or {}).get("total_cache")),
        "diskUsed": disk_used,
        "diskTotal": disk_total,
    }


async def _stats(backend: DockerBackend, rec: SandboxRecord) -> dict[str, Any]:
    try:
        out: dict[str, Any] = await asyncio.to_thread(
            backend.client.api.stats, rec.container_id, stream=False, one_shot=True
        )
    except Exception as exc:
        raise map_docker_error(exc, sandbox_id=rec.id) from exc
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


async def _disk(backend: DockerBackend, rec: SandboxRecord) -> tuple[int, int]:
    """(used, total) bytes of the workspace; the spec's size and 0 used if unreadable.
    An engine exec, not the RPC: asking for metrics must not count as using the sandbox
    (the RPC would restart its idle clock)."""
    total = _int(rec.spec.get("disk"))
    workdir = str(rec.spec.get("workdir") or "/workspace")
    api = backend.client.api

    def run() -> bytes:
        exec_id = api.exec_create(
            rec.container_id,
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
