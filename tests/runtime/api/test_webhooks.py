"""Completion webhooks: signed per Standard Webhooks, retried with backoff, stable id."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from runtime.api.config import ApiConfig
from runtime.webhooks import RetryPolicy, new_secret, sign, signed_headers, verify
from tests.runtime.api.conftest import ServerThread


class Receiver:
    """Answers 500 to the first `failures` posts, then 200; records everything."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes, int]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                status = 500 if len(receiver.received) < receiver.failures else 200
                headers = {k.lower(): v for k, v in self.headers.items()}
                receiver.received.append((headers, body, status))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver(failures=2)
    yield r
    r.close()


def test_sign_and_verify() -> None:
    secret = new_secret()
    body = b'{"a":1}'
    headers = signed_headers(secret, "msg_1", body, now=1_700_000_000)
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(secret, headers, body, now=1_700_000_010)
    assert not verify(secret, headers, body + b" ", now=1_700_000_010)
    assert not verify(secret, headers, body, now=1_700_001_000)  # too old
    assert not verify(new_secret(), headers, body, now=1_700_000_010)
    # Standard Webhooks' published example
    example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    payload = b'{"test": 2432232314}'
    assert (
        sign(example, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, payload)
        == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )


def test_webhook_retried_until_delivered(
    start_server: Callable[..., ServerThread], script: Callable[..., str], receiver: Receiver
) -> None:
    srv = start_server(
        ApiConfig(webhook_policy=RetryPolicy(max_attempts=5, base_delay=0.05), webhook_poll=0.05)
    )
    r = httpx.post(
        f"{srv.url}/v1beta/interactions",
        json={
            "model": script({"text": "done"}),
            "input": "x",
            "webhook_config": {"uris": [receiver.url], "user_metadata": {"job": "42"}},
        },
    )
    assert r.status_code == 200
    deadline = time.monotonic() + 30
    while not any(status == 200 for *_, status in receiver.received):
        assert time.monotonic() < deadline, receiver.received
        time.sleep(0.05)
    assert [status for *_, status in receiver.received] == [500, 500, 200]
    ids = {h["webhook-id"] for h, _, _ in receiver.received}
    assert len(ids) == 1  # the same message each time: receivers deduplicate on it
    secret = httpx.get(f"{srv.url}/v1beta/webhooks/secret").json()["secret"]
    headers, body, _ = receiver.received[-1]
    assert verify(secret, headers, body)
    event = json.loads(body)
    assert event["type"] == "interaction.completed"
    assert event["data"]["interaction"]["id"] == r.json()["id"]
    assert event["data"]["interaction"]["status"] == "completed"
    assert event["data"]["user_metadata"] == {"job": "42"}
    metrics = httpx.get(f"{srv.url}/metrics").text
    assert 'corral_webhook_attempts_total{outcome="retry"} 2.0' in metrics
    assert 'corral_webhook_attempts_total{outcome="delivered"} 1.0' in metrics


def test_bad_webhook_uri_is_400(server: ServerThread, script: Callable[..., str]) -> None:
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        json={
            "model": script({"text": "x"}),
            "input": "x",
            "webhook_config": {"uris": ["file:///etc"]},
        },
    )
    assert r.status_code == 400
