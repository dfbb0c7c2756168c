"""`files.watch_dir` through the real `e2b` SDK against a live `corral serve`: the sync SDK's
polled watcher and the async SDK's stream, recursive watches, and hostile folders (100k files,
symlink loops, more folders than a watch takes, paths outside the workspace)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
from e2b import AsyncSandbox, FilesystemEvent, Sandbox
from e2b.exceptions import SandboxException
from e2b.sandbox_sync.filesystem.watch_handle import WatchHandle

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.compat.e2b_support import e2b_sandbox, serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]

pytestmark = pytest.mark.docker
KEYS = {"key-a": "a"}
GAP = ("write", "")
"""The marker of dropped events: a write on the watched folder itself."""


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=ApiKeys.from_mapping(KEYS)))


@pytest.fixture
def sb(srv: ServerThread) -> Iterator[Sandbox]:
    yield from e2b_sandbox(timeout=300)


def _until(h: WatchHandle, want: tuple[str, str], seen: list[tuple[str, str]]) -> None:
    """Poll the watcher until `want` arrives (events collected into `seen`)."""
    deadline = time.monotonic() + 60
    while want not in seen:
        assert time.monotonic() < deadline, f"{want} never came; got {seen[-20:]}"
        seen += [(e.type.value, e.name) for e in h.get_new_events()]
        time.sleep(0.05)


def test_watch_dir_events(sb: Sandbox) -> None:
    sb.files.make_dir("/home/user/w")
    h = sb.files.watch_dir("/home/user/w")
    sb.files.write("/home/user/w/a.txt", "x")
    sb.commands.run(
        "cd /home/user/w && echo more >> a.txt && chmod 600 a.txt && mv a.txt b.txt && rm b.txt"
    )
    seen: list[tuple[str, str]] = []
    _until(h, ("remove", "b.txt"), seen)
    for event in [
        ("create", "a.txt"),
        ("write", "a.txt"),
        ("chmod", "a.txt"),
        ("rename", "a.txt"),
        ("create", "b.txt"),
    ]:
        assert event in seen
    assert GAP not in seen
    h.stop()
    with pytest.raises(SandboxException):
        h.get_new_events()


def test_watch_dir_recursive_follows_new_folders(sb: Sandbox) -> None:
    sb.files.make_dir("/home/user/r")
    flat = sb.files.watch_dir("/home/user/r")
    deep = sb.files.watch_dir("/home/user/r", recursive=True)
    sb.commands.run("mkdir /home/user/r/d")
    seen: list[tuple[str, str]] = []
    _until(deep, ("create", "d"), seen)  # the new folder is watched once this arrives
    sb.commands.run("touch /home/user/r/d/inner")
    _until(deep, ("create", "d/inner"), seen)
    flat_seen = [(e.type.value, e.name) for e in flat.get_new_events()]
    assert ("create", "d") in flat_seen
    assert not any(name.startswith("d/") for _, name in flat_seen)
    flat.stop()
    deep.stop()


def test_watch_outside_the_workspace_or_through_a_symlink_is_refused(sb: Sandbox) -> None:
    sb.commands.run("ln -s /etc /home/user/etc-link")
    for path in ("/etc", "/home/user/../../etc", "/home/user/etc-link", "/proc/self"):
        with pytest.raises(SandboxException):
            sb.files.watch_dir(path)
    with pytest.raises(SandboxException):
        sb.files.watch_dir("/home/user/missing")


def test_a_flood_of_files_is_bounded_and_marked(sb: Sandbox) -> None:
    """100k new files: the watcher keeps a bounded buffer and marks the gap; the sandbox
    and the server stay responsive."""
    sb.files.make_dir("/home/user/many")
    h = sb.files.watch_dir("/home/user/many")
    sb.commands.run("cd /home/user/many && seq 1 100000 | xargs touch", timeout=300)
    seen: list[tuple[str, str]] = []
    _until(h, GAP, seen)
    assert len(seen) <= 10_001
    assert sb.commands.run("ls /home/user/many | wc -l").stdout == "100000\n"
    sb.files.write("/home/user/many/after", "x")  # the watch still works after the flood
    _until(h, ("create", "after"), seen)
    h.stop()


def test_symlink_loops_and_too_many_folders(sb: Sandbox) -> None:
    """A recursive watch never descends symlinks (a loop is just an entry) and watches at most
    its cap of folders: past it, the gap marker says events may be missing."""
    sb.commands.run(
        "mkdir -p /home/user/t/a && ln -s .. /home/user/t/a/up && ln -s . /home/user/t/self"
    )
    h = sb.files.watch_dir("/home/user/t", recursive=True)
    sb.commands.run("touch /home/user/t/a/f")
    seen: list[tuple[str, str]] = []
    _until(h, ("create", "a/f"), seen)
    assert not any("up/" in name or "self/" in name for _, name in seen)
    sb.commands.run("cd /home/user/t && mkdir $(seq -f 'd%g' 1 1100)")
    _until(h, GAP, seen)
    assert sb.commands.run("echo alive").stdout == "alive\n"
    h.stop()


def test_newer_watch_options_are_refused_by_name(sb: Sandbox, srv: ServerThread) -> None:
    """include_entry / allow_network_mounts (envd 0.6.3+): the SDK refuses them for the envd
    we announce; a client sending them anyway is refused naming the option, not ignored."""
    headers = {
        "Content-Type": "application/json",
        "E2b-Sandbox-Id": sb.sandbox_id,
        "X-Access-Token": sb._envd_access_token or "",
    }
    for option, name in (("includeEntry", "include_entry"), ("allowNetworkMounts", "allow_")):
        r = httpx.post(
            f"{srv.url}/filesystem.Filesystem/CreateWatcher",
            json={"path": "/home/user", option: True},
            headers=headers,
        )
        assert r.status_code == 501 and name in r.json()["message"], r.text


def test_watchers_per_sandbox_are_capped(sb: Sandbox) -> None:
    handles = [sb.files.watch_dir("/home/user") for _ in range(16)]
    with pytest.raises(SandboxException, match="16"):
        sb.files.watch_dir("/home/user")
    for h in handles:
        h.stop()
    sb.files.watch_dir("/home/user").stop()


async def test_watch_dir_async(srv: ServerThread) -> None:
    box = await AsyncSandbox.create(timeout=60)
    try:
        await box.files.make_dir("/home/user/aw")
        got: list[tuple[str, str]] = []
        seen = asyncio.Event()

        def on_event(e: FilesystemEvent) -> None:
            got.append((e.type.value, e.name))
            if ("remove", "sub/x") in got:
                seen.set()

        h = await box.files.watch_dir("/home/user/aw", on_event=on_event, recursive=True)
        await box.commands.run("mkdir /home/user/aw/sub")
        await box.files.write("/home/user/aw/top.txt", "t")
        deadline = time.monotonic() + 30
        while ("create", "sub") not in got:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        await box.commands.run("echo x > /home/user/aw/sub/x && rm /home/user/aw/sub/x")
        await asyncio.wait_for(seen.wait(), 30)
        assert ("create", "top.txt") in got and ("create", "sub/x") in got
        await h.stop()
        with pytest.raises(SandboxException):
            await box.files.watch_dir("/etc", on_event=on_event)
        # the watched folder going away ends the watch cleanly
        await box.files.make_dir("/home/user/doomed")
        ended: asyncio.Future[Exception | None] = asyncio.get_running_loop().create_future()
        await box.files.watch_dir(
            "/home/user/doomed", on_event=lambda _: None, on_exit=ended.set_result
        )
        await box.commands.run("rm -r /home/user/doomed")
        assert await asyncio.wait_for(ended, 30) is None
    finally:
        await box.kill()
