"""`/v1beta/sandboxes` for gateways: create, exec (plain, SSE, NDJSON), files, tenancy, delete."""

from __future__ import annotations

import json
from collections.abc import Callable

import docker
import httpx
import pytest

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.runtime.api.conftest import ServerThread

pytestmark = pytest.mark.docker
A = {"x-goog-api-key": "key-a"}
B = {"x-goog-api-key": "key-b"}


def test_sandbox_lifecycle(start_server: Callable[..., ServerThread]) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a", "key-b": "b"})))
    base = f"{srv.url}/v1beta/sandboxes"
    with httpx.Client(timeout=60) as http:
        created = http.post(
            base, json={"image": "corral/base", "memory": "256m", "ttl": 600}, headers=A
        )
        assert created.status_code == 200, created.text
        sid = created.json()["id"]
        try:
            assert [s["id"] for s in http.get(base, headers=A).json()["sandboxes"]] == [sid]
            assert http.get(base, headers=B).json()["sandboxes"] == []
            assert http.get(f"{base}/{sid}", headers=B).status_code == 404
            assert (
                http.post(f"{base}/{sid}/exec", json={"command": "true"}, headers=B).status_code
                == 404
            )

            r = http.post(
                f"{base}/{sid}/exec", json={"command": "echo hi; exit 3"}, headers=A
            ).json()
            assert r["exit_code"] == 3 and r["stdout"] == "hi\n"

            with http.stream(
                "POST",
                f"{base}/{sid}/exec",
                json={"command": "echo one; echo two >&2", "stream": True},
                headers=A,
            ) as resp:
                assert resp.headers["content-type"].startswith("text/event-stream")
                body = resp.read().decode()
            assert "event: output" in body and "event: exit" in body and "one" in body

            with http.stream(
                "POST",
                f"{base}/{sid}/exec",
                json={"command": "echo nd", "stream": True, "format": "ndjson"},
                headers=A,
            ) as resp:
                lines = [json.loads(line) for line in resp.iter_lines() if line]
            assert lines[-1]["type"] == "exit" and lines[-1]["exit_code"] == 0
            assert any(x["type"] == "output" and "nd" in x["text"] for x in lines)

            payload = bytes(range(256)) * 4096  # 1 MiB, binary
            up = http.put(f"{base}/{sid}/files/data/blob.bin", content=payload, headers=A)
            assert up.status_code == 200 and up.json()["size"] == len(payload)
            down = http.get(f"{base}/{sid}/files/data/blob.bin", headers=A)
            assert down.status_code == 200 and down.content == payload
            assert down.headers["content-security-policy"] == "sandbox"  # agent-written bytes
            listing = http.get(f"{base}/{sid}/files", params={"path": "data"}, headers=A).json()
            assert [f["size"] for f in listing["files"] if f["path"].endswith("blob.bin")] == [
                len(payload)
            ]
            assert http.get(f"{base}/{sid}/files/missing.txt", headers=A).status_code == 404
            assert http.get(
                f"{base}/{sid}/files/..%2F..%2Fetc%2Fpasswd", headers=A
            ).status_code in (400, 404)
            bad = http.post(base, json={"image": "corral/base", "memory": "1k"}, headers=A)
            assert bad.status_code == 400
        finally:
            assert http.delete(f"{base}/{sid}", headers=A).status_code == 200
        assert http.get(f"{base}/{sid}", headers=A).status_code == 404
    dc = docker.from_env()
    assert dc.containers.list(all=True, filters={"label": f"corral.id={sid}"}) == [] or all(
        c.name != f"corral-{sid}" for c in dc.containers.list(all=True)
    )
    dc.close()


@pytest.mark.browser
def test_browser_actions_over_http(start_server: Callable[..., ServerThread]) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a", "key-b": "b"})))
    base = f"{srv.url}/v1beta/sandboxes"
    html = b"<title>Hi</title><button onclick=\"document.title='clicked'\">Go</button>"
    # The browser opens web pages only: the page is served from inside the sandbox.
    page = "http://127.0.0.1:8765/page.html"
    serve = (
        "(python3 -m http.server 8765 --bind 127.0.0.1 >/dev/null 2>&1 &); "
        "for i in $(seq 100); do python3 -c 'import urllib.request as u; "
        f'u.urlopen("{page}")\' 2>/dev/null && exit 0; sleep 0.1; done; exit 1'
    )
    with httpx.Client(timeout=120) as http:
        sid = http.post(base, json={"image": "corral/browser", "ttl": 600}, headers=A).json()["id"]
        try:
            assert http.put(f"{base}/{sid}/files/page.html", content=html, headers=A).is_success
            up = http.post(f"{base}/{sid}/exec", json={"command": serve}, headers=A)
            assert up.json()["exit_code"] == 0, up.text
            r = http.post(
                f"{base}/{sid}/browser", json={"action": "goto", "args": {"url": page}}, headers=A
            )
            assert r.status_code == 200, r.text
            assert r.json()["page"]["title"] == "Hi"
            snap = http.post(f"{base}/{sid}/browser", json={"action": "snapshot"}, headers=A).json()
            assert "Go" in json.dumps(snap["data"])
            r = http.post(
                f"{base}/{sid}/browser",
                json={"action": "click", "args": {"text": "Go"}},
                headers=A,
            )
            assert r.status_code == 200, r.text
            assert r.json()["page"]["title"] == "clicked"
            bad = http.post(f"{base}/{sid}/browser", json={"action": "launch_missiles"}, headers=A)
            assert bad.status_code == 400 and "error" in bad.json()
            other = http.post(f"{base}/{sid}/browser", json={"action": "snapshot"}, headers=B)
            assert other.status_code == 404
            refused = http.get(f"{base}/{sid}/network/refusals", headers=A).json()
            assert refused == {"refusals": [], "next_offset": 0}
        finally:
            assert http.delete(f"{base}/{sid}", headers=A).status_code == 200
