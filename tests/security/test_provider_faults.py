"""A hostile model provider: a plain `model=` interaction against a provider that stalls, cuts
its stream short, answers an empty 200 or sends bytes that are not UTF-8 ends `failed` with
`provider_timeout` or `provider_protocol` and a one-line message. Never `completed` with no
output, never `internal` with a traceback, and the server keeps serving.

Each provider is its official SDK against the local fake server (tests/runtime/providers);
the runner's provider factory is pointed at it with a small idle timeout and no backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runtime.providers.base import ModelProvider, Timeouts
from runtime.providers.registry import make_provider
from runtime.providers.retry import RetryPolicy
from tests.compat.recording import fake
from tests.runtime.api.conftest import ServerThread, start_server
from tests.runtime.providers.fakes import FakeServer, Reply
from tests.runtime.providers.test_faults import after_text, before_text

__all__ = ["fake", "start_server"]

KINDS = ["openai", "anthropic", "gemini"]
ATTEMPTS = 2


async def _no_wait(_: float) -> None:
    pass


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], fake: FakeServer) -> ServerThread:
    server = start_server()

    def factory(model: str, **_: Any) -> ModelProvider:
        kind = model.partition(":")[0]
        return make_provider(
            model,
            api_key="k",
            base_url=fake.url + "/v1" if kind == "openai" else fake.url,
            env={},
            retry=RetryPolicy(max_attempts=ATTEMPTS, sleep=_no_wait),
            timeouts=Timeouts(connect=10.0, idle=0.5, response=0.5),
        )

    app: Any = server.server.config.app
    app.state.corral.ctl.runner.provider_factory = factory
    return server


FAULTS: dict[str, Callable[[str], Reply]] = {
    "stall": lambda kind: Reply(sse=before_text(kind), stall=True),
    "stall-after-text": lambda kind: Reply(sse=after_text(kind), stall=True),
    "cut": lambda kind: Reply(sse=after_text(kind), cut=True),
    "ended-early": lambda kind: Reply(sse=after_text(kind)),
    "empty-200": lambda kind: Reply(raw=b"", content_type="text/event-stream"),
    "not-utf8": lambda kind: Reply(
        raw=b"data: \xff\xfe\x00\x81\xc3(\n\n", content_type="text/event-stream"
    ),
    "not-json": lambda kind: Reply(
        sse=[("message_start" if kind == "anthropic" else None, "{oops")]
    ),
}
CODES = {"stall": "provider_timeout", "stall-after-text": "provider_timeout"}


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", KINDS)
def test_a_faulty_provider_fails_the_interaction_with_a_clear_code(
    srv: ServerThread, fake: FakeServer, kind: str, fault: str
) -> None:
    fake.add(*(FAULTS[fault](kind) for _ in range(ATTEMPTS)))

    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={"model": f"{kind}:fake-model", "input": "hi"},
        timeout=60,
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "failed", body
    (error,) = body["errors"]
    assert error["code"] == CODES.get(fault, "provider_protocol"), error
    message = error["message"]
    assert message.startswith(f"{kind}: ") and "\n" not in message, message
    assert "Traceback" not in message and "\ufffd" not in message, message
    assert 1 <= len(fake.requests) <= ATTEMPTS

    got = httpx.get(f"{srv.url}/v1beta/interactions/{body['id']}", timeout=30)
    assert got.status_code == 200 and got.json()["status"] == "failed"
