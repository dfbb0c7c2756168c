# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""Directory watches (`watch`, guest/watch.py): over the RPC against the guest subprocess
(inotify), and the polling fallback on its own; hostile guest batches are refused."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any, cast

import pytest

from sandbox.errors import PathNotAllowed, ProtocolError, SandboxError
from sandbox.guest import watch as guest_watch
from sandbox.guest.paths import Workspace
from sandbox.rpc import RpcClient
from sandbox.watch import parse
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    guest,
    guest_root,
)


def _stream(client: RpcClient, path: str, recursive: bool = False) -> AsyncGenerator[bytes, None]:
    return cast(
        AsyncGenerator[bytes, None],
        client._stream("watch", {"path": path, "recursive": recursive}, None),
    )


async def _collect(stream: AsyncGenerator[bytes, None], want: list[str]) -> list[list[str]]:
    got: list[list[str]] = []
    async with asyncio.timeout(30):  # a hang guard, not a performance bar
        while not all(w in {f"{k}:{n}" for k, n in got} for w in want):
            got += json.loads(await anext(stream))["events"]
    return got


async def test_inotify_events_over_the_rpc(client: RpcClient, guest: GuestProcess) -> None:
    ws = guest.workspace
    (ws / "w").mkdir()
    stream = _stream(client, "w", recursive=True)
    assert json.loads(await anext(stream)) == {"events": [], "dropped": 0}  # armed
    (ws / "w" / "a").write_text("x")
    (ws / "w" / "sub").mkdir()
    await _collect(stream, ["create:a", "create:sub"])
    (ws / "w" / "sub" / "b").write_text("y")
    os.rename(ws / "w" / "a", ws / "w" / "c")
    got = await _collect(stream, ["create:sub/b", "rename:a", "create:c"])
    await stream.aclose()
    assert ["write", "sub/b"] in got  # the new folder was watched as soon as it appeared


async def test_refused_outside_the_workspace(client: RpcClient, guest: GuestProcess) -> None:
    os.symlink("/etc", guest.workspace / "link")
    for path in ("/etc", "link", "../x"):
        with pytest.raises(PathNotAllowed):
            await anext(_stream(client, path))
    (guest.workspace / "f").write_text("x")
    with pytest.raises(SandboxError):
        await anext(_stream(client, "f"))


class _Sink:
    """Stands in for a call's stream in the polling test (it only needs `send_stream`)."""

    id = 1

    def __init__(self) -> None:
        self.batches: list[dict[str, Any]] = []

    async def send_stream(self, header: dict[str, Any], payload: bytes) -> None:
        self.batches.append(json.loads(payload))


async def test_polling_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest_watch, "POLL_INTERVAL", 0.05)
    (tmp_path / "d").mkdir()
    (tmp_path / "gone").write_text("x")
    (tmp_path / "loop").symlink_to(".")
    ws = Workspace(str(tmp_path))
    sink = _Sink()
    task = asyncio.ensure_future(guest_watch._poll(ws, [], True, sink))  # type: ignore[arg-type]
    try:
        async with asyncio.timeout(30):
            while not sink.batches:
                await asyncio.sleep(0.01)
            (tmp_path / "d" / "new").write_text("x")
            (tmp_path / "gone").unlink()
            os.chmod(tmp_path / "d", 0o700)
            while True:
                seen = {tuple(e) for b in sink.batches for e in b["events"]}
                if {("create", "d/new"), ("remove", "gone"), ("chmod", "d")} <= seen:
                    break
                await asyncio.sleep(0.02)
        assert not any(name.startswith("loop/") for _, name in seen)
    finally:
        task.cancel()
        ws.close()


def test_pending_events_are_bounded() -> None:
    b = guest_watch.Batcher()
    for i in range(guest_watch.MAX_PENDING + 10):
        b.add("create", str(i))
    first = json.loads(b.take())
    assert len(first["events"]) == guest_watch.BATCH_MAX and first["dropped"] == 10


@pytest.mark.parametrize(
    "payload",
    [
        b"not json",
        b"[]",
        b'{"events": [["exec", "x"]]}',
        b'{"events": [["create", 1]]}',
        b'{"events": [], "dropped": -1}',
        json.dumps({"events": [["create", "x" * 5000]]}).encode(),
    ],
)
def test_hostile_batches_are_refused(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        parse(payload)


def test_walks_and_watches_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recursive watch looks at a bounded number of entries and watches a bounded number of
    folders; past either bound the batch says events may be missing."""
    for i in range(30):
        (tmp_path / f"f{i}").write_text("")
        (tmp_path / f"d{i}").mkdir()
    ws = Workspace(str(tmp_path))
    try:
        for name, value in (("MAX_SCAN", 10), ("MAX_WATCHES", 5)):
            with monkeypatch.context() as m:
                m.setattr(guest_watch, name, value)
                out = guest_watch.Batcher()
                watcher = guest_watch.Inotify(ws, [], True, out)
                try:
                    watcher.add_tree([])
                    assert out.dropped >= 1, name
                    assert len(watcher.dirs) <= min(value, 31)
                finally:
                    watcher.close()
    finally:
        ws.close()
