# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import AsyncIterator

import pytest

from sandbox.errors import (
    FileExists,
    FileNotFound,
    InvalidArgument,
    IsADirectory,
    LimitExceeded,
    NotADirectory,
)
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    guest,
    guest_root,
)


async def test_write_read_binary(client: RpcClient, guest: GuestProcess) -> None:
    data = bytes(range(256)) * 3
    await client.write("deep/er/bin.dat", data, mode=0o600)
    assert await client.read("deep/er/bin.dat") == data
    assert await client.read(f"{guest.workspace}/deep/er/bin.dat") == data
    on_disk = guest.workspace / "deep/er/bin.dat"
    assert on_disk.read_bytes() == data
    assert stat.S_IMODE(on_disk.stat().st_mode) == 0o600
    await client.write("empty", b"")
    assert await client.read("empty") == b""


async def test_write_is_atomic_and_leaves_no_temp(client: RpcClient, guest: GuestProcess) -> None:
    await client.write("f.txt", b"old")
    inode = (guest.workspace / "f.txt").stat().st_ino
    await client.write("f.txt", b"new" * 1_000_000)  # > 1 chunk: the streamed path
    assert (guest.workspace / "f.txt").stat().st_ino != inode  # replaced by rename
    assert await client.read("f.txt") == b"new" * 1_000_000
    assert sorted(os.listdir(guest.workspace)) == ["f.txt"]


async def test_failed_upload_leaves_nothing(client: RpcClient, guest: GuestProcess) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100
        raise RuntimeError("source broke")

    with pytest.raises(RuntimeError, match="source broke"):
        await client.upload("u.bin", broken())
    await client.ping()
    assert await client.list() == []


async def test_100mb_round_trip(client: RpcClient) -> None:
    data = os.urandom(100 << 20)
    want = hashlib.sha256(data).hexdigest()

    async def chunks() -> AsyncIterator[bytes]:
        view = memoryview(data)
        for i in range(0, len(data), 3 << 20):  # odd sizes: the client re-chunks
            yield bytes(view[i : i + (3 << 20)])

    await client.upload("big.bin", chunks())
    assert await client.sha256("big.bin") == want
    h = hashlib.sha256()
    n = 0
    async for chunk in client.download("big.bin"):
        assert len(chunk) <= 1 << 20
        h.update(chunk)
        n += len(chunk)
    assert n == len(data) and h.hexdigest() == want
    await client.write("big2.bin", data)  # write() of a big buffer streams too
    assert await client.sha256("big2.bin") == want


async def test_slow_reader_does_not_make_the_guest_buffer(
    client: RpcClient, guest: GuestProcess
) -> None:
    await client.exec("head -c 200000000 /dev/zero > big")

    def rss() -> int:
        with open(f"/proc/{guest.pid}/status") as f:
            line = next(x for x in f if x.startswith("VmRSS:"))
        return int(line.split()[1]) * 1024

    before = rss()
    stream = client.download("big")
    first = await anext(stream)
    for _ in range(50):  # give the guest every chance to read ahead
        await client.ping()
    grown = rss() - before
    await stream.aclose()  # type: ignore[attr-defined]
    assert len(first) == 1 << 20
    assert grown < 64 << 20, f"guest grew by {grown} bytes for a 200 MB file"
    assert (await client.exec("echo ok")).stdout == "ok\n"


async def test_read_caps_and_download_does_not(client: RpcClient) -> None:
    await client.exec("truncate -s 65M big")
    with pytest.raises(LimitExceeded, match="download"):
        await client.read("big")
    total = 0
    async for chunk in client.download("big"):
        total += len(chunk)
    assert total == 65 << 20


async def test_list_stat_mkdir_move_remove(client: RpcClient) -> None:
    await client.mkdir("a/b/c")
    await client.write("a/one.txt", b"1")
    await client.write("a/b/two.txt", b"22")
    assert [f.path for f in await client.list()] == ["a"]
    infos = await client.list("a", recursive=True)
    assert [f.path for f in infos] == ["a/b", "a/b/c", "a/b/two.txt", "a/one.txt"]
    st = await client.stat("a/b/two.txt")
    assert (st.size, st.is_dir, st.is_symlink, st.mode) == (2, False, False, 0o644)
    assert (await client.stat(".")).is_dir
    await client.move("a/one.txt", "a/b/c/moved.txt")
    assert await client.read("a/b/c/moved.txt") == b"1"
    with pytest.raises(FileNotFound):
        await client.stat("a/one.txt")
    with pytest.raises(InvalidArgument, match="not empty"):
        await client.remove("a")
    await client.remove("a", recursive=True)
    assert await client.list() == []


async def test_error_mapping(client: RpcClient) -> None:
    await client.write("file", b"x")
    await client.mkdir("dir")
    with pytest.raises(FileNotFound):
        await client.read("missing")
    with pytest.raises(IsADirectory):
        await client.read("dir")
    with pytest.raises(IsADirectory):
        await client.write("dir", b"x")
    with pytest.raises(NotADirectory):
        await client.read("file/inner")
    with pytest.raises(NotADirectory):
        await client.list("file")
    with pytest.raises(FileExists):
        await client.mkdir("dir", parents=False)
    with pytest.raises(FileNotFound):
        await client.mkdir("no/such", parents=False)
    with pytest.raises(InvalidArgument):
        await client.remove(".")
    with pytest.raises(InvalidArgument):
        await client.read("")
    with pytest.raises(InvalidArgument):
        await client.write("bad", b"", mode=0o77777)


async def test_tar_stores_symlinks_as_links(client: RpcClient, guest: GuestProcess) -> None:
    await client.write("proj/src/main.py", b"print(1)\n")
    await client.write("proj/empty", b"")
    await client.write("proj/big.bin", b"z" * 3_000_000)
    os.symlink("/etc/passwd", guest.workspace / "proj/passwd-link")
    raw = b"".join([c async for c in client.tar("proj")])
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert set(members) == {"src", "src/main.py", "empty", "big.bin", "passwd-link"}
        assert members["src"].isdir()
        link = members["passwd-link"]
        assert link.issym() and link.linkname == "/etc/passwd" and link.size == 0
        main = tf.extractfile("src/main.py")
        assert main is not None and main.read() == b"print(1)\n"
        big = tf.extractfile("big.bin")
        assert big is not None and big.read() == b"z" * 3_000_000
