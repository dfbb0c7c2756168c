"""API keys, tenants, error shapes, body caps, idempotency, agents CRUD, health and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from google.genai._interactions.core.error import APIStatusError

from runtime.api.auth import ApiKeys, load_api_keys, parse_env_keys
from runtime.api.config import ApiConfig
from runtime.api.errors import error_reason
from runtime.errors import ConfigError
from tests.runtime.api.conftest import ServerThread, sdk

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}


@pytest.fixture
def multi(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(
        ApiConfig(keys=ApiKeys.from_mapping(KEYS), allow_scripted=True, json_limit=64 * 1024)
    )


def test_keys_from_env_and_file(tmp_path: Path) -> None:
    assert parse_env_keys("a:t1, b:t2") == {"a": "t1", "b": "t2"}
    with pytest.raises(ConfigError):
        parse_env_keys("no-tenant")
    (tmp_path / "api_keys.json").write_text(json.dumps({"filekey": "t3"}))
    keys = load_api_keys(tmp_path, {"CORRAL_API_KEYS": "a:t1"})
    assert keys.tenant_for("a") == "t1" and keys.tenant_for("filekey") == "t3"
    assert ApiKeys().tenant_for(None) == "local"  # single-user


def test_wrong_or_missing_key_is_401(multi: ServerThread, script: Callable[..., str]) -> None:
    body = {"model": script({"text": "x"}), "input": "x"}
    for headers in ({}, {"x-goog-api-key": "nope"}, {"Authorization": "Bearer nope"}):
        r = httpx.post(f"{multi.url}/v1beta/interactions", json=body, headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["status"] == "UNAUTHENTICATED"
    ok = httpx.post(
        f"{multi.url}/v1beta/interactions", json=body, headers={"Authorization": "Bearer key-a"}
    )
    assert ok.status_code == 200


def test_other_tenants_objects_are_404(multi: ServerThread, script: Callable[..., str]) -> None:
    a, b = sdk(multi.url, "key-a"), sdk(multi.url, "key-b")
    r = a.interactions.create(model=script({"text": "mine"}), input="x")
    for op in (
        lambda: b.interactions.get(r.id),
        lambda: b.interactions.cancel(r.id),
        lambda: b.interactions.delete(r.id),
    ):
        with pytest.raises(APIStatusError) as err:
            op()
        assert err.value.status_code == 404
    hb = {"x-goog-api-key": "key-b"}
    assert (
        httpx.get(f"{multi.url}/v1beta/interactions/{r.id}/artifacts", headers=hb).status_code
        == 404
    )
    assert a.interactions.get(r.id).status == "completed"
    # agents are per tenant too
    ha = {"x-goog-api-key": "key-a"}
    spec = {"name": "private", "model": script({"text": "x"})}
    assert httpx.post(f"{multi.url}/v1beta/agents", json=spec, headers=ha).status_code == 200
    assert httpx.get(f"{multi.url}/v1beta/agents/private", headers=hb).status_code == 404
    assert httpx.get(f"{multi.url}/v1beta/agents/private", headers=ha).status_code == 200


def test_body_cap_is_413(multi: ServerThread) -> None:
    big = {"model": "gpt-4o", "input": "x" * (100 * 1024)}
    r = httpx.post(
        f"{multi.url}/v1beta/interactions", json=big, headers={"x-goog-api-key": "key-a"}
    )
    assert r.status_code == 413 and error_reason(r.json()) == "payload_too_large"

    def chunks() -> Any:  # no Content-Length: counted as it streams
        for _ in range(100):
            yield b" " * 1024

    r = httpx.post(
        f"{multi.url}/v1beta/interactions",
        content=chunks(),
        headers={"x-goog-api-key": "key-a", "content-type": "application/json"},
    )
    assert r.status_code == 413


def test_multi_tenant_refuses_scripted_and_host_paths_by_default(
    start_server: Callable[..., ServerThread], script: Callable[..., str]
) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping(KEYS)))
    h = {"x-goog-api-key": "key-a"}
    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={"model": script({"text": "x"}), "input": "x"},
        headers=h,
    )
    assert r.status_code == 400 and "scripted" in r.json()["error"]["message"]
    for spec in (
        {
            "name": "a1",
            "model": "openai:gpt-4o",
            "data": [{"source": "/etc", "target": "/workspace/data"}],
        },
        {"name": "a2", "model": "openai:gpt-4o", "base_url": "http://attacker.example/v1"},
    ):
        r = httpx.post(f"{srv.url}/v1beta/agents", json=spec, headers=h)
        assert r.status_code == 400, r.text


def test_idempotency_key(server: ServerThread, script: Callable[..., str]) -> None:
    url = f"{server.url}/v1beta/interactions"
    body = {"model": script({"text": "once"}), "input": "x"}
    h = {"Idempotency-Key": "k-1"}
    first = httpx.post(url, json=body, headers=h).json()
    second = httpx.post(url, json=body, headers=h).json()
    assert first["id"] == second["id"] and second["status"] == "completed"
    clash = httpx.post(url, json={**body, "input": "other"}, headers=h)
    assert clash.status_code == 409 and error_reason(clash.json()) == "conflict"
    other = httpx.post(url, json=body, headers={"Idempotency-Key": "k-2"}).json()
    assert other["id"] != first["id"]


def test_idempotency_under_concurrency(server: ServerThread, script: Callable[..., str]) -> None:
    url = f"{server.url}/v1beta/interactions"
    body = {"model": script({"text": "once", "delay": 0.2}), "input": "x", "background": True}
    ids: list[str] = []

    def post() -> None:
        ids.append(httpx.post(url, json=body, headers={"Idempotency-Key": "same"}).json()["id"])

    threads = [threading.Thread(target=post) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1


def test_agents_crud(server: ServerThread, script: Callable[..., str]) -> None:
    base = f"{server.url}/v1beta/agents"
    spec = {"name": "writer", "description": "Writes", "model": script({"text": "x"})}
    created = httpx.post(base, json=spec)
    assert created.status_code == 200 and created.json()["name"] == "writer"
    assert httpx.post(base, json=spec).status_code == 409
    assert httpx.post(base, json={**spec, "name": "default"}).status_code == 409
    assert httpx.post(base, json={"name": "bad name!"}).status_code == 400
    listing = httpx.get(base).json()
    mine = [a["id"] for a in listing["agents"] if not a["builtin"]]
    assert mine == ["writer"] and "default" in [a["id"] for a in listing["agents"]]
    assert httpx.get(f"{base}/writer").json()["description"] == "Writes"
    assert httpx.delete(f"{base}/writer").status_code == 200
    assert httpx.get(f"{base}/writer").status_code == 404
    assert httpx.delete(f"{base}/writer").status_code == 404


def test_health_metrics_openapi(server: ServerThread, script: Callable[..., str]) -> None:
    assert httpx.get(f"{server.url}/healthz").json()["status"] == "ok"
    httpx.post(
        f"{server.url}/v1beta/interactions", json={"model": script({"text": "x"}), "input": "x"}
    )
    text = httpx.get(f"{server.url}/metrics").text
    assert 'corral_interactions_created_total{kind="model"} 1.0' in text
    assert 'corral_interactions_finished_total{kind="model",status="completed"} 1.0' in text
    assert 'route="/v1beta/interactions"' in text
    spec = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1beta/interactions" in spec["paths"] and "/v1/interactions" in spec["paths"]


def test_serve_refuses_public_host_without_keys(tmp_path: Path) -> None:
    code = "import typer; from runtime.cli.serve import serve; typer.run(serve)"
    env = {"CORRAL_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    argv = [sys.executable, "-c", code, "--host", "0.0.0.0", "--port", "1"]
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "refusing to listen on 0.0.0.0" in lines[0]
