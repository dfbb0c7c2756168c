"""A node's reaper forgets only its own vanished sandboxes: another node's sandboxes are never
in this node's engine listing, and forgetting them would cut them off from every node."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime.api.hub import SandboxHub
from runtime.errors import NotFound
from runtime.store.base import SandboxRecord
from runtime.store.sql import SqlStore
from sandbox.backends.docker import DockerBackend

pytestmark = pytest.mark.docker


async def test_reaper_keeps_other_nodes_sandboxes(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    async with await SqlStore.open(url) as store:
        store.set_node("node_b", 15)
        backend = DockerBackend(tmp_path / "home-b")  # lists no container: none run here
        hub = SandboxHub(store, backend)
        try:
            await store.record_sandbox(SandboxRecord("sb-theirs", "t", "c1", node="node_a"))
            await store.record_sandbox(SandboxRecord("sb-mine", "t", "c2", node="node_b"))
            assert await hub.forget_missing() == 1
            assert (await store.get_sandbox("sb-theirs")).node == "node_a"
            with pytest.raises(NotFound):
                await store.get_sandbox("sb-mine")  # ours and gone from our engine: forgotten
        finally:
            await hub.aclose()
            await backend.aclose()
