"""/openapi.json documents real response bodies, the API-key schemes and 400 (never 422) in
Google's error shape; /docs and /redoc work offline (every asset is served here)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runtime.api.config import ApiConfig
from runtime.api.openapi import ErrorBody
from tests.runtime.api.conftest import ServerThread, start_server

__all__ = ["start_server"]

GENERIC = ({}, {"type": "object", "additionalProperties": True})


@pytest.fixture
def srv(start_server: Callable[..., ServerThread]) -> ServerThread:
    return start_server(ApiConfig())


def urls_in(html: str) -> list[str]:
    return re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']|url:\s*["']([^"']+)["']""", html)


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_use_only_local_assets(srv: ServerThread, page: str) -> None:
    r = httpx.get(srv.url + page)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    assert not re.search(r"https?://", r.text), r.text  # no CDN, no fonts, no favicon host
    found = [a or b for a, b in urls_in(r.text)]
    assert any(u.endswith(".js") for u in found), found
    for url in found:
        assert url.startswith("/"), url
        got = httpx.get(srv.url + url)
        assert got.status_code == 200 and got.content, url


def test_openapi_documents_responses_security_and_400(srv: ServerThread) -> None:
    doc: dict[str, Any] = httpx.get(f"{srv.url}/openapi.json").json()
    schemes = doc["components"]["securitySchemes"]
    assert schemes["ApiKeyHeader"] == {
        **schemes["ApiKeyHeader"],
        "type": "apiKey",
        "in": "header",
        "name": "x-goog-api-key",
    }
    assert schemes["BearerAuth"]["scheme"] == "bearer"
    assert {"ApiKeyHeader": []} in doc["security"]
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            where = f"{method.upper()} {path}"
            responses = op["responses"]
            assert "422" not in responses, where
            content = responses["200"].get("content", {})
            assert content, where
            json_schema = content.get("application/json", {}).get("schema")
            assert json_schema not in GENERIC, f"{where}: no response schema"
            if path in ("/healthz", "/metrics"):
                assert op["security"] == [], where
                continue
            bad = responses["400"]["content"]["application/json"]["schema"]
            assert bad == {"$ref": "#/components/schemas/ErrorBody"}, where
            assert "401" in responses and "404" in responses, where
    interaction = doc["components"]["schemas"]["Interaction"]
    assert {"id", "status", "steps"} <= set(interaction["properties"])


def test_error_bodies_match_the_documented_schema(srv: ServerThread) -> None:
    for r in (
        httpx.get(f"{srv.url}/v1beta/interactions/nope"),
        httpx.post(f"{srv.url}/v1beta/interactions", json={"model": 5}),
        httpx.get(f"{srv.url}/no/route"),
    ):
        assert r.status_code in (400, 404)
        ErrorBody.model_validate(r.json())
