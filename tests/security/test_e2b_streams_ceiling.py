"""A tenant cannot escape its concurrent-stream ceiling through the E2B door: commands,
`commands.connect`, PTYs, directory watches and `run_code` cells carry no API key (only the
sandbox's access token), yet each holds a slot of the sandbox owner's `max_streams`, counted
with its other streams. With the real `e2b` and `e2b-code-interpreter` SDKs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from e2b import AsyncSandbox, CommandExitException, PtySize, RateLimitException, SandboxException
from e2b_code_interpreter import Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from runtime.e2b.common import owner_policy
from tests.compat.e2b_support import e2b_sandboxes, serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]

KEYS = {"key-a": "tenant-a", "key-b": "tenant-b"}
# The cell prints, then waits for a file the test writes once the print has reached it.
WAITS = (
    "import os, time\nprint('first', flush=True)\n"
    "while not os.path.exists('/workspace/go'):\n    time.sleep(0.01)\nprint('second')"
)
TRIES = 200
"""Attempts (10 ms apart) while a closed stream gives its slot back: the SDK sees a stream's
last frame just before the server's response, and so its lease, has ended."""


def test_the_stream_ceiling_of_a_sandbox_without_a_known_key_is_the_tenants_strictest() -> None:
    keys = ApiKeys.from_mapping(
        {"k1": "t", "k2": "t", "k3": "u"},
        policies={"k1": TenantPolicy(max_streams=5), "k2": TenantPolicy(max_streams=3)},
        default_policy=TenantPolicy(max_streams=7),
    )
    assert owner_policy(keys, "t").max_streams == 3
    assert owner_policy(keys, "u").max_streams == 7
    assert owner_policy(keys, "nobody").max_streams == 7


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    keys = ApiKeys.from_mapping(KEYS, policies={"key-a": TenantPolicy(max_streams=2)})
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=keys))


@pytest.fixture
def boxes(srv: ServerThread) -> Iterator[list[Sandbox]]:
    yield from e2b_sandboxes()


def sandbox(srv: ServerThread, key: str, made: list[Sandbox]) -> Sandbox:
    box = Sandbox.create(timeout=120, api_key=key)
    made.append(box)
    return box


def background(box: Sandbox) -> Any:
    return box.commands.run("sleep 60", background=True)


def until_free(open_one: Callable[[], Any]) -> Any:
    for _ in range(TRIES):
        try:
            return open_one()
        except RateLimitException:
            time.sleep(0.01)
    raise AssertionError("the closed stream's slot never came back")


def assert_refused(call: Callable[[], Any]) -> None:
    with pytest.raises(RateLimitException) as exc:
        call()
    assert "concurrent streams" in str(exc.value) and "ceiling is 2" in str(exc.value)


@pytest.mark.docker
def test_e2b_streams_count_against_the_owners_ceiling(
    srv: ServerThread, boxes: list[Sandbox]
) -> None:
    a = sandbox(srv, "key-a", boxes)
    one, two = background(a), background(a)
    # The third stream of tenant-a is refused, whichever shape it takes.
    assert_refused(lambda: background(a))
    assert_refused(lambda: a.commands.connect(one.pid))
    assert_refused(lambda: a.pty.create(PtySize(24, 80)))
    assert_refused(lambda: a.files.watch_dir("/home/user"))
    with pytest.raises(SandboxException) as cell:
        a.run_code("print('never')")
    assert "429" in str(cell.value) and "concurrent streams" in str(cell.value)
    # A second sandbox of the same tenant shares the count (the ceiling is the tenant's).
    a2 = sandbox(srv, "key-a", boxes)
    assert_refused(lambda: background(a2))
    # ... and so does the tenant's own API: a streamed exec there is refused too.
    r = httpx.post(
        f"{srv.url}/v1beta/sandboxes/{a.sandbox_id}/exec",
        json={"command": "true", "stream": True},
        headers={"x-goog-api-key": "key-a"},
        timeout=60,
    )
    assert r.status_code == 429, r.text
    # Another tenant is unaffected.
    b = sandbox(srv, "key-b", boxes)
    theirs = [background(b) for _ in range(3)]
    assert b.run_code("1 + 1").text == "2"
    for h in theirs:
        b.commands.kill(h.pid)
    # Closing one gives its slot back: a run_code cell may stream again, and while it does,
    # it holds the slot.
    assert a.commands.kill(one.pid)
    with pytest.raises(CommandExitException):
        one.wait()
    started, seen = threading.Event(), []

    def on_stdout(msg: Any) -> None:
        seen.append(msg.line)
        started.set()

    def cell() -> None:
        seen.append(until_free(lambda: a.run_code(WAITS, on_stdout=on_stdout, timeout=60)))

    t = threading.Thread(target=cell)
    t.start()
    assert started.wait(60)
    assert_refused(lambda: background(a))
    a.files.write("/home/user/go", "")
    t.join(60)
    assert seen[-1].logs.stdout == ["first\n", "second\n"]
    # The cell has ended: its slot is free again.
    three = until_free(lambda: background(a))
    for h in (two, three):
        a.commands.kill(h.pid)


@pytest.mark.docker
def test_a_polled_watch_holds_a_slot_until_removed(srv: ServerThread, boxes: list[Sandbox]) -> None:
    """The sync SDK's watch_dir is polled (CreateWatcher ... RemoveWatcher): it holds a slot
    while it is in place, as the async SDK's stream does."""
    a = sandbox(srv, "key-a", boxes)
    w1 = a.files.watch_dir("/home/user")
    w2 = a.files.watch_dir("/home/user")
    assert_refused(lambda: background(a))
    w1.stop()
    h = background(a)
    assert_refused(lambda: a.files.watch_dir("/home/user"))
    w2.stop()
    a.commands.kill(h.pid)


@pytest.mark.docker
async def test_async_watch_streams_hold_slots(srv: ServerThread) -> None:
    """The async SDK's watch_dir is a stream (WatchDir): it holds a slot until stopped."""
    a = await AsyncSandbox.create(timeout=120, api_key="key-a")
    try:
        w1 = await a.files.watch_dir("/home/user", on_event=lambda e: None)
        w2 = await a.files.watch_dir("/home/user", on_event=lambda e: None)
        with pytest.raises(RateLimitException, match="ceiling is 2"):
            await a.commands.run("sleep 60", background=True)
        await w1.stop()
        for _ in range(TRIES):
            try:
                h = await a.commands.run("sleep 60", background=True)
                break
            except RateLimitException:
                await asyncio.sleep(0.01)
        else:
            raise AssertionError("the stopped watch's slot never came back")
        await a.commands.kill(h.pid)
        await w2.stop()
    finally:
        await a.kill()
