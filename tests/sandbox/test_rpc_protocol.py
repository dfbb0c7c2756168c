# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""Handshake, transports, malformed input and connection loss."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import struct
from pathlib import Path

import pytest

from sandbox.errors import ConnectionLost, ProtocolError
from sandbox.guest.wire import PROTOCOL_VERSION, WINDOW, encode_header
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    eventually,
    guest,
    guest_root,
)


def frame(header: dict[str, object], payload: bytes = b"") -> bytes:
    return encode_header(header, len(payload)) + payload


async def raw_connect(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_unix_connection(str(path))


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, object], bytes]:
    hlen, plen = struct.unpack("!II", await reader.readexactly(8))
    header = json.loads(await reader.readexactly(hlen))
    return header, await reader.readexactly(plen)


async def test_handshake_and_info(client: RpcClient, guest: GuestProcess) -> None:
    info = await client.info()
    assert info["protocol"] == PROTOCOL_VERSION
    assert info["workspace"] == str(guest.workspace)
    assert info["uid"] == os.getuid() and info["gid"] == os.getgid()
    assert isinstance(info["playwright"], bool) and info["python"].count(".") == 2
    await client.ping()
    assert stat_mode(guest.socket) == 0o666


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


async def test_guest_refuses_another_version(guest: GuestProcess, client: RpcClient) -> None:
    reader, writer = await raw_connect(guest.socket)
    writer.write(frame({"t": "hello", "v": PROTOCOL_VERSION + 98}))
    header, _ = await read_frame(reader)
    assert header["t"] == "error" and header["code"] == "protocol"
    assert "version mismatch" in str(header["message"])
    assert await reader.read() == b""  # and it hung up
    writer.close()
    await client.ping()  # the guest itself carries on


async def test_client_refuses_another_version(guest_root: Path) -> None:
    path = guest_root / "fake.sock"

    async def fake_guest(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_frame(reader)
        writer.write(frame({"t": "hello", "v": PROTOCOL_VERSION + 1}))
        await writer.drain()
        await reader.read()
        writer.close()

    server = await asyncio.start_unix_server(fake_guest, str(path))
    try:
        with pytest.raises(ProtocolError, match="version mismatch"):
            await RpcClient.connect(path, timeout=10)
    finally:
        server.close()
        await server.wait_closed()


async def test_connect_waits_for_the_guest_to_start(guest_root: Path) -> None:
    sock = guest_root / "rpc.sock"
    pending = asyncio.ensure_future(RpcClient.connect(sock, timeout=60))
    await asyncio.sleep(0.05)
    assert not pending.done()
    g = GuestProcess(guest_root)
    try:
        c = await pending
        await c.ping()
        await c.aclose()
    finally:
        g.stop()


async def test_connect_gives_up(guest_root: Path) -> None:
    with pytest.raises(ConnectionLost, match="did not accept"):
        await RpcClient.connect(guest_root / "nobody.sock", timeout=0.05)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_tcp_needs_the_right_token(guest_root: Path) -> None:
    token = "t0k3n-" + "x" * 26
    (guest_root / "token").write_text(token + "\n")
    port = free_port()
    g = GuestProcess(
        guest_root, "--tcp", f"127.0.0.1:{port}", "--token-file", str(guest_root / "token")
    )
    try:
        c = await RpcClient.connect_tcp("127.0.0.1", port, token=token, timeout=30)
        assert (await c.exec("echo tcp")).stdout == "tcp\n"
        await c.aclose()
        with pytest.raises(ProtocolError, match="token"):
            await RpcClient.connect_tcp("127.0.0.1", port, token="wrong-token-000000", timeout=30)
        # No hello at all: nothing but a refusal comes back.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "id"}}))
        header, _ = await read_frame(reader)
        assert header["t"] == "error" and header["id"] == 0
        writer.close()
        assert g.alive()
    finally:
        g.stop()


MALFORMED = {
    "garbage": b"\xff" * 64,
    "huge-header": struct.pack("!II", 1 << 30, 0),
    "huge-payload": struct.pack("!II", 2, 1 << 30) + b"{}",
    "zero-header": struct.pack("!II", 0, 0),
    "not-json": struct.pack("!II", 5, 0) + b"{nope",
    "not-object": struct.pack("!II", 3, 0) + b"123",
    "list-header": struct.pack("!II", 2, 0) + b"[]",
    "no-type": struct.pack("!II", 2, 0) + b"{}",
    "call-before-hello": frame({"t": "call", "id": 1, "m": "ping", "a": {}}),
    "truncated": frame({"t": "hello", "v": 1})[:-3],
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
async def test_malformed_input_before_hello(guest: GuestProcess, name: str) -> None:
    reader, writer = await raw_connect(guest.socket)
    writer.write(MALFORMED[name])
    try:
        await writer.drain()
        writer.write_eof()
        await asyncio.wait_for(reader.read(), 30)  # the guest answers or hangs up; never crashes
    except ConnectionError:
        pass  # it hung up first
    writer.close()
    c = await RpcClient.connect(guest.socket, timeout=30)
    assert (await c.exec("echo alive")).stdout == "alive\n"
    await c.aclose()
    assert guest.alive()


AFTER_HELLO = {
    "bad-id": frame({"t": "call", "id": "one", "m": "ping"}),
    "negative-id": frame({"t": "call", "id": -1, "m": "ping"}),
    "unknown-type": frame({"t": "bogus", "id": 1}),
    "bad-credit": frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "sleep 1"}})
    + frame({"t": "credit", "id": 1, "n": -5}),
    # exec does not read its input stream: the frames pile up until the window is exceeded.
    "window-overrun": frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "sleep 5"}})
    + b"".join(
        frame({"t": "data", "id": 1}, b"z" * (1 << 20)) for _ in range(WINDOW // (1 << 20) + 2)
    ),
    "garbage-later": b"\x00" * 7 + b"\xff" * 100,
}


