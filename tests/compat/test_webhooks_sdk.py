"""`client.webhooks` of the official google-genai SDK (sync and async) against `corral serve`:
`list` answers (empty: Corral's webhooks are set per interaction), every other method is
refused with 400 (FAILED_PRECONDITION) in Google's error shape and a message saying what to use — never a 404."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.runtime.api.conftest import ServerThread, sdk


@pytest.fixture
def server() -> Iterator[ServerThread]:
    """A live `corral serve` (uvicorn in a thread) on a free loopback port."""
    srv = ServerThread().start()
    yield srv
    srv.stop()


EVENTS = ["interaction.completed"]


def status_of(exc: BaseException) -> int:
    return int(getattr(exc, "status_code", None) or getattr(exc, "code", None) or 0)


def sync_calls(client: Any) -> dict[str, Callable[[], Any]]:
    w = client.webhooks
    return {
        "create": lambda: w.create(uri="https://example.org/h", subscribed_events=EVENTS),
        "get": lambda: w.get("wh-1"),
        "update": lambda: w.update("wh-1", uri="https://example.org/h2"),
        "delete": lambda: w.delete("wh-1"),
        "ping": lambda: w.ping("wh-1"),
        "rotate_signing_secret": lambda: w.rotate_signing_secret("wh-1"),
    }


@pytest.mark.parametrize("version", ["v1", "v1beta"])
def test_sdk_webhooks_sync(server: ServerThread, version: str) -> None:
    client: Any = sdk(server.url, version=version)
    assert list(client.webhooks.list().webhooks or []) == []
    for name, call in sync_calls(client).items():
        with pytest.raises(Exception) as info:
            call()
        assert status_of(info.value) == 400, (name, info.value)
        assert f"webhooks.{name}" in str(info.value) and "webhook_config" in str(info.value)


def test_sdk_webhooks_async(server: ServerThread) -> None:
    async def main() -> None:
        client: Any = sdk(server.url)  # keep the client: collecting it closes the async transport
        w = client.aio.webhooks
        assert list((await w.list()).webhooks or []) == []
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "create": lambda: w.create(uri="https://example.org/h", subscribed_events=EVENTS),
            "get": lambda: w.get("wh-1"),
            "delete": lambda: w.delete("wh-1"),
            "ping": lambda: w.ping("wh-1"),
        }
        for name, call in calls.items():
            try:
                await call()
            except Exception as exc:
                assert status_of(exc) == 400, (name, exc)
            else:
                raise AssertionError(f"{name} succeeded")

    asyncio.run(main())


def test_refusals_are_in_googles_error_shape(server: ServerThread) -> None:
    r = httpx.post(
        f"{server.url}/v1/webhooks", json={"uri": "https://x.org", "subscribed_events": EVENTS}
    )
    assert r.status_code == 400
    error = r.json()["error"]
    assert "webhook_config" in error["message"]
    secret = httpx.get(f"{server.url}/v1beta/webhooks/secret")  # the tenant's signing secret
    assert secret.status_code == 200 and secret.json()["secret"].startswith("whsec_")
