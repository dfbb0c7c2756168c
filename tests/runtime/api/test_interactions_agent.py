"""`agent=` runs over the API: a scripted agent with a real exec tool call in a real sandbox,
its artifacts downloaded with Range, and a follow-up in the same conversation."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from tests.runtime.api.conftest import ServerThread

pytestmark = pytest.mark.docker


def agent_spec(model: str, name: str = "tester") -> dict[str, Any]:
    return {
        "name": name,
        "model": model,
        "instructions": "Test agent.",
        "tools": ["exec", "files"],
        "limits": {"max_steps": 5, "max_tool_calls": 5, "timeout": 120},
    }


def write_script(tmp_path: Path, turns: list[dict[str, Any]], name: str = "agent.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump({"turns": turns}))
    return f"scripted:{path}"


def test_agent_run_with_exec_artifacts_and_delete(
    server: ServerThread, client: Any, tmp_path: Path
) -> None:
    model = write_script(
        tmp_path,
        [
            {
                "text": "Writing the report.",
                "tool_calls": [
                    {
                        "name": "exec",
                        "arguments": {
                            "command": "mkdir -p /workspace/out && "
                            "printf '0123456789' > /workspace/out/report.txt && echo wrote-it"
                        },
                    }
                ],
            },
            {"text": "Done: report.txt"},
        ],
    )
    r = httpx.post(f"{server.url}/v1beta/agents", json=agent_spec(model))
    assert r.status_code == 200, r.text

    run = client.interactions.create(agent="tester", input="Write a report")
    assert run.status == "completed", run
    assert run.output_text == "Done: report.txt"
    types = [s.type for s in run.steps]
    assert "code_execution_call" in types and "code_execution_result" in types
    result = next(s for s in run.steps if s.type == "code_execution_result")
    assert "wrote-it" in str(result.result)

    base = f"{server.url}/v1beta/interactions/{run.id}/artifacts"
    listing = httpx.get(base).json()["artifacts"]
    assert [a["path"] for a in listing] == ["report.txt"]
    full = httpx.get(f"{base}/report.txt")
    assert full.status_code == 200 and full.content == b"0123456789"
    assert full.headers["content-type"].startswith("text/plain")
    assert "filename*=UTF-8''report.txt" in full.headers["content-disposition"]
    # agent-written bytes opened directly run no script in the server's (the console's) origin
    assert full.headers["content-security-policy"] == "sandbox"
    assert full.headers["x-content-type-options"] == "nosniff"
    part = httpx.get(f"{base}/report.txt", headers={"Range": "bytes=2-5"})
    assert part.status_code == 206 and part.content == b"2345"
    assert part.headers["content-range"] == "bytes 2-5/10"
    tail = httpx.get(f"{base}/report.txt", headers={"Range": "bytes=-3"})
    assert tail.status_code == 206 and tail.content == b"789"
    beyond = httpx.get(f"{base}/report.txt", headers={"Range": "bytes=50-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == "bytes */10"
    assert httpx.get(f"{base}/..%2Fx").status_code in (400, 404)
    assert httpx.get(f"{base}/missing.txt").status_code == 404

    labelled = {"label": f"corral.interaction={run.id}"}
    dc = docker.from_env()
    assert len(dc.containers.list(all=True, filters=labelled)) == 1  # kept for follow-ups
    client.interactions.delete(run.id)
    assert httpx.get(base).status_code == 404
    assert dc.containers.list(all=True, filters=labelled) == []
    dc.close()


def test_agent_background_poll_and_cancel(
    server: ServerThread, client: Any, tmp_path: Path
) -> None:
    model = write_script(
        tmp_path,
        [{"tool_calls": [{"name": "exec", "arguments": {"command": "sleep 300"}}]}],
    )
    httpx.post(f"{server.url}/v1beta/agents", json=agent_spec(model, "sleeper")).raise_for_status()
    run = client.interactions.create(agent="sleeper", input="sleep", background=True)
    assert run.status == "in_progress"
    deadline = time.monotonic() + 60
    while not any(
        s.type == "code_execution_call" for s in client.interactions.get(run.id).steps or []
    ):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    cancelled = client.interactions.cancel(run.id)
    assert cancelled.status == "cancelled"
    events = list(client.interactions.get(run.id, stream=True))
    assert events[-1].event_type == "interaction.completed"
    assert events[-1].interaction.status == "cancelled"
    client.interactions.delete(run.id)