@pytest.mark.parametrize("name", sorted(AFTER_HELLO))
async def test_malformed_input_after_hello(guest: GuestProcess, name: str) -> None:
    reader, writer = await raw_connect(guest.socket)
    writer.write(frame({"t": "hello", "v": PROTOCOL_VERSION}))
    header, _ = await read_frame(reader)
    assert header["t"] == "hello"
    writer.write(AFTER_HELLO[name])
    try:
        await writer.drain()
        await asyncio.wait_for(reader.read(), 30)  # the guest closes this connection
    except ConnectionError:
        pass
    writer.close()
    c = await RpcClient.connect(guest.socket, timeout=30)
    assert (await c.exec("echo alive")).stdout == "alive\n"
    assert await c.list() == []  # the overrun upload left no temp file behind
    await c.aclose()


async def test_unknown_method_is_a_call_error(client: RpcClient) -> None:
    from sandbox.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="unknown method"):
        await client._call("no_such_method")
    await client.ping()


async def test_connection_loss_fails_every_pending_call(guest: GuestProcess) -> None:
    c = await RpcClient.connect(guest.socket, timeout=30)
    kernel = int(str((await c.python("import os; os.getpid()")).result_repr))
    calls: list[asyncio.Future[object]] = [
        asyncio.ensure_future(c.exec(f"echo $$ > pid{i}; exec sleep 100")) for i in range(3)
    ]
    calls.append(asyncio.ensure_future(c.python("import time; time.sleep(100)")))

    async def started() -> bool:
        return sum(f.size > 0 for f in await c.list()) == 3

    await eventually(started)
    pids = [int((guest.workspace / f"pid{i}").read_text()) for i in range(3)] + [kernel]
    os.kill(guest.pid, signal.SIGKILL)
    try:
        for call in calls:
            with pytest.raises(ConnectionLost):
                await asyncio.wait_for(call, 30)
        assert c.closed
        with pytest.raises(ConnectionLost):
            await c.ping()
        await c.aclose()
    finally:
        for pid in pids:  # the SIGKILLed guest could not clean up its children
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
