# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""Background processes started with `spawn`."""

from __future__ import annotations

import signal

import pytest

from sandbox.errors import FileNotFound, InvalidArgument
from sandbox.guest.procs import RING
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    eventually,
    guest,
    guest_root,
    process_gone,
)


async def test_lifecycle(client: RpcClient) -> None:
    handle = await client.spawn("echo started; echo oops >&2; exec sleep 100", env={"A": "1"})
    out = b""

    async def has_output() -> bool:
        nonlocal out
        out, _ = await client.proc_read(handle)
        return b"oops" in out

    await eventually(has_output)
    assert out == b"started\noops\n"  # stdout and stderr merged
    st = await client.proc_poll(handle)
    assert st.running and st.exit_code is None and st.handle == handle and st.pid > 0
    assert [p.handle for p in await client.proc_list()] == [handle]
    await client.proc_kill(handle)

    async def stopped() -> bool:
        return not (await client.proc_poll(handle)).running

    await eventually(stopped)
    st = await client.proc_poll(handle)
    assert st.signal == signal.SIGTERM and st.exit_code == 128 + signal.SIGTERM
    assert process_gone(st.pid)


async def test_read_with_offsets(client: RpcClient) -> None:
    handle = await client.spawn(["sh", "-c", "printf abcdef"])

    async def finished() -> bool:
        return (await client.proc_poll(handle)).output_end == 6

    await eventually(finished)
    assert await client.proc_read(handle, 0) == (b"abcdef", 6)
    assert await client.proc_read(handle, 4) == (b"ef", 6)
    assert await client.proc_read(handle, 6) == (b"", 6)
    st = await client.proc_poll(handle)
    assert st.exit_code == 0 or st.running  # output can end just before the exit is seen


async def test_ring_keeps_the_newest_output(client: RpcClient) -> None:
    total = 3 * RING
    handle = await client.spawn(f"head -c {total} /dev/zero | tr '\\0' a; printf END")

    async def done() -> bool:
        st = await client.proc_poll(handle)
        return not st.running and st.output_end == total + 3

    await eventually(done)
    data, offset = await client.proc_read(handle, 0)
    # Offset 0 left the ring long ago: we get the oldest bytes still kept.
    assert offset - len(data) == total + 3 - RING
    assert len(data) == RING and data.endswith(b"aEND")


async def test_kill_reaches_the_whole_group(client: RpcClient) -> None:
    handle = await client.spawn("sleep 100 & echo $!; wait")
    pid = 0

    async def child_pid() -> bool:
        nonlocal pid
        out, _ = await client.proc_read(handle)
        pid = int(out) if out.strip() else 0
        return pid > 0

    await eventually(child_pid)
    await client.proc_kill(handle, signal.SIGKILL)
    await eventually(lambda: process_gone(pid))


async def test_errors(client: RpcClient) -> None:
    with pytest.raises(FileNotFound):
        await client.proc_poll("p999")
    with pytest.raises(FileNotFound):
        await client.spawn(["/no/such/program"])
    handle = await client.spawn("sleep 100")
    with pytest.raises(InvalidArgument):
        await client.proc_kill(handle, 12345)
    await client.proc_kill(handle, signal.SIGKILL)
