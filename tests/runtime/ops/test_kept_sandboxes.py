"""The sandboxes API and /metrics show every sandbox Corral keeps, with why and until when:
a tenant's gateway sandboxes and the sandboxes kept for its agent runs (issue 14)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import docker
import httpx
import pytest
import yaml

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.runtime.api.conftest import ServerThread
from tests.runtime.ops.support import poll

pytestmark = pytest.mark.docker
A = {"x-goog-api-key": "key-a"}
B = {"x-goog-api-key": "key-b"}


def _agent(tmp_path: Path, name: str, turns: list[dict[str, Any]]) -> dict[str, Any]:
    script = tmp_path / f"{name}.yaml"
    script.write_text(yaml.safe_dump({"turns": turns}))
    return {
        "name": name,
        "model": f"scripted:{script}",
        "tools": ["exec"],
        "resources": {"memory": "256m"},
        "limits": {"max_steps": 5, "timeout": 120},
    }


def _metric(http: httpx.Client, url: str, name: str) -> float:
    for line in http.get(f"{url}/metrics").text.splitlines():
        key, _, value = line.rpartition(" ")
        if key == name:
            return float(value)
    raise AssertionError(f"{name} not in /metrics")


def test_run_sandboxes_are_listed_counted_and_deletable(
    start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    srv = start_server(
        ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a", "key-b": "b"}), allow_scripted=True)
    )
    base = f"{srv.url}/v1beta/sandboxes"
    engine = docker.from_env()
    with httpx.Client(timeout=120) as http:
        spec = _agent(tmp_path, "quick", [{"text": "ok"}])
        made = http.post(f"{srv.url}/v1beta/agents", json=spec, headers=A)
        assert made.status_code == 200, made.text
        run = http.post(
            f"{srv.url}/v1beta/interactions", json={"agent": "quick", "input": "x"}, headers=A
        ).json()
        assert run["status"] == "completed", run
        gateway = http.post(base, json={"memory": "256m", "ttl": 600}, headers=A).json()["id"]

        listed = {s["id"]: s for s in http.get(base, headers=A).json()["sandboxes"]}
        assert len(listed) == 2 and gateway in listed
        assert listed[gateway]["kept_for"] == "explicit"
        (kept_id,) = [i for i in listed if i != gateway]
        kept = listed[kept_id]
        assert kept["kept_for"] == {"interaction": run["id"]}
        assert kept["ttl"] == 900 and kept["state"] == "running"
        assert kept["expires"] is not None and kept["expires"] > kept["last_used"]
        assert http.get(f"{base}/{kept_id}", headers=A).json()["kept_for"] == {
            "interaction": run["id"]
        }

        # another tenant sees none of it, and cannot remove it
        assert http.get(base, headers=B).json()["sandboxes"] == []
        assert http.get(f"{base}/{kept_id}", headers=B).status_code == 404
        assert http.delete(f"{base}/{kept_id}", headers=B).status_code == 404
        assert engine.containers.get(f"corral-{kept_id}").status == "running"
        # exec and files are for gateway sandboxes: a run's is refused naming the run
        for headers, status in ((A, 409), (B, 404)):
            denied = http.post(f"{base}/{kept_id}/exec", json={"command": "id"}, headers=headers)
            assert denied.status_code == status, denied.text
        denied = http.post(f"{base}/{kept_id}/exec", json={"command": "id"}, headers=A)
        assert run["id"] in denied.json()["error"]["message"]
        assert http.get(f"{base}/{kept_id}/files", headers=A).status_code == 409

        assert _metric(http, srv.url, 'corral_sandboxes{kept_for="interaction"}') == 1
        assert _metric(http, srv.url, 'corral_sandboxes{kept_for="explicit"}') == 1
        assert _metric(http, srv.url, 'corral_sandboxes{kept_for="pool"}') == 0

        assert http.delete(f"{base}/{kept_id}", headers=A).status_code == 200
        with pytest.raises(docker.errors.NotFound):
            engine.containers.get(f"corral-{kept_id}")
        assert [s["id"] for s in http.get(base, headers=A).json()["sandboxes"]] == [gateway]
        assert http.get(f"{base}/{kept_id}", headers=A).status_code == 404
        after = http.get(f"{srv.url}/v1beta/interactions/{run['id']}", headers=A)
        assert after.status_code == 200 and after.json()["status"] == "completed"
        assert _metric(http, srv.url, 'corral_sandboxes{kept_for="interaction"}') == 0

        # a follow-up of the run whose sandbox was removed starts in a fresh one
        again = http.post(
            f"{srv.url}/v1beta/interactions",
            json={"agent": "quick", "input": "y", "previous_interaction_id": run["id"]},
            headers=A,
        ).json()
        assert again["status"] == "completed", again
        assert http.delete(f"{base}/{gateway}", headers=A).status_code == 200
    engine.close()


def test_a_running_runs_sandbox_is_not_deleted_under_it(
    start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a"}), allow_scripted=True))
    base = f"{srv.url}/v1beta/sandboxes"
    turns = [{"tool_calls": [{"name": "exec", "arguments": {"command": "sleep 60"}}]}]
    with httpx.Client(timeout=120) as http:
        spec = _agent(tmp_path, "sleeper", [*turns, {"text": "done"}])
        made = http.post(f"{srv.url}/v1beta/agents", json=spec, headers=A)
        assert made.status_code == 200, made.text
        run = http.post(
            f"{srv.url}/v1beta/interactions",
            json={"agent": "sleeper", "input": "x", "background": True},
            headers=A,
        ).json()
        listed = poll(lambda: http.get(base, headers=A).json()["sandboxes"])
        assert listed[0]["kept_for"] == {"interaction": run["id"]}
        refused = http.delete(f"{base}/{listed[0]['id']}", headers=A)
        assert refused.status_code == 409, refused.text
        assert run["id"] in refused.json()["error"]["message"]
        assert (
            http.post(f"{srv.url}/v1beta/interactions/{run['id']}/cancel", headers=A).status_code
            == 200
        )


def test_a_follow_up_running_in_a_kept_sandbox_keeps_it(
    start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a"}), allow_scripted=True))
    base = f"{srv.url}/v1beta/sandboxes"
    sleep = [{"tool_calls": [{"name": "exec", "arguments": {"command": "sleep 60"}}]}]
    with httpx.Client(timeout=120) as http:
        for spec in (
            _agent(tmp_path, "quick", [{"text": "ok"}]),
            # a scripted model replays by position: the first run's reply is turn 0
            _agent(tmp_path, "sleeper", [{"text": "(first run)"}, *sleep, {"text": "done"}]),
        ):
            assert http.post(f"{srv.url}/v1beta/agents", json=spec, headers=A).status_code == 200
        first = http.post(
            f"{srv.url}/v1beta/interactions", json={"agent": "quick", "input": "x"}, headers=A
        ).json()
        assert first["status"] == "completed", first
        (kept,) = http.get(base, headers=A).json()["sandboxes"]
        follow = http.post(
            f"{srv.url}/v1beta/interactions",
            json={
                "agent": "sleeper",
                "input": "y",
                "background": True,
                "previous_interaction_id": first["id"],
            },
            headers=A,
        ).json()
        url = f"{srv.url}/v1beta/interactions/{follow['id']}"

        def sleeping() -> bool:
            now = http.get(url, headers=A).json()
            assert now["status"] == "in_progress", now
            return "code_execution_call" in json.dumps(now["steps"])

        poll(sleeping)
        # the sandbox was made for the first run, but the follow-up is using it now
        assert http.get(base, headers=A).json()["sandboxes"] == [
            {**kept, "last_used": ANY, "expires": ANY}
        ]
        refused = http.delete(f"{base}/{kept['id']}", headers=A)
        assert refused.status_code == 409, refused.text
        assert follow["id"] in refused.json()["error"]["message"]
        assert http.post(f"{url}/cancel", headers=A).status_code == 200
