"""The idle-TTL reaper and sandboxes still starting: a slow start (a loaded engine, a large
image) is not idleness, so the clock runs from the sandbox's first use."""

from __future__ import annotations

import time

import pytest

from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend

pytestmark = pytest.mark.docker

SHORT = SandboxSpec(memory="128m", disk="64m", idle_ttl=1)


async def test_a_sandbox_being_created_is_not_reaped(backend: DockerBackend) -> None:
    handle = await backend.create(SHORT)  # created, not connected yet: still starting
    try:
        assert await backend.reap_idle(now=time.time() + 60) == []
        backend.touch(handle)  # its first use: from now on the TTL applies
        assert await backend.reap_idle(now=time.time() + 60) == [handle.id]
    finally:
        await backend.destroy(handle.id)


async def test_the_clock_starts_when_create_returns(backend: DockerBackend) -> None:
    sb = await Sandbox.create(SHORT, backend=backend)
    try:
        assert backend.last_used(sb.handle) >= sb.handle.created
        assert await backend.reap_idle(now=time.time()) == []
        assert await backend.reap_idle(now=time.time() + 5) == [sb.id]
    finally:
        await sb.destroy()


async def test_reconcile_leaves_a_sandbox_being_created_here_alone(
    backend: DockerBackend,
) -> None:
    """A pool refill racing start-up recovery: the folder and container of a sandbox this
    process is still creating are not leftovers of an earlier controller."""
    handle = await backend.create(SHORT, labels={"corral.role": "pool"})
    try:
        report = await backend.reconcile()
        assert handle.id not in report.removed
        assert handle.host_dir.is_dir()
        assert (await backend.status(handle.id)).running
    finally:
        await backend.destroy(handle.id)
