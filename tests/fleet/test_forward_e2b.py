"""The E2B door across nodes: a sandbox created through node A, its commands and files used
through node B (in-sandbox calls carry a per-sandbox token that only the owner checks) and its
lifecycle calls (get, kill) through B, all forwarded to A."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from e2b import Sandbox

from tests.fleet.nodes import KEY, ServeNode

pytestmark = pytest.mark.docker


def test_e2b_sdk_through_a_node_that_does_not_own_the_sandbox(
    start_node: Callable[..., ServeNode], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = start_node("a"), start_node("b")
    monkeypatch.setenv("E2B_API_KEY", KEY)
    monkeypatch.setenv("E2B_API_URL", a.url)  # created on a
    monkeypatch.setenv("E2B_SANDBOX_URL", b.url)  # used through b
    box = Sandbox.create(timeout=120)
    r = box.commands.run("echo forwarded; id -u")
    assert r.exit_code == 0 and r.stdout == "forwarded\n1000\n"
    box.files.write("/home/user/note.txt", "through b")
    assert box.files.read("/home/user/note.txt") == "through b"

    # a wrong token is refused by the owner, not waved through by the forwarding node
    bad = httpx.post(
        f"{b.url}/process.Process/List",
        json={},
        headers={
            "E2b-Sandbox-Id": box.sandbox_id,
            "X-Access-Token": "forged",
            "Content-Type": "application/json",
        },
    )
    assert bad.status_code == 401

    lifecycle = {"X-API-KEY": KEY}
    got = httpx.get(f"{b.url}/sandboxes/{box.sandbox_id}", headers=lifecycle)
    assert got.status_code == 200 and got.json()["sandboxID"] == box.sandbox_id
    assert httpx.delete(f"{b.url}/sandboxes/{box.sandbox_id}", headers=lifecycle).status_code in (
        200,
        204,
    )
    assert httpx.get(f"{a.url}/sandboxes/{box.sandbox_id}", headers=lifecycle).status_code == 404
