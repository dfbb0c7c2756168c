"""Streams of an `agent=` run read by the official google-genai SDK (sync and async), a real
sandbox behind a scripted model: every event is one the SDK types (no unknown event, step or
delta) and carries a string `event_id`; exec/python calls are `code_execution_call` /
`code_execution_result` steps; resuming with `last_event_id` works; no `data: [DONE]`; Corral's
own events (artifacts) only with `corral_events=1`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.runtime.api.conftest import ServerThread, sdk


@pytest.fixture
def server() -> Iterator[ServerThread]:
    """A live `corral serve` (uvicorn in a thread) on a free loopback port."""
    srv = ServerThread().start()
    yield srv
    srv.stop()


pytestmark = pytest.mark.docker

SDK_EVENTS = {
    "interaction.created",
    "interaction.status_update",
    "step.start",
    "step.delta",
    "step.stop",
    "interaction.completed",
    "error",
}


def make_agent(server: ServerThread, tmp_path: Path, name: str = "streamer") -> None:
    script = tmp_path / f"{name}.yaml"
    turns = [
        {
            "text": "Working.",
            "tool_calls": [
                {"name": "exec", "arguments": {"command": "echo out-line; echo err-line >&2"}},
                {"name": "python", "arguments": {"code": "print(6 * 7)"}},
                {
                    "name": "exec",
                    "arguments": {
                        "command": "mkdir -p /workspace/out && echo r > /workspace/out/r.txt"
                    },
                },
            ],
        },
        {"text": "Done."},
    ]
    script.write_text(yaml.safe_dump({"turns": turns}))
    spec = {
        "id": name,
        "system_instruction": "Test agent.",
        "tools": [{"type": "code_execution"}],
        "agent_config": {"model": f"scripted:{script}", "limits": {"max_steps": 5}},
    }
    r = httpx.post(f"{server.url}/v1beta/agents", json=spec)
    assert r.status_code == 200, r.text


def assert_typed(events: list[Any]) -> None:
    assert events, "no events"
    for ev in events:
        assert not getattr(ev, "is_unknown", False), ev
        assert ev.event_type in SDK_EVENTS, ev
        assert isinstance(ev.event_id, str) and ev.event_id.isdigit(), ev
        step = getattr(ev, "step", None)
        assert not getattr(step, "is_unknown", False), ev
        delta = getattr(ev, "delta", None)
        assert not getattr(delta, "is_unknown", False), ev
    ids = [int(ev.event_id) for ev in events]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert events[-1].event_type == "interaction.completed"


def check_code_steps(events: list[Any]) -> None:
    calls = [
        ev.step
        for ev in events
        if ev.event_type == "step.start" and ev.step.type == "code_execution_call"
    ]
    assert [(c.arguments.language, c.arguments.code) for c in calls] == [
        ("bash", "echo out-line; echo err-line >&2"),
        ("python", "print(6 * 7)"),
        ("bash", "mkdir -p /workspace/out && echo r > /workspace/out/r.txt"),
    ]
    results = [
        ev.step
        for ev in events
        if ev.event_type == "step.start" and ev.step.type == "code_execution_result"
    ]
    assert [r.call_id for r in results] == [c.id for c in calls]
    assert "42" in str(results[1].result) and results[1].is_error is False
    output = [
        ev.delta.result
        for ev in events
        if ev.event_type == "step.delta" and ev.delta.type == "code_execution_result"
    ]
    assert any("out-line" in o for o in output) and any("err-line" in o for o in output)


def test_stream_sync_typed_resume_and_no_done(server: ServerThread, tmp_path: Path) -> None:
    make_agent(server, tmp_path)
    client: Any = sdk(server.url)
    events = list(client.interactions.create(agent="streamer", input="go", stream=True))
    assert_typed(events)
    check_code_steps(events)
    run_id = events[0].interaction.id
    final = client.interactions.get(run_id)
    assert final.status == "completed" and final.output_text == "Done."
    assert {s.type for s in final.steps or []} >= {"code_execution_call", "code_execution_result"}

    middle = events[len(events) // 2].event_id
    resumed = list(client.interactions.get(run_id, stream=True, last_event_id=middle))
    assert_typed(resumed)
    assert [e.event_id for e in resumed] == [
        e.event_id for e in events if int(e.event_id) > int(middle)
    ]

    url = f"{server.url}/v1beta/interactions/{run_id}"
    raw = httpx.get(url, params={"stream": "true"}).text
    assert "[DONE]" not in raw and "artifact.created" not in raw
    datas = [json.loads(line[5:]) for line in raw.splitlines() if line.startswith("data:")]
    assert {d["event_type"] for d in datas} <= SDK_EVENTS
    extras = httpx.get(url, params={"stream": "true", "corral_events": "1"}).text
    assert "artifact.created" in extras and "[DONE]" not in extras
    by_header = httpx.get(url, params={"stream": "true"}, headers={"X-Corral-Events": "1"}).text
    assert "artifact.created" in by_header
    client.interactions.delete(run_id)


def test_stream_async(server: ServerThread, tmp_path: Path) -> None:
    make_agent(server, tmp_path, "astreamer")

    async def main() -> None:
        client: Any = sdk(server.url)  # keep the client: collecting it closes the async transport
        run = await client.aio.interactions.create(agent="astreamer", input="go", background=True)
        events = [ev async for ev in await client.aio.interactions.get(run.id, stream=True)]
        assert_typed(events)
        check_code_steps(events)
        after = events[2].event_id
        resumed = [
            ev
            async for ev in await client.aio.interactions.get(
                run.id, stream=True, last_event_id=after
            )
        ]
        assert resumed[0].event_id == events[3].event_id
        await client.aio.interactions.delete(run.id)

    asyncio.run(main())
