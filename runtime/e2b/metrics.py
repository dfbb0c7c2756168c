"""E2B's `get_metrics()`: `sandbox.stats.sample` in E2B's `SandboxMetric` shape.

E2B keeps a time series (one sample every few seconds); Corral keeps no history, so the
answer is the sample taken when asked (how it is taken: sandbox/stats.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.store.base import SandboxRecord
from sandbox.backends.docker import DockerBackend
from sandbox.spec import SandboxSpec
from sandbox.stats import sample as sample_stats


async def sample(backend: DockerBackend, rec: SandboxRecord) -> dict[str, Any]:
    """One E2B `SandboxMetric` of the sandbox, now."""
    # The record's spec also carries the door's own notes (`e2b`): only the spec's fields.
    spec = SandboxSpec.model_validate(
        {k: v for k, v in rec.spec.items() if k in SandboxSpec.model_fields}
    )
    s = await sample_stats(backend, rec.id, rec.container_id, spec)
    return {
        "timestamp": datetime.fromtimestamp(s.at, UTC).isoformat().replace("+00:00", "Z"),
        "timestampUnix": int(s.at),
        "cpuCount": s.cpu_count,
        "cpuUsedPct": s.cpu_used_pct,
        "memUsed": s.mem_used,
        "memTotal": s.mem_total,
        "memCache": s.mem_cache,
        "diskUsed": s.disk_used,
        "diskTotal": s.disk_total,
    }
