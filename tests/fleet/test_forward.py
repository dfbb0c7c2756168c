"""Sandbox calls forwarded to the node that owns the sandbox: exec (plain and streamed), files
both ways (streamed, checked byte for byte), get, delete; and the hostile side: the internal
header skips neither auth nor tenancy and cannot make a node forget another node's sandbox, a
client's Host header cannot choose where a call goes, and a dead owner is a 503 naming it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
import yaml

from runtime.fleet.forward import FORWARDED_BY
from tests.fleet.nodes import HEADERS, OTHER_HEADERS, ServeNode, fleet_metrics

pytestmark = pytest.mark.docker


def _upload() -> Iterator[bytes]:
    rng = hashlib.sha256(b"seed")
    for i in range(128):  # 4 MiB in 32 KiB chunks, streamed from the client
        rng.update(i.to_bytes(4, "big"))
        yield rng.digest() * 1024


def test_sandbox_calls_reach_the_owner_from_any_node(
    start_node: Callable[..., ServeNode],
) -> None:
    a, b = start_node("a"), start_node("b")
    with a.client() as ca, b.client() as cb:
        created = ca.post("/v1beta/sandboxes", json={"network": "none"})
        assert created.status_code == 200, created.text
        sid = created.json()["id"]
        base = f"/v1beta/sandboxes/{sid}"

        # exec through b, answered by a's engine (b's engine has no such container)
        r = cb.post(f"{base}/exec", json={"command": "echo hi-from-$(hostname)"})
        assert r.status_code == 200, r.text
        assert r.json()["stdout"].startswith("hi-from-")
        assert r.json()["exit_code"] == 0

        # streamed exec: the frames come through as NDJSON lines, the exit last
        with cb.stream(
            "POST",
            f"{base}/exec",
            json={"command": "echo one; sleep 0.5; echo two", "stream": True, "format": "ndjson"},
        ) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("application/x-ndjson")
            lines = [httpx.Response(200, content=line).json() for line in s.iter_lines() if line]
        assert [x["type"] for x in lines][-1] == "exit"
        assert "one" in "".join(x.get("text", "") for x in lines if x["type"] == "output")

        # files both ways through b, streamed
        want = hashlib.sha256(b"".join(_upload())).hexdigest()
        up = cb.put(f"{base}/files/big.bin", content=_upload())
        assert up.status_code == 200, up.text
        got = hashlib.sha256()
        with cb.stream("GET", f"{base}/files/big.bin") as down:
            assert down.status_code == 200
            for chunk in down.iter_bytes():
                got.update(chunk)
        assert got.hexdigest() == want
        check = ca.post(f"{base}/exec", json={"command": "sha256sum /workspace/big.bin"}).json()
        assert check["stdout"].split()[:1] == [want], check  # stored on a's sandbox

        assert cb.get(base).json()["id"] == sid

        # delete through b removes a's container
        assert cb.delete(base).status_code == 200
        assert ca.get(base).status_code == 404
        assert _containers(sid) == []


def test_forwarding_is_not_a_way_around_auth_or_tenancy(
    start_node: Callable[..., ServeNode],
) -> None:
    a, b = start_node("a"), start_node("b")
    with a.client() as ca:
        sid = ca.post("/v1beta/sandboxes", json={"network": "none"}).json()["id"]
    base = f"{b.url}/v1beta/sandboxes/{sid}"
    exec_body = {"command": "echo ok"}

    # the internal header grants nothing: no key is still 401, another tenant still 404
    forged = {FORWARDED_BY: "node_anything"}
    assert httpx.post(f"{base}/exec", json=exec_body, headers=forged).status_code == 401
    assert (
        httpx.post(f"{base}/exec", json=exec_body, headers={**OTHER_HEADERS, **forged}).status_code
        == 404
    )
    assert httpx.post(f"{base}/exec", json=exec_body, headers=OTHER_HEADERS).status_code == 404

    # with a valid key it only stops forwarding: refused (421), the sandbox not forgotten
    r = httpx.post(f"{base}/exec", json=exec_body, headers={**HEADERS, **forged})
    assert r.status_code == 421, r.text
    assert httpx.post(f"{base}/exec", json=exec_body, headers=HEADERS).json()["stdout"] == "ok\n"

    # where a call goes is the owner's registered URL, whatever Host the client names
    evil = {**HEADERS, "Host": "127.0.0.1:9", "X-Forwarded-Host": "evil.example"}
    assert httpx.post(f"{base}/exec", json=exec_body, headers=evil).json()["stdout"] == "ok\n"

    # the owner dies: a 503 naming it, at once, nothing served locally
    a.kill()
    dead = httpx.post(f"{base}/exec", json=exec_body, headers=HEADERS, timeout=30)
    assert dead.status_code == 503, dead.text
    assert "sandbox is on node node_" in dead.json()["error"]["message"]
    assert dead.headers["retry-after"] == "5"

    # the owner comes back on its home (same node id): its sandbox is served again, via b too
    a.start()
    again = httpx.post(f"{base}/exec", json=exec_body, headers=HEADERS, timeout=60)
    assert again.status_code == 200 and again.json()["stdout"] == "ok\n"

    # b's /metrics counts what it forwarded by outcome; refusals (401, 404, 421) are not
    # forwarded calls. Answered: the exec after the 421, the Host-steering one, the last one.
    metrics = fleet_metrics(b)
    assert metrics['corral_fleet_forwarded_total{outcome="answered"}'] == 3
    assert metrics['corral_fleet_forwarded_total{outcome="unavailable"}'] == 1
    assert metrics['corral_fleet_forwarded_total{outcome="cut"}'] == 0


def _containers(sandbox_id: str) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"corral.sandbox={sandbox_id}"})
        return [c.id for c in found]
    finally:
        client.close()


def test_artifacts_download_from_any_node(
    start_node: Callable[..., ServeNode], scripted_agent: Callable[..., dict[str, Any]]
) -> None:
    a, b = start_node("a"), start_node("b")
    write = "mkdir -p /workspace/out && head -c 300000 /dev/urandom > /workspace/out/blob.bin"
    with a.client() as ca, b.client() as cb:
        assert ca.post("/v1beta/agents", json=scripted_agent("writer", write)).status_code == 200
        run = ca.post("/v1beta/interactions", json={"agent": "writer", "input": "write"}).json()
        assert run["status"] == "completed", run
        base = f"/v1beta/interactions/{run['id']}/artifacts"
        listing = cb.get(base).json()["artifacts"]
        assert [x["path"] for x in listing] == ["blob.bin"]
        on_a = ca.get(f"{base}/blob.bin")
        on_b = cb.get(f"{base}/blob.bin")  # b has no copy: its owner serves it
        assert on_a.status_code == on_b.status_code == 200
        assert len(on_b.content) == 300000 and on_b.content == on_a.content
        part = cb.get(f"{base}/blob.bin", headers={"Range": "bytes=10-19"})
        assert part.status_code == 206 and part.content == on_a.content[10:20]
        assert cb.get(f"{base}/blob.bin", headers=OTHER_HEADERS).status_code == 404
        a.kill()
        gone = cb.get(f"{base}/blob.bin")
        assert (
            gone.status_code == 503
            and "artifact files of this interaction are on node" in gone.text
        )

        # a delete through b is done by a (back on its home): its files and kept sandbox go too
        a.start()
        assert (a.home / "artifacts" / run["id"]).is_dir()
        assert _containers_of(a.home) != []  # the run's sandbox, kept for follow-ups
        assert cb.delete(f"/v1beta/interactions/{run['id']}").status_code == 200
        assert not (a.home / "artifacts" / run["id"]).exists()
        assert _containers_of(a.home) == []
        assert ca.get(f"/v1beta/interactions/{run['id']}").status_code == 404


def test_a_follow_up_through_another_node_continues_in_the_same_sandbox(
    start_node: Callable[..., ServeNode], tmp_path: Path
) -> None:
    a, b = start_node("a"), start_node("b")

    def exec_turn(command: str) -> dict[str, Any]:
        return {"tool_calls": [{"name": "exec", "arguments": {"command": command}}]}

    # One script for the conversation: the follow-up's model sees the first run's turns.
    turns = [
        exec_turn("echo kept-across-nodes > /workspace/note.txt"),
        {"text": "written"},
        exec_turn("cat /workspace/note.txt"),
        {"text": "read"},
    ]
    script = tmp_path / "conversation.yaml"
    script.write_text(yaml.safe_dump({"turns": turns}))
    spec = {
        "name": "notes",
        "model": f"scripted:{script}",
        "instructions": "Fleet test agent.",
        "tools": ["exec"],
    }
    with a.client() as ca, b.client() as cb:
        assert ca.post("/v1beta/agents", json=spec).status_code == 200
        first = ca.post("/v1beta/interactions", json={"agent": "notes", "input": "w"}).json()
        assert first["status"] == "completed", first
        follow = {"agent": "notes", "input": "r", "previous_interaction_id": first["id"]}
        second = cb.post("/v1beta/interactions", json=follow)
        assert second.status_code == 200, second.text
        steps = second.json()["steps"]
        results = [s for s in steps if s["type"] == "code_execution_result"]
        assert "kept-across-nodes" in str(results), steps  # a's sandbox, not a new one on b
        assert _containers_of(b.home) == []  # b started nothing itself


def _containers_of(home: Path) -> list[str]:
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"corral.home={home}"})
        return [c.id for c in found]
    finally:
        client.close()
