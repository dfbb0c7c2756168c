"""What the suites that drive Corral with the real `e2b` SDKs share: a live `corral serve`
with the SDKs' environment pointed at it, and sandboxes that are killed after their test.

Import `start_server` from here into a test module (it is named in `__all__`) and write the
module's own `srv` and `sb` fixtures with these helpers (each suite has its own keys and
sandbox options)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from e2b import Sandbox

from runtime.api.config import ApiConfig
from tests.runtime.api.conftest import ServerThread, start_server

__all__ = ["e2b_sandbox", "e2b_sandboxes", "serve_e2b", "start_server"]


def serve_e2b(
    start_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    config: ApiConfig | None = None,
    key: str = "key-a",
) -> ServerThread:
    """A live server; the e2b SDKs (API and sandbox calls) go to it with API key `key`."""
    srv = start_server(config)
    monkeypatch.setenv("E2B_API_URL", srv.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", srv.url)
    monkeypatch.setenv("E2B_API_KEY", key)
    return srv


def e2b_sandbox(**create: Any) -> Iterator[Sandbox]:
    """A fixture's body (``yield from e2b_sandbox(timeout=120)``): `Sandbox.create(**create)`
    with the sync SDK, killed after the test."""
    box = Sandbox.create(**create)
    yield box
    box.kill()


def e2b_sandboxes() -> Iterator[list[Sandbox]]:
    """A fixture's body (``yield from e2b_sandboxes()``): a list the test puts the sandboxes it
    makes in; each is killed after the test."""
    made: list[Sandbox] = []
    yield made
    for box in made:
        box.kill()
