"""The live-sandbox quota counts every sandbox Corral keeps for a tenant, including a run's
sandbox taken from the warm pool (its run is named in the pool's claim marker, not in a
label) and kept for follow-ups after the run: a tenant at its limit through kept run
sandboxes cannot create more through any door (/v1beta/sandboxes, E2B, MCP), and deleting a
kept one frees a slot."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import httpx
import pytest
import yaml
from e2b import RateLimitException, Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from tests.compat.e2b_support import serve_e2b, start_server
from tests.mcp.test_server_http import mcp_session, text
from tests.runtime.api.conftest import ServerThread
from tests.runtime.ops.support import poll
from tests.runtime.ops.test_kept_sandboxes import _metric

__all__ = ["start_server"]

pytestmark = pytest.mark.docker
A = {"x-goog-api-key": "key-a"}
B = {"x-goog-api-key": "key-b"}
POOLED = 'corral_sandboxes{kept_for="pool"}'


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    monkeypatch.setenv("CORRAL_WARM_POOL", "1")
    keys = ApiKeys.from_mapping(
        {"key-a": "tenant-a", "key-b": "tenant-b"},
        policies={"key-a": TenantPolicy(max_sandboxes=2)},
    )
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=keys, allow_scripted=True))


ATTEMPTS = 6
"""Runs tried until the tenant holds two kept sandboxes, one of them taken from the pool (a
run may find the pool still refilling and create its sandbox cold)."""


def run(http: httpx.Client, srv: ServerThread, model: str) -> str:
    """One completed run of the default agent (the pool's shape), once the pool has one."""
    poll(lambda: _metric(http, srv.url, POOLED) >= 1)
    body = {"agent": "default", "input": "x", "agent_config": {"model": model}}
    done = http.post(f"{srv.url}/v1beta/interactions", json=body, headers=A).json()
    assert done.get("status") == "completed", done
    return str(done["id"])


def pooled(engine: docker.DockerClient, sandbox_id: str) -> bool:
    """Taken from the pool: no label names its run (the gap this closes), only the claim."""
    (container,) = engine.containers.list(filters={"label": f"corral.sandbox={sandbox_id}"})
    return not {"corral.interaction", "corral.tenant"} & set(container.labels)


async def test_kept_run_sandboxes_from_the_pool_count_at_every_door(
    srv: ServerThread, tmp_path: Path
) -> None:
    script = tmp_path / "turns.yaml"
    script.write_text(yaml.safe_dump({"turns": [{"text": "ok"}]}))
    base = f"{srv.url}/v1beta/sandboxes"
    engine = docker.from_env()
    with httpx.Client(timeout=120) as http:
        for _ in range(ATTEMPTS):
            kept = http.get(base, headers=A).json()["sandboxes"]
            from_pool = [s["id"] for s in kept if pooled(engine, s["id"])]
            if len(kept) == 2 and from_pool:
                break
            if len(kept) == 2:  # two cold ones: make room for another try
                http.delete(f"{base}/{kept[0]['id']}", headers=A)
            run(http, srv, f"scripted:{script}")
        else:
            raise AssertionError("no run took its sandbox from the warm pool")
        assert all("interaction" in s["kept_for"] for s in kept)

        over = http.post(base, json={"memory": "128m", "ttl": 300}, headers=A)
        assert over.status_code == 429, over.text
        assert "live sandboxes: this tenant holds 2" in over.json()["error"]["message"]
        with pytest.raises(RateLimitException, match="live sandboxes"):
            Sandbox.create(api_key="key-a", timeout=60)
        async with mcp_session(srv.url, "key-a") as s:
            full = await s.call_tool("sandbox_create", {})
            assert full.is_error and text(full).startswith("resource_exhausted: live sandboxes")

        # Another tenant is unaffected.
        theirs = http.post(base, json={"memory": "128m", "ttl": 300}, headers=B)
        assert theirs.status_code == 200, theirs.text
        http.delete(f"{base}/{theirs.json()['id']}", headers=B)

        # Deleting the kept pooled run sandbox frees a slot (and only one).
        assert http.delete(f"{base}/{from_pool[0]}", headers=A).status_code == 200
        again = http.post(base, json={"memory": "128m", "ttl": 300}, headers=A)
        assert again.status_code == 200, again.text
        assert http.post(base, json={"memory": "128m", "ttl": 300}, headers=A).status_code == 429
        for sid in [again.json()["id"], *(s["id"] for s in kept if s["id"] != from_pool[0])]:
            http.delete(f"{base}/{sid}", headers=A)
    engine.close()
