"""Hostile tenant vs the HTTP API: ceilings on resources, network, live sandboxes and streams.

Each ceiling is the operator's (per API key in the keys file, defaults from the environment);
a request over one is a 4xx in the API's error shape whose message names the limit.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.api.auth import ApiKeys, load_api_keys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from runtime.errors import ConfigError
from sandbox.spec import parse_size
from tests.runtime.api.conftest import ServerThread, script, start_server

__all__ = ["script", "start_server"]  # fixtures shared with tests/runtime/api

A = {"x-goog-api-key": "key-a"}
B = {"x-goog-api-key": "key-b"}
GiB = 1024**3


def keys(**policies: TenantPolicy) -> ApiKeys:
    return ApiKeys.from_mapping(
        {"key-a": "tenant-a", "key-b": "tenant-b"},
        policies={k.replace("_", "-"): p for k, p in policies.items()},
    )


@pytest.fixture
def strict(start_server: Callable[..., ServerThread]) -> ServerThread:
    """key-a has the defaults; key-b may ask for more, and for open networks."""
    return start_server(
        ApiConfig(
            keys=keys(
                key_b=TenantPolicy(
                    max_memory=8 * GiB, max_cpus=4, max_disk=20 * GiB, allow_open_network=True
                )
            ),
            allow_scripted=True,
        )
    )


def test_policy_from_keys_file_and_env(tmp_path: Path) -> None:
    (tmp_path / "keys.json").write_text(
        json.dumps(
            {
                "plain": "t1",
                "big": {
                    "tenant": "t2",
                    "max_memory": "16g",
                    "max_cpus": 8,
                    "max_sandboxes": 50,
                    "allow_open_network": True,
                },
            }
        )
    )
    env = {
        "CORRAL_API_KEYS_FILE": str(tmp_path / "keys.json"),
        "CORRAL_API_KEYS": "envkey:t3",
        "CORRAL_TENANT_MAX_MEMORY": "2g",
        "CORRAL_TENANT_MAX_STREAMS": "3",
    }
    loaded = load_api_keys(tmp_path, env)
    plain, big, from_env = (loaded.principal_for(k) for k in ("plain", "big", "envkey"))
    assert (plain.tenant, big.tenant, from_env.tenant) == ("t1", "t2", "t3")
    # keys that set nothing get the operator's defaults (from the environment)
    assert plain.policy.max_memory == 2 * GiB and plain.policy.max_streams == 3
    assert not plain.policy.allow_open_network and from_env.policy == plain.policy
    # a key's own settings win; the rest still come from the defaults
    assert big.policy.max_memory == 16 * GiB and big.policy.max_cpus == 8
    assert big.policy.max_sandboxes == 50 and big.policy.max_streams == 3
    assert big.policy.allow_open_network
    for bad in (
        {"k": {"tenant": "t", "max_memory": "lots"}},
        {"k": {"tenant": "t", "max_cpus": -1}},
        {"k": {"tenant": "t", "max_sandboxes": 0.5}},
        {"k": {"tenant": "t", "max_memroy": "1g"}},
        {"k": {"max_memory": "1g"}},
    ):
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(ConfigError):
            load_api_keys(tmp_path, {"CORRAL_API_KEYS_FILE": str(tmp_path / "bad.json")})
    with pytest.raises(ConfigError, match="CORRAL_TENANT_MAX_CPUS"):
        load_api_keys(tmp_path, {"CORRAL_API_KEYS": "a:b", "CORRAL_TENANT_MAX_CPUS": "nan"})


def test_single_user_may_open_the_network_multi_tenant_may_not() -> None:
    assert ApiKeys().principal_for(None).policy.allow_open_network
    assert not keys().principal_for("key-a").policy.allow_open_network


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"memory": "99999g"}, ["memory 99999g", "ceiling of 4g"]),
        ({"memory": "5g"}, ["memory 5g", "ceiling of 4g"]),
        ({"cpus": 8}, ["cpus 8", "ceiling of 2"]),
        ({"disk": "50g"}, ["disk 50g", "ceiling of 10g"]),
        ({"pids": 60000}, ["pids 60000", "ceiling of 1024"]),
        ({"network": "open"}, ["network open", "not allowed"]),
    ],
)
def test_sandbox_over_a_ceiling_is_refused(
    strict: ServerThread, body: dict[str, Any], words: list[str]
) -> None:
    r = httpx.post(f"{strict.url}/v1beta/sandboxes", json=body, headers=A, timeout=60)
    assert r.status_code == 403, r.text
    err = r.json()["error"]
    assert (err["code"], err["status"]) == (403, "PERMISSION_DENIED")
    for w in words:
        assert w in err["message"]


def test_agent_runs_obey_the_same_ceilings(strict: ServerThread, tmp_path: Path) -> None:
    turns = tmp_path / "t.yaml"
    turns.write_text("turns: [{text: done}]\n")
    url = f"{strict.url}/v1beta"
    greedy = {
        "name": "greedy",
        "model": f"scripted:{turns}",
        "resources": {"memory": "64g", "cpus": 8},
    }
    r = httpx.post(f"{url}/agents", json=greedy, headers=A)
    assert r.status_code == 403, r.text
    assert "memory 64g exceeds this key's ceiling of 4g" in r.json()["error"]["message"]
    wide = {"name": "wide", "model": f"scripted:{turns}", "network": "open"}
    r = httpx.post(f"{url}/agents", json=wide, headers=A)
    assert r.status_code == 403 and "network open" in r.json()["error"]["message"]
    # key-b may store it; key-a of another tenant never sees it, and a run of an agent stored
    # under a generous key is checked again against the key that starts it
    assert httpx.post(f"{url}/agents", json=wide, headers=B).status_code == 200
    run = {"agent": "wide", "input": "go", "background": True}
    r = httpx.post(f"{url}/interactions", json=run, headers=B)
    assert r.status_code == 200, r.text
    httpx.delete(f"{url}/interactions/{r.json()['id']}", headers=B)


def test_agent_run_checked_at_create_time(
    start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    """An agent stored while the ceiling was higher is refused when a run is created."""
    turns = tmp_path / "t.yaml"
    turns.write_text("turns: [{text: done}]\n")
    spec = {"name": "big", "model": f"scripted:{turns}", "resources": {"memory": "6g"}}
    generous = start_server(
        ApiConfig(keys=keys(key_a=TenantPolicy(max_memory=8 * GiB)), allow_scripted=True)
    )
    assert httpx.post(f"{generous.url}/v1beta/agents", json=spec, headers=A).status_code == 200
    generous.stop()
    tight = start_server(ApiConfig(keys=keys(), allow_scripted=True))
    r = httpx.post(
        f"{tight.url}/v1beta/interactions", json={"agent": "big", "input": "go"}, headers=A
    )
    assert r.status_code == 403, r.text
    assert "memory 6g exceeds this key's ceiling of 4g" in r.json()["error"]["message"]


@contextmanager
def open_stream(url: str, headers: dict[str, str]) -> Iterator[httpx.Response]:
    with httpx.Client(timeout=30) as http, http.stream("GET", url, headers=headers) as resp:
        yield resp


def test_concurrent_streams_are_capped_per_tenant(
    start_server: Callable[..., ServerThread], script: Callable[..., str]
) -> None:
    srv = start_server(ApiConfig(keys=keys(key_a=TenantPolicy(max_streams=2)), allow_scripted=True))
    body = {"model": script({"text": "slow", "delay": 60}), "input": "x", "background": True}
    iid = httpx.post(f"{srv.url}/v1beta/interactions", json=body, headers=A).json()["id"]
    url = f"{srv.url}/v1beta/interactions/{iid}?stream=true"
    try:
        with open_stream(url, A) as one, open_stream(url, A) as two:
            assert one.status_code == two.status_code == 200
            third = httpx.get(url, headers=A, timeout=30)
            assert third.status_code == 429, third.text
            err = third.json()["error"]
            assert (err["code"], err["status"]) == (429, "RESOURCE_EXHAUSTED")
            assert "streams" in err["message"] and "2" in err["message"]
            created = httpx.post(
                f"{srv.url}/v1beta/interactions", json={**body, "stream": True}, headers=A
            )
            assert created.status_code == 429
            # another tenant is not starved by tenant-a
            mine = httpx.post(f"{srv.url}/v1beta/interactions", json=body, headers=B).json()
            b_url = f"{srv.url}/v1beta/interactions/{mine['id']}?stream=true"
            with open_stream(b_url, B) as theirs:
                assert theirs.status_code == 200
            httpx.delete(f"{srv.url}/v1beta/interactions/{mine['id']}", headers=B)
        # closed streams give their slots back
        done = threading.Event()

        def follow() -> None:
            with open_stream(url, A) as again:
                assert again.status_code == 200
                done.set()

        t = threading.Thread(target=follow)
        t.start()
        assert done.wait(30)
        httpx.post(f"{srv.url}/v1beta/interactions/{iid}/cancel", headers=A)
        t.join(30)
    finally:
        httpx.delete(f"{srv.url}/v1beta/interactions/{iid}", headers=A)


@pytest.mark.docker
def test_live_sandboxes_are_capped_per_tenant(start_server: Callable[..., ServerThread]) -> None:
    srv = start_server(ApiConfig(keys=keys(key_a=TenantPolicy(max_sandboxes=2))))
    base = f"{srv.url}/v1beta/sandboxes"
    made: list[str] = []
    with httpx.Client(timeout=120) as http:
        try:
            for _ in range(2):
                r = http.post(base, json={"memory": "128m", "ttl": 300}, headers=A)
                assert r.status_code == 200, r.text
                made.append(r.json()["id"])
            r = http.post(base, json={"memory": "128m", "ttl": 300}, headers=A)
            assert r.status_code == 429, r.text
            assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
            assert "live sandboxes" in r.json()["error"]["message"]
            assert "2" in r.json()["error"]["message"]
            # tenant-b has its own count
            r = http.post(base, json={"memory": "128m", "ttl": 300}, headers=B)
            assert r.status_code == 200, r.text
            http.delete(f"{base}/{r.json()['id']}", headers=B)
            # deleting one frees a slot
            assert http.delete(f"{base}/{made.pop()}", headers=A).status_code == 200
            r = http.post(base, json={"memory": "128m", "ttl": 300}, headers=A)
            assert r.status_code == 200, r.text
            made.append(r.json()["id"])
        finally:
            for sid in made:
                http.delete(f"{base}/{sid}", headers=A)


@pytest.mark.docker
def test_open_network_when_the_operator_allows_it(strict: ServerThread) -> None:
    base = f"{strict.url}/v1beta/sandboxes"
    with httpx.Client(timeout=120) as http:
        r = http.post(base, json={"network": "open", "memory": "6g", "ttl": 300}, headers=B)
        assert r.status_code == 200, r.text
        sid = r.json()["id"]
        assert r.json()["network"] == "open" and r.json()["memory"] == parse_size("6g")
        assert http.delete(f"{base}/{sid}", headers=B).status_code == 200
