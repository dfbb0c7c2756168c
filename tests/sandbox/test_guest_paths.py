# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""Every file path resolves strictly inside the workspace: no `..`, no symlink, no race."""

from __future__ import annotations

import asyncio
import os
import threading
from pathlib import Path

import pytest

from sandbox.errors import PathNotAllowed
from sandbox.guest.errors import ToolFailure
from sandbox.guest.paths import Workspace
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    guest,
    guest_root,
)


def test_names_are_split_below_the_root(tmp_path: Path) -> None:
    ws = Workspace(str(tmp_path))
    try:
        assert ws.names("a/./b//c/") == ["a", "b", "c"]
        assert ws.names(f"{tmp_path}/x") == ["x"]
        assert ws.names(str(tmp_path)) == []
        assert ws.names(".") == []
        for bad in ("../x", "a/../../x", "a/..", "/etc/passwd", f"{tmp_path}/../x", "/"):
            with pytest.raises(ToolFailure) as err:
                ws.names(bad)
            assert err.value.code == "path_not_allowed", bad
        with pytest.raises(ToolFailure):
            ws.names(f"{tmp_path}x/y")  # a sibling sharing the prefix is not inside
        with pytest.raises(ToolFailure):
            ws.names("nul\0byte")
    finally:
        ws.close()


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd", "/tmp/x", "..", "a/.."])
async def test_escapes_are_refused(client: RpcClient, path: str) -> None:
    for op in (client.read(path), client.write(path, b"x"), client.stat(path), client.remove(path)):
        with pytest.raises(PathNotAllowed):
            await op


async def test_symlinks_are_never_followed(
    client: RpcClient, guest: GuestProcess, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    ws = guest.workspace
    os.symlink("/etc", ws / "etc-link")
    os.symlink(outside, ws / "dir-link")
    os.symlink(outside / "secret", ws / "file-link")
    (ws / "real").mkdir()
    (ws / "real/inner.txt").write_text("inner")
    os.symlink("inner.txt", ws / "real/inside-link")  # pointing inside: refused all the same

    for path in ("etc-link/passwd", "file-link", "dir-link/secret", "real/inside-link"):
        with pytest.raises(PathNotAllowed):
            await client.read(path)
    with pytest.raises(PathNotAllowed):
        await client.write("dir-link/new", b"x")
    with pytest.raises(PathNotAllowed):
        await client.list("dir-link")
    with pytest.raises(PathNotAllowed):
        await client.mkdir("dir-link/sub")
    with pytest.raises(PathNotAllowed):
        await client.move("real/inner.txt", "dir-link/stolen")
    with pytest.raises(PathNotAllowed):
        _ = [c async for c in client.download("file-link")]
    assert sorted(os.listdir(outside)) == ["secret"]

    # The link itself is visible and removable; its target is untouched.
    st = await client.stat("file-link")
    assert st.is_symlink
    listed = {f.path: f for f in await client.list()}
    assert listed["dir-link"].is_symlink and not listed["dir-link"].is_dir
    await client.remove("dir-link")
    assert (outside / "secret").read_text() == "secret"
    # Writing over a link replaces the link, never the target.
    await client.write("file-link", b"mine")
    assert (outside / "secret").read_text() == "secret"
    assert not (ws / "file-link").is_symlink()


async def test_swapping_a_dir_for_a_symlink_never_escapes(
    client: RpcClient, guest: GuestProcess, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "f").write_text("secret")
    ws = guest.workspace
    (ws / "d").mkdir()
    (ws / "d/f").write_text("inside")
    stop = threading.Event()

    def swapper() -> None:
        # Atomically flip "d" between the real directory and a link to the outside.
        os.symlink(outside, ws / "link-to-outside")
        while not stop.is_set():
            os.rename(ws / "d", ws / "d-real")
            os.rename(ws / "link-to-outside", ws / "d")
            os.rename(ws / "d", ws / "link-to-outside")
            os.rename(ws / "d-real", ws / "d")

    thread = threading.Thread(target=swapper)
    thread.start()
    results: set[bytes] = set()
    try:
        for i in range(300):
            for op in (client.read("d/f"), client.write(f"d/w{i}", b"x", parents=False)):
                try:
                    value = await op
                except PathNotAllowed:
                    continue
                except Exception as exc:  # not-found while "d" is renamed away is fine
                    assert exc.__class__.__name__ in ("FileNotFound", "NotADirectory"), exc
                    continue
                if isinstance(value, bytes):
                    results.add(value)
            await asyncio.sleep(0)
    finally:
        stop.set()
        thread.join()
    assert results <= {b"inside"}
    assert sorted(os.listdir(outside)) == ["f"]
    assert (outside / "f").read_text() == "secret"
