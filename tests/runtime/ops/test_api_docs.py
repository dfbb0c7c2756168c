"""docs/api.md, checked against the server: the webhook verification snippet, run as printed,
accepts a real delivery and rejects tampered, stale and foreign ones; streams end by closing
after `interaction.completed`, with no `data: [DONE]`."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.api.config import ApiConfig
from runtime.webhooks import new_secret
from tests.runtime.api.conftest import ServerThread
from tests.runtime.api.test_webhooks import Receiver

DOC = (Path(__file__).resolve().parents[3] / "docs" / "api.md").read_text()
HANG_GUARD = 60.0
"""Seconds before waiting for the delivery gives up: a guard against hangs, not a measure."""


def _snippet() -> Callable[..., bool]:
    section = DOC[DOC.index("### Verifying a webhook") :]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    assert code is not None
    namespace: dict[str, Any] = {}
    exec(compile(code.group(1), "docs/api.md", "exec"), namespace)
    fn: Callable[..., bool] = namespace["verify_corral_webhook"]
    return fn


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=0)
    yield r
    r.close()


def test_the_docs_snippet_verifies_a_real_delivery(
    start_server: Callable[..., ServerThread], script: Callable[..., str], receiver: Receiver
) -> None:
    verify = _snippet()
    srv = start_server(ApiConfig(webhook_poll=0.05))
    made = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={"model": script({"text": "done"}), "input": "x", "webhook_config": {
            "uris": [receiver.url]}},
    )  # fmt: skip
    assert made.status_code == 200, made.text
    deadline = time.monotonic() + HANG_GUARD
    while not receiver.received:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    headers, body, _ = receiver.received[0]
    secret = httpx.get(f"{srv.url}/v1beta/webhooks/secret").json()["secret"]

    assert verify(secret, headers, body)
    assert json.loads(body)["data"]["interaction"]["id"] == made.json()["id"]
    assert not verify(secret, headers, body.replace(b"completed", b"cancelled", 1))
    assert not verify(secret, headers, body + b" ")
    assert not verify(new_secret(), headers, body)
    stale = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) - 301)}
    assert not verify(secret, stale, body)
    assert not verify(secret, {**headers, "webhook-timestamp": "soon"}, body)
    assert not verify(secret, {k: v for k, v in headers.items() if k != "webhook-id"}, body)
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}
    assert verify(secret, rotated, body)


def test_streams_end_by_closing_without_done(
    start_server: Callable[..., ServerThread], script: Callable[..., str]
) -> None:
    srv = start_server()
    body = {"model": script({"text": "hello"}), "input": "x", "stream": True}
    with httpx.stream("POST", f"{srv.url}/v1beta/interactions", json=body, timeout=60) as resp:
        data = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in data
    events = [json.loads(d) for d in data]
    assert events[-1]["event_type"] == "interaction.completed"
    run_id = events[-1]["interaction"]["id"]
    with httpx.stream(
        "GET", f"{srv.url}/v1beta/interactions/{run_id}", params={"stream": "true"}, timeout=60
    ) as resp:
        replay = [line[6:] for line in resp.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in replay
    assert json.loads(replay[-1])["event_type"] == "interaction.completed"
