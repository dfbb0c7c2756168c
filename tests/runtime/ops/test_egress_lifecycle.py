"""The egress proxy as a managed component (issue 14): visible in `corral sandbox list`,
`corral sandbox egress status|start|stop`, /healthz and /metrics; restarted when it dies while
sandboxes need it; removed once none does, including at the end of the `corral run` that
started it. Real Docker, real proxy container, the real `corral` command."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import httpx
import pytest

from runtime.api.config import ApiConfig
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.egress import EgressManager
from sandbox.spec import SandboxSpec
from tests.runtime.api.conftest import ServerThread
from tests.runtime.ops.support import poll
from tests.runtime.test_cli_frictions import allowlist_sandbox, corral, write_agent

pytestmark = pytest.mark.docker


def _proxy_name(home: Path) -> str:
    return EgressManager(home.resolve(), {}, _unused, _unused).proxy_name


async def _unused(*_: Any, **__: Any) -> Any:
    raise AssertionError("not called")


def _proxy(engine: docker.DockerClient, name: str) -> Any:
    try:
        return engine.containers.get(name)
    except docker.errors.NotFound:
        return None


def test_cli_shows_stops_and_restarts_the_proxy(corral_home: Path) -> None:
    engine = docker.from_env()
    name = _proxy_name(corral_home)
    off = corral(corral_home, "sandbox", "egress", "status", "--json")
    assert off.returncode == 0 and json.loads(off.stdout)["health"] == "off"

    sid = allowlist_sandbox(corral_home, "example.com")
    status = json.loads(corral(corral_home, "sandbox", "egress", "status", "--json").stdout)
    assert status["health"] == "ok" and status["needed_by"] == [sid] and status["name"] == name
    listing = corral(corral_home, "sandbox", "list")
    assert f"egress proxy {name}: ok (needed by {sid}" in listing.stdout

    refused = corral(corral_home, "sandbox", "egress", "stop")
    assert refused.returncode == 1 and sid in refused.stderr and "--force" in refused.stderr
    assert _proxy(engine, name).status == "running"

    _proxy(engine, name).kill()  # dies: the engine does not restart a killed container
    down = corral(corral_home, "sandbox", "egress", "status")
    assert down.returncode == 1 and f"egress proxy {name}: down (needed by {sid})" in down.stdout
    started = corral(corral_home, "sandbox", "egress", "start")
    assert started.returncode == 0 and "started egress proxy" in started.stdout
    assert _proxy(engine, name).status == "running"
    # re-wired: the sandbox reaches the proxy again (its 403 names the refusal, not a timeout)
    code = corral(
        corral_home, "sandbox", "exec", sid, "--",
        "curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://blocked.invalid/",
    )  # fmt: skip
    assert code.stdout == "403", (code.stdout, code.stderr)

    forced = corral(corral_home, "sandbox", "egress", "stop", "--force")
    assert forced.returncode == 0 and f"stopped egress proxy {name}" in forced.stdout
    assert _proxy(engine, name) is None
    assert corral(corral_home, "sandbox", "rm", sid).returncode == 0
    assert corral(corral_home, "sandbox", "gc").returncode == 0
    assert json.loads(corral(corral_home, "sandbox", "egress", "status", "--json").stdout) == {
        **json.loads(off.stdout)
    }
    engine.close()


def test_corral_run_leaves_no_proxy_behind(tmp_path: Path, corral_home: Path) -> None:
    network = {"mode": "allowlist", "allow": ["example.com"]}
    agent = write_agent(tmp_path, [{"text": "ok"}], name="net", tools=["exec"], network=network)
    res = corral(corral_home, "run", "--agent", str(agent), "-o", str(tmp_path / "o"), "x")
    assert res.returncode == 0, res.stderr
    engine = docker.from_env()
    assert _proxy(engine, _proxy_name(corral_home)) is None
    engine.close()


def test_server_reaper_restarts_and_removes_the_proxy(
    start_server: Callable[..., ServerThread], corral_home: Path
) -> None:
    srv = start_server(ApiConfig(reap_interval=0.2))
    engine = docker.from_env()
    name = _proxy_name(corral_home)
    with httpx.Client(timeout=120) as http:
        made = http.post(
            f"{srv.url}/v1beta/sandboxes",
            json={"memory": "256m", "network": "allowlist", "allowlist": ["example.com"]},
        )
        assert made.status_code == 200, made.text
        sid = made.json()["id"]
        poll(lambda: http.get(f"{srv.url}/healthz").json()["egress_proxy"] == "ok")
        metrics = http.get(f"{srv.url}/metrics").text
        assert 'corral_egress_proxy{health="ok"} 1.0' in metrics
        assert 'corral_egress_proxy{health="down"} 0.0' in metrics

        first = _proxy(engine, name).id
        _proxy(engine, name).kill()
        poll(lambda: (p := _proxy(engine, name)) is not None and p.id != first)
        poll(lambda: _proxy(engine, name).status == "running")
        poll(lambda: http.get(f"{srv.url}/healthz").json()["egress_proxy"] == "ok")

        assert http.delete(f"{srv.url}/v1beta/sandboxes/{sid}").status_code == 200
        poll(lambda: _proxy(engine, name) is None)
        poll(lambda: http.get(f"{srv.url}/healthz").json()["egress_proxy"] == "off")
    engine.close()


async def test_a_proxy_removed_mid_create_is_started_again(
    corral_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process removes the proxy as unused (it saw no sandbox network yet) between
    this create's proxy start and its network: the create starts it again and succeeds."""
    backend = DockerBackend(corral_home)
    engine = docker.from_env()
    egress = backend.egress
    real = egress._create_network

    async def racing(name: str, sandbox_id: str) -> Any:
        engine.containers.get(egress.proxy_name).remove(force=True)  # the other process
        return await real(name, sandbox_id)

    monkeypatch.setattr(egress, "_create_network", racing)
    spec = SandboxSpec(memory="256m", network="allowlist", allowlist=("example.com",))
    try:
        async with await Sandbox.create(spec, backend=backend) as sb:
            r = await sb.exec(
                "curl -s -o /dev/null -w '%{http_code}' --max-time 20 http://blocked.invalid/",
                timeout=60,
            )
            assert r.stdout == "403", (r.stdout, r.stderr)  # the proxy answers: wired again
    finally:
        await backend.aclose()
        engine.close()
