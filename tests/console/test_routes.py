"""The console's server side without a browser: `GET /v1beta/runs` (tenancy, ETag, paging),
`POST /v1beta/agents:validate`, the pages' headers, the asset route, and `GET /sandboxes`
staying E2B's for JSON callers."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.console.conftest import chromium_or_skip
from tests.runtime.api.conftest import ServerThread

StartServer = Callable[..., ServerThread]
KEYS = {"key-a": "team-a", "key-b": "team-b"}


def _model_run(server: ServerThread, model: str, text: str, key: str) -> str:
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        json={"model": model, "input": text},
        headers={"x-goog-api-key": key},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def test_runs_list_is_tenant_scoped_with_etag_and_paging(
    start_server: StartServer, script: Callable[..., str]
) -> None:
    server = start_server(ApiConfig(keys=ApiKeys.from_mapping(KEYS), allow_scripted=True))
    model = script({"text": "one"}, {"text": "two"}, {"text": "three"})
    a = {"x-goog-api-key": "key-a"}
    first = _model_run(server, model, "first task", "key-a")
    second = _model_run(server, model, "second <i>task</i>", "key-a")
    url = f"{server.url}/v1beta/runs"

    r = httpx.get(url, headers=a)
    assert r.status_code == 200
    runs = r.json()["runs"]
    assert [x["id"] for x in runs] == [second, first]  # newest first
    row = runs[0]
    assert row["status"] == "completed" and row["finished"] is True
    assert row["model"] == model and row["agent"] is None
    assert row["input"] == "second <i>task</i>"
    assert isinstance(row["tokens"], int) and row["duration"] >= 0

    assert httpx.get(url, headers={"x-goog-api-key": "key-b"}).json() == {"runs": []}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"x-goog-api-key": "nope"}).status_code == 401

    tag = r.headers["etag"]
    same = httpx.get(url, headers={**a, "if-none-match": tag})
    assert same.status_code == 304 and same.content == b""
    third = _model_run(server, model, "third", "key-a")
    changed = httpx.get(url, headers={**a, "if-none-match": tag})
    assert changed.status_code == 200 and changed.json()["runs"][0]["id"] == third

    page = httpx.get(url, params={"limit": 2}, headers=a).json()
    assert [x["id"] for x in page["runs"]] == [third, second]
    rest = httpx.get(url, params={"limit": 2, "before": page["next_before"]}, headers=a).json()
    assert [x["id"] for x in rest["runs"]] == [first]

    for bad in ({"status": "sleeping"}, {"limit": 0}, {"limit": 1000}, {"before": "yesterday"}):
        r = httpx.get(url, params=bad, headers=a)
        assert r.status_code == 400, (bad, r.text)
        assert r.json()["error"]["status"] == "INVALID_ARGUMENT"
    done = httpx.get(url, params={"status": "completed"}, headers=a).json()["runs"]
    assert len(done) == 3


def test_pages_headers_assets_and_the_e2b_sandbox_list(server: ServerThread) -> None:
    for path in ("/", "/runs/int_anything", "/agents"):
        r = httpx.get(server.url + path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        assert "default-src 'none'" in r.headers["content-security-policy"]
        assert r.headers["x-frame-options"] == "DENY"
        assert '<script type="module" src="/console/app.js">' in r.text
    page = httpx.get(server.url + "/sandboxes", headers={"accept": "text/html,*/*"})
    assert page.status_code == 200 and "<title>Corral</title>" in page.text
    e2b = httpx.get(server.url + "/sandboxes", headers={"accept": "application/json"})
    assert e2b.status_code == 200 and e2b.json() == []  # the E2B door's list, untouched

    js = httpx.get(server.url + "/console/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert httpx.get(server.url + "/console/console.css").status_code == 200
    for bad in ("..%2Fapi%2Fapp.py", ".hidden.js", "index.html", "nope.js", "app.py"):
        r = httpx.get(f"{server.url}/console/{bad}")
        assert r.status_code == 404, bad
        assert r.headers["content-type"].startswith("application/json")


def test_validate_checks_like_create_without_storing(start_server: StartServer) -> None:
    server = start_server(
        ApiConfig(keys=ApiKeys.from_mapping({"key-a": "team-a"}), allow_scripted=True)
    )
    url = f"{server.url}/v1beta/agents:validate"
    a = {"x-goog-api-key": "key-a"}
    ok = httpx.post(url, json={"spec": "name: w\nmodel: scripted:demo\ntools: [exec]"}, headers=a)
    assert ok.status_code == 200 and ok.json()["valid"] is True
    assert ok.json()["agent"]["id"] == "w" and ok.json()["request"]["tools"] == ["exec"]
    assert httpx.get(f"{server.url}/v1beta/agents/w", headers=a).status_code == 404

    cases = {
        "name: w\nskills: [{path: /etc, name: x}]": "skills",  # host paths refused as on create
        "name: w\nmodel: teleport:x": "model",  # a provider Corral does not have
        "name: w\nnetwork: open": "open",  # over the default policy's ceiling
        "name: w\nwings: 2": "wings",
        "[1, 2]": "mapping",
        "name: [unclosed": "not YAML",
        # a "billion laughs" document: refused before anything walks it
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nname: w\ntools: [*c, *c, *c]": "aliases",
    }
    for text, needle in cases.items():
        r = httpx.post(url, json={"spec": text}, headers=a)
        assert r.status_code == 200, r.text
        assert r.json()["valid"] is False and needle in r.json()["error"], (text, r.json())
    assert httpx.post(url, json={"spec": "name: w"}).status_code == 401
    assert httpx.post(url, json={"yaml": "name: w"}, headers=a).status_code == 400
    assert httpx.post(url, json={}, headers=a).status_code == 400


def test_without_chromium_console_tests_fail_in_ci_and_skip_elsewhere(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="need Chromium"):
        chromium_or_skip("/nonexistent/chromium")
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="need Chromium"):
        chromium_or_skip("/nonexistent/chromium")
