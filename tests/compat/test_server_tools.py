"""Server-side tools with `model=` through the google-genai SDK (sync and async): the fake model
calls code_execution / url_context / google_search, Corral runs them, the SDK parses the steps
as its own types, and the result reaches the model (asserted on the recorded request)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import docker
import httpx
import pytest

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from runtime.providers.base import ModelProvider, Timeouts
from runtime.providers.registry import make_provider
from runtime.providers.retry import RetryPolicy
from tests.compat.recording import (
    calls,
    create,
    fake,
    last_body,
    mode,
    refused,
    says,
    srv,
    start_server,
)
from tests.runtime.api.conftest import ServerThread, sdk
from tests.runtime.providers.fakes import FakeServer

__all__ = ["fake", "mode", "srv", "start_server"]

MODEL = "openai:gpt-fake"
SECRET = "s3cr3t-page-content"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


# -- a local web server (pages, redirects, a SearXNG-like search endpoint) -----------------


@dataclass
class Site:
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def site_factory() -> Iterator[Callable[[], Site]]:
    servers: list[ThreadingHTTPServer] = []

    def start() -> Site:
        site = Site()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                site.hits.append(self.path)
                status, headers, body = site.routes.get(
                    urlsplit(self.path).path, (404, {}, b"not here")
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        site.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return site

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


def page(text: str) -> tuple[int, dict[str, str], bytes]:
    html = f"<html><head><title>T</title><script>var x=1</script></head><body><p>{text}</p>"
    return 200, {"Content-Type": "text/html; charset=utf-8"}, (html + "</body></html>").encode()


def tool_messages(fake: FakeServer) -> list[str]:
    """Every tool result the model was sent, over all recorded requests."""
    out = []
    for r in fake.requests:
        for m in r.body.get("messages", []):
            if m.get("role") == "tool":
                out.append(str(m.get("content")))
    return out


def everything_sent(fake: FakeServer) -> str:
    return json.dumps([r.body for r in fake.requests])


# -- code_execution -----------------------------------------------------------------------


def _containers(interaction_id: str) -> list[Any]:
    dc = docker.from_env()
    try:
        return list(
            dc.containers.list(all=True, filters={"label": f"corral.interaction={interaction_id}"})
        )
    finally:
        dc.close()


@pytest.mark.docker
def test_code_execution_runs_in_a_sandbox_kept_for_follow_ups(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    code = "v = 6 * 7\nopen('/workspace/v.txt', 'w').write(str(v))\nprint('computed', v)"
    fake.add(calls("python", json.dumps({"code": code})), says("openai", "It is 42."))

    first = create(
        srv.url, mode, model=MODEL, input="Compute 6*7", tools=[{"type": "code_execution"}]
    )

    assert first.status == "completed", first
    assert first.output_text == "It is 42."
    call = next(s for s in first.steps if s.type == "code_execution_call")
    result = next(s for s in first.steps if s.type == "code_execution_result")
    assert type(call).__name__ == "CodeExecutionCallStep"
    assert type(result).__name__ == "CodeExecutionResultStep"
    assert call.arguments.language == "python" and call.arguments.code == code
    assert result.call_id == call.id and not result.is_error
    assert "computed 42" in str(result.result)
    # the model was offered the sandbox tools as functions, and got the real output back
    first_req = fake.requests[0].body
    assert {t["function"]["name"] for t in first_req["tools"]} == {"exec", "python"}
    assert any("computed 42" in m for m in tool_messages(fake))
    held = _containers(first.id)
    assert len(held) == 1  # kept for follow-ups

    fake.add(
        calls("exec", json.dumps({"command": "cat /workspace/v.txt"}), "call_2"),
        says("openai", "Still 42."),
    )
    second = create(
        srv.url,
        mode,
        model=MODEL,
        input="Read it back",
        previous_interaction_id=first.id,
        tools=[{"type": "code_execution"}],
    )
    assert second.status == "completed", second
    again = next(s for s in second.steps if s.type == "code_execution_call")
    assert again.arguments.language == "bash" and again.arguments.code == "cat /workspace/v.txt"
    out = next(s for s in second.steps if s.type == "code_execution_result")
    assert "42" in str(out.result)  # the file the first interaction wrote: same sandbox
    assert _containers(second.id) == []  # no second sandbox was made
    assert last_body(fake)["messages"][-1]["content"].endswith("42")

    client = sdk(srv.url)
    client.interactions.delete(second.id)
    assert _containers(first.id) == []


@pytest.mark.docker
def test_code_execution_mixed_with_a_client_function_ends_requires_action(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    fake.add(
        calls("exec", json.dumps({"command": "echo hot"})),
        calls("get_weather", '{"city": "Paris"}', "call_2"),
    )

    run = create(
        srv.url,
        mode,
        model=MODEL,
        input="Weather?",
        tools=[{"type": "code_execution"}, WEATHER],
    )

    assert run.status == "requires_action", run
    assert [s.type for s in run.steps] == [
        "code_execution_call",
        "code_execution_result",
        "function_call",
    ]
    assert run.steps[-1].name == "get_weather"
    assert "hot" in str(run.steps[1].result)
    client = sdk(srv.url)
    client.interactions.delete(run.id)
    assert _containers(run.id) == []


@pytest.mark.docker
def test_a_client_function_may_not_shadow_the_code_tools(srv: ServerThread, mode: str) -> None:
    fn = {**WEATHER, "name": "python"}
    text = refused(srv.url, mode, model=MODEL, input="x", tools=[{"type": "code_execution"}, fn])
    assert "clashes" in text


@pytest.mark.docker
def test_code_execution_is_held_to_the_keys_policy(
    fake: FakeServer, srv_factory: Callable[..., ServerThread], mode: str
) -> None:
    keys = ApiKeys.from_mapping(
        {"key-a": "tenant-a", "key-b": "tenant-b"},
        policies={
            "key-a": TenantPolicy(max_sandboxes=0),
            "key-b": TenantPolicy(max_memory=256 * 1024**2),
        },
    )
    server = srv_factory(ApiConfig(keys=keys))
    body = {"model": MODEL, "input": "x", "tools": [{"type": "code_execution"}]}
    url = f"{server.url}/v1beta/interactions"

    full = httpx.post(url, json=body, headers={"x-goog-api-key": "key-a"}, timeout=30)
    small = httpx.post(url, json=body, headers={"x-goog-api-key": "key-b"}, timeout=30)
    plain = httpx.post(
        url, json={**body, "tools": []}, headers={"x-goog-api-key": "key-a"}, timeout=30
    )

    assert full.status_code == 429 and "live sandboxes" in full.text
    assert small.status_code == 403 and "memory" in small.text
    assert plain.status_code != 429  # no sandbox asked, no sandbox counted
    assert len(fake.requests) <= 1


# -- url_context --------------------------------------------------------------------------


def test_url_context_fetches_an_allowed_private_address(
    fake: FakeServer,
    site_factory: Callable[[], Site],
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    srv_factory: Callable[..., ServerThread],
) -> None:
    site = site_factory()
    site.routes["/doc"] = page(f"The answer is {SECRET}.")
    site.routes["/moved"] = (302, {"Location": "/doc"}, b"")
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW_PRIVATE", f"127.0.0.1:{site.port}")
    server = srv_factory()
    url = f"{site.url}/moved"
    fake.add(calls("url_context", json.dumps({"urls": [url]})), says("openai", "Read it."))

    run = create(server.url, mode, model=MODEL, input="Read it", tools=[{"type": "url_context"}])

    assert run.status == "completed", run
    call, result = run.steps[0], run.steps[1]
    assert type(call).__name__ == "URLContextCallStep" and call.arguments.urls == [url]
    assert type(result).__name__ == "URLContextResultStep"
    assert result.call_id == call.id and not result.is_error
    assert [(r.url, r.status) for r in result.result] == [(url, "success")]
    assert site.hits == ["/moved", "/doc"]  # the redirect was followed (and re-checked)
    sent = tool_messages(fake)[-1]
    assert f"The answer is {SECRET}." in sent and "var x" not in sent
    assert {t["function"]["name"] for t in fake.requests[0].body["tools"]} == {"url_context"}


@pytest.fixture
def srv_factory(
    start_server: Callable[..., ServerThread], fake: FakeServer
) -> Callable[..., ServerThread]:
    """Like `srv`, started when the test says (after it has set the environment)."""

    def start(config: ApiConfig | None = None) -> ServerThread:
        server = start_server(config)

        def factory(model: str, **_: Any) -> ModelProvider:
            return make_provider(
                model,
                api_key="k",
                base_url=fake.url + "/v1",
                env={},
                retry=RetryPolicy(max_attempts=1, sleep=_no_wait),
                timeouts=Timeouts(connect=10.0, idle=30.0, response=30.0),
            )

        app: Any = server.server.config.app
        app.state.corral.ctl.runner.provider_factory = factory
        return server

    return start


async def _no_wait(_: float) -> None:
    pass


@pytest.mark.parametrize(
    ("allow", "target", "reason"),
    [
        ("", "{site}/doc", "loopback_address"),
        ("127.0.0.1", "http://169.254.169.254/latest/meta-data/", "metadata_address"),
        ("", "http://[::1]:{port}/doc", "loopback_address"),
        ("", "http://10.1.2.3/", "private_address"),
        ("{port}", "{site}/to-other", "loopback_address"),  # a redirect to a refused port
        ("", "file:///etc/passwd", "bad_url"),
    ],
)
def test_url_context_refuses_what_the_egress_rules_refuse(
    fake: FakeServer,
    site_factory: Callable[[], Site],
    monkeypatch: pytest.MonkeyPatch,
    srv_factory: Callable[..., ServerThread],
    allow: str,
    target: str,
    reason: str,
) -> None:
    site, other = site_factory(), site_factory()
    site.routes["/doc"] = page(SECRET)
    site.routes["/to-other"] = (302, {"Location": f"{other.url}/doc"}, b"")
    other.routes["/doc"] = page(SECRET)
    if allow == "{port}":
        allow = f"127.0.0.1:{site.port}"
    monkeypatch.setenv("CORRAL_EGRESS_ALLOW_PRIVATE", allow)
    server = srv_factory()
    url = target.format(site=site.url, port=site.port)
    fake.add(calls("url_context", json.dumps({"urls": [url]})), says("openai", "Could not."))

    run = create(server.url, "sync", model=MODEL, input="Read", tools=[{"type": "url_context"}])

    assert run.status == "completed", run
    result = run.steps[1]
    assert type(result).__name__ == "URLContextResultStep" and result.is_error
    assert [r.status for r in result.result] == ["error"]
    sent = tool_messages(fake)[-1]
    assert reason in sent, sent
    assert SECRET not in everything_sent(fake)
    view = httpx.get(f"{server.url}/v1beta/interactions/{run.id}", timeout=30).text
    assert SECRET not in view
    assert other.hits == []


# -- google_search ------------------------------------------------------------------------


def test_google_search_uses_the_configured_backend(
    fake: FakeServer,
    site_factory: Callable[[], Site],
    monkeypatch: pytest.MonkeyPatch,
    srv_factory: Callable[..., ServerThread],
    mode: str,
) -> None:
    search = site_factory()
    results = {
        "results": [
            {"title": "Corral docs", "url": "https://corral.test/docs", "content": "Runtime."},
            {"title": "No URL"},
        ]
    }
    search.routes["/search"] = (
        200,
        {"Content-Type": "application/json"},
        json.dumps(results).encode(),
    )
    monkeypatch.setenv("CORRAL_SEARCH_URL", f"{search.url}/search")
    server = srv_factory()
    fake.add(
        calls("google_search", json.dumps({"queries": ["corral runtime"]})),
        says("openai", "Found it."),
    )

    run = create(server.url, mode, model=MODEL, input="Find", tools=[{"type": "google_search"}])

    assert run.status == "completed", run
    call, result = run.steps[0], run.steps[1]
    assert type(call).__name__ == "GoogleSearchCallStep"
    assert call.arguments.queries == ["corral runtime"]
    assert type(result).__name__ == "GoogleSearchResultStep" and not result.is_error
    assert "https://corral.test/docs" in str(result.result[0].search_suggestions)
    query = parse_qs(urlsplit(search.hits[0]).query)
    assert query == {"q": ["corral runtime"], "format": ["json"]}
    sent = tool_messages(fake)[-1]
    assert "Corral docs" in sent and "https://corral.test/docs" in sent


def test_google_search_without_a_backend_is_400_naming_the_setting(
    srv: ServerThread, fake: FakeServer, mode: str
) -> None:
    text = refused(srv.url, mode, model=MODEL, input="x", tools=[{"type": "google_search"}])
    assert "CORRAL_SEARCH_URL" in text and "google_search" in text
    assert fake.requests == []


def test_mcp_server_with_model_must_be_a_remote_server(srv: ServerThread, mode: str) -> None:
    """With model= an MCP server is reached by the controller (test_tools.py runs one); a
    stdio server would run a command the caller names, so it is refused."""
    tool = {"type": "mcp_server", "name": "m", "command": "python3"}
    text = refused(srv.url, mode, model=MODEL, input="x", tools=[tool])
    assert "mcp_server" in text and "needs a url" in text
