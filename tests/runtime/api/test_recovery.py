"""Restart durability: SIGKILL the server mid-run, start another on the same CORRAL_HOME."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import docker
import httpx
import pytest
import yaml

from tests.runtime.api.conftest import free_port, sdk

pytestmark = pytest.mark.docker
SERVER = (
    "import sys, uvicorn; from runtime.api.app import create_app; "
    "from runtime.logs import configure_logging; configure_logging('auto', 'warning'); "
    "from runtime.settings import Settings; "
    "uvicorn.run(create_app(Settings.from_env()), host='127.0.0.1', port=int(sys.argv[1]), "
    "log_level='warning')"
)


def start(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    env = {**os.environ, "CORRAL_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)


def test_sigkill_mid_run_then_restart(corral_home: Path, tmp_path: Path) -> None:
    script = tmp_path / "turns.yaml"
    script.write_text(
        yaml.safe_dump(
            {"turns": [{"tool_calls": [{"name": "exec", "arguments": {"command": "sleep 300"}}]}]}
        )
    )
    spec = {"name": "long", "model": f"scripted:{script}", "tools": ["exec"]}
    proc, url = start(corral_home)
    try:
        httpx.post(f"{url}/v1beta/agents", json=spec).raise_for_status()
        client = sdk(url)
        run = client.interactions.create(agent="long", input="wait", background=True)
        deadline = time.monotonic() + 60
        while not any(
            s.type == "code_execution_call" for s in client.interactions.get(run.id).steps or []
        ):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        stream = client.interactions.get(run.id, stream=True)
        last_seen = next(iter(stream)).event_id  # a client that read one event, then lost us
        stream.close()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    proc, url = start(corral_home)
    try:
        client = sdk(url)
        after = client.interactions.get(run.id)
        assert after.status == "failed"
        assert after.errors[0].code == "interrupted"
        resumed = list(client.interactions.get(run.id, stream=True, last_event_id=last_seen))
        assert int(resumed[0].event_id) == int(last_seen) + 1
        assert [e.event_type for e in resumed][-2:] == ["error", "interaction.completed"]
        assert resumed[-1].interaction.status == "failed"
        client.interactions.delete(run.id)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    dc = docker.from_env()
    assert dc.containers.list(all=True, filters={"label": f"corral.interaction={run.id}"}) == []
    dc.close()


def test_queued_run_starts_after_restart(corral_home: Path, tmp_path: Path) -> None:
    """A run recorded but never started (the controller died first) runs after a restart."""
    import asyncio

    from runtime.agents.spec import AgentSpec
    from runtime.controller import open_controller
    from runtime.settings import Settings

    script = tmp_path / "turns.yaml"
    script.write_text(
        yaml.safe_dump(
            {
                "turns": [
                    {"tool_calls": [{"name": "exec", "arguments": {"command": "echo queued"}}]},
                    {"text": "done"},
                ]
            }
        )
    )
    spec = AgentSpec.from_dict({"name": "q", "model": f"scripted:{script}", "tools": ["exec"]})

    async def queue() -> str:
        async with open_controller(Settings(home=corral_home)) as ctl:
            rec = await ctl.runner.create(spec, "go", tenant="local", background=True)
            return rec.id  # never started: the controller goes away here

    run_id = asyncio.run(queue())
    proc, url = start(corral_home)
    try:
        client = sdk(url)
        deadline = time.monotonic() + 90
        while (got := client.interactions.get(run_id)).status == "in_progress":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert got.status == "completed", got.errors
        results = [s for s in got.steps if s.type == "code_execution_result"]
        assert "queued" in str(results[0].result)
        client.interactions.delete(run_id)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
