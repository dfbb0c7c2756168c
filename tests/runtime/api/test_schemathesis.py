"""Property-based fuzzing of the OpenAPI spec: no input may produce a 5xx, and every response
matches what /openapi.json documents (status code, content type, body schema).

Bounded (a few examples per operation, derandomized). Operations that would start real
sandboxes (sandbox create) are left out; fuzzed `agent=` names do not resolve, and fuzzed
`model=` strings have no provider key here, so nothing leaves the machine.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.runtime.api.conftest import ServerThread

EXCLUDED = {("POST", "/v1beta/sandboxes")}
# No 5xx; and every answer (errors included) has a documented status, content type and schema.
CHECKS = (
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
)


def test_no_server_errors(server: ServerThread) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    checked = 0
    for result in schema.get_all_operations():
        op = result.ok()
        if (op.method.upper(), op.path) in EXCLUDED:
            continue

        @given(case=op.as_strategy())
        @settings(
            max_examples=8,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def run(case: Any) -> None:
            response = case.call(base_url=server.url, timeout=30)
            case.validate_response(response, checks=CHECKS)

        run()
        checked += 1
    assert checked >= 15
