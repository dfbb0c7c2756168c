"""Every error path answers in Google's shape, and the google-genai SDK reads it.

`{"error": {"code": <HTTP status>, "message", "status": <google.rpc.Code name>, "details":
[{"@type": ".../google.rpc.ErrorInfo", "reason": <CORRAL_CODE>, "domain": "corral"}]}}`;
errors inside an interaction (`errors[]`, the SSE `error` event) keep the SDK's string `code`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from google import genai
from google.genai import errors as genai_errors
from google.genai._interactions.core.error import APIStatusError, BadRequestError, NotFoundError

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.errors import error_reason
from tests.runtime.api.conftest import ServerThread, sdk, start_server

__all__ = ["start_server"]

RPC_NAMES = {
    "INVALID_ARGUMENT",
    "FAILED_PRECONDITION",
    "OUT_OF_RANGE",
    "UNAUTHENTICATED",
    "PERMISSION_DENIED",
    "NOT_FOUND",
    "ABORTED",
    "ALREADY_EXISTS",
    "RESOURCE_EXHAUSTED",
    "CANCELLED",
    "DATA_LOSS",
    "UNKNOWN",
    "INTERNAL",
    "UNIMPLEMENTED",
    "UNAVAILABLE",
    "DEADLINE_EXCEEDED",
}


@pytest.fixture
def srv(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(ApiConfig(allow_scripted=True))


@pytest.fixture
def client(srv: ServerThread) -> genai.Client:
    return sdk(srv.url)


def scripted(tmp_path: Path, *turns: dict[str, Any]) -> str:
    path = tmp_path / "turns.yaml"
    path.write_text(yaml.safe_dump({"turns": list(turns)}))
    return f"scripted:{path}"


def assert_google_shape(r: httpx.Response, status: str, reason: str | None = None) -> None:
    assert r.headers["content-type"].startswith("application/json"), r.text
    err = r.json()["error"]
    assert err["code"] == r.status_code, err
    assert err["status"] == status and err["status"] in RPC_NAMES, err
    assert isinstance(err["message"], str) and err["message"], err
    info = err["details"][0]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert info["domain"] == "corral" and info["reason"] == info["reason"].upper()
    assert all(isinstance(v, str) for v in info["metadata"].values())
    if reason is not None:
        assert error_reason(r.json()) == reason, err
    # google.genai.errors (the models API's parser) reads code, status and message from it
    with pytest.raises(genai_errors.APIError) as caught:
        genai_errors.APIError.raise_for_response(r)
    assert (caught.value.code, caught.value.status) == (r.status_code, status)
    assert caught.value.message == err["message"]


def test_sdk_not_found_reads_the_google_body(client: genai.Client) -> None:
    with pytest.raises(NotFoundError) as caught:
        client.interactions.get("nope")
    body: Any = caught.value.body
    assert body["error"]["code"] == 404 and body["error"]["status"] == "NOT_FOUND"
    assert error_reason(body) == "not_found"


def test_validation_error_is_400_naming_the_field(srv: ServerThread, client: genai.Client) -> None:
    with pytest.raises(BadRequestError):
        client.interactions.create(
            agent="default",
            input="x",
            background=True,
            agent_config={"type": "dynamic", "max_steps": 0},
        )
    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={"agent": "default", "input": "x", "agent_config": {"max_steps": 0}},
    )
    assert r.status_code == 400
    assert_google_shape(r, "INVALID_ARGUMENT", "invalid_argument")
    err = r.json()["error"]
    assert "max_steps" in err["message"]
    (bad,) = [d for d in err["details"] if d["@type"].endswith("google.rpc.BadRequest")]
    assert any("max_steps" in v["field"] for v in bad["fieldViolations"]), bad


def test_malformed_json_is_400(srv: ServerThread) -> None:
    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert_google_shape(r, "INVALID_ARGUMENT", "invalid_argument")


def test_unknown_route_and_method(srv: ServerThread) -> None:
    r = httpx.get(f"{srv.url}/v1beta/nothing-here")
    assert r.status_code == 404
    assert_google_shape(r, "NOT_FOUND", "not_found")
    r = httpx.put(f"{srv.url}/v1beta/interactions", json={})
    assert r.status_code == 405 and "allow" in r.headers
    assert_google_shape(r, "UNIMPLEMENTED", "method_not_allowed")


def test_body_cap_is_413(start_server: Callable[..., ServerThread]) -> None:
    srv = start_server(ApiConfig(json_limit=1000))
    r = httpx.post(f"{srv.url}/v1beta/interactions", json={"model": "x", "input": "a" * 5000})
    assert r.status_code == 413
    assert_google_shape(r, "INVALID_ARGUMENT", "payload_too_large")


def test_auth_401_and_sdk_class(start_server: Callable[..., ServerThread]) -> None:
    srv = start_server(ApiConfig(keys=ApiKeys.from_mapping({"good": "t1"})))
    r = httpx.get(f"{srv.url}/v1beta/interactions/x", headers={"x-goog-api-key": "bad"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert_google_shape(r, "UNAUTHENTICATED", "unauthenticated")
    bad = sdk(srv.url, key="bad")
    with pytest.raises(APIStatusError) as caught:
        bad.interactions.get("x")
    assert caught.value.status_code == 401


def test_missing_provider_key_is_failed_precondition_at_create(
    srv: ServerThread, client: genai.Client
) -> None:
    """No OPENAI_API_KEY on the server (the tests' env is clean): refused before any run."""
    with pytest.raises(BadRequestError) as caught:
        client.interactions.create(model="openai:gpt-4o", input="hi")
    body: Any = caught.value.body
    assert body["error"]["status"] == "FAILED_PRECONDITION"
    assert "OPENAI_API_KEY" in body["error"]["message"]
    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={"agent": "default", "input": "x", "agent_config": {"model": "anthropic:claude-x"}},
    )
    assert r.status_code == 400
    assert_google_shape(r, "FAILED_PRECONDITION", "failed_precondition")
    assert "ANTHROPIC_API_KEY" in r.json()["error"]["message"]


def test_conflict_keeps_corral_reason(srv: ServerThread, tmp_path: Path) -> None:
    model = scripted(tmp_path, {"text": "hi"})
    h = {"Idempotency-Key": "same"}
    url = f"{srv.url}/v1beta/interactions"
    assert httpx.post(url, json={"model": model, "input": "a"}, headers=h).status_code == 200
    r = httpx.post(url, json={"model": model, "input": "b"}, headers=h)
    assert r.status_code == 409
    assert_google_shape(r, "ABORTED", "conflict")


def test_errors_inside_an_interaction_stay_sdk_typed(client: genai.Client, tmp_path: Path) -> None:
    """A cancelled run's `errors[]` and its SSE `error` event parse as the SDK's types."""
    model = scripted(tmp_path, {"text": "slow", "delay": 60})
    run = client.interactions.create(model=model, input="x", background=True)
    client.interactions.cancel(run.id)
    got = client.interactions.get(run.id)
    assert got.status == "cancelled"
    assert got.errors and all(isinstance(e.code, str) and e.message for e in got.errors)
    events = list(client.interactions.get(run.id, stream=True))
    errs = [e for e in events if e.event_type == "error"]
    assert errs and all(isinstance(e.error.code, str) for e in errs)  # type: ignore[union-attr]
