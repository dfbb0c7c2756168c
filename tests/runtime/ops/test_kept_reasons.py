"""Why a sandbox is kept (runtime/kept.py), from a real engine: a warm-pool sandbox is `pool`
until a run claims it, then it is that run's (labels cannot change on a running container,
so the claim marker in the controller's own folder carries the run's id); one made on request
is `explicit`. `corral sandbox list` says the same."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.kept import why_kept
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.pool import WarmPool
from sandbox.spec import SandboxSpec
from tests.runtime.test_cli_frictions import corral

pytestmark = pytest.mark.docker
SMALL = SandboxSpec(memory="256m", pids=128, disk="256m", idle_ttl=600)


async def test_pool_then_claimed_then_explicit(corral_home: Path) -> None:
    backend = DockerBackend(corral_home)
    pool = WarmPool(backend)
    try:
        pool.add(SMALL, 1)
        await pool.wait_ready(SMALL, 1)
        (waiting,) = await backend.list()
        assert why_kept(backend, waiting).reason == "pool"
        assert (
            json.loads(corral(corral_home, "sandbox", "list", "--json").stdout)[0]["kept_for"]
            == "pool"
        )

        claimed = await pool.acquire(SMALL, labels={"corral.interaction": "int_claimer"})
        why = why_kept(backend, await backend.get(claimed.id))
        assert (why.reason, why.interaction) == ("interaction", "int_claimer")
        assert why.kept_for() == {"interaction": "int_claimer"}
        assert why.expires == pytest.approx(why.last_used + 600)
        # the guest cannot reach the marker: it is not under any folder mounted into it
        r = await claimed.exec("ls -a /run/corral; cat /run/corral/claimed", timeout=30)
        assert "claimed" not in r.stdout

        made = await Sandbox.create(SMALL, backend=backend)
        assert why_kept(backend, await backend.get(made.id)).kept_for() == "explicit"
        rows = {
            r["id"]: r for r in json.loads(corral(corral_home, "sandbox", "list", "--json").stdout)
        }
        assert rows[claimed.id]["kept"].startswith("kept for follow-ups of int_claimer, until ")
        assert rows[made.id]["kept_for"] == "explicit"
        await made.destroy()
        await claimed.destroy()
    finally:
        await pool.aclose()
        for h in await backend.list():
            await backend.destroy(h.id)
        await backend.aclose()
