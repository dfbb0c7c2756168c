# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""The guest's synchronous prelude (sandbox/guest/prelude.py): the first exec is served before
asyncio is imported, behaves exactly like a later one, and everything the prelude does not
serve is picked up by the asyncio server without losing a byte."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import struct
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from sandbox.guest.wire import PROTOCOL_VERSION, encode_header
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    eventually,
    guest,
    guest_root,
    process_gone,
)

WHEN = ["first", "later"]


@pytest.fixture(params=WHEN)
def when(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def sb(when: str, guest: GuestProcess) -> AsyncIterator[RpcClient]:
    """A client whose next exec is the guest's first ("first": served by the prelude) or
    comes after one ("later": served by the asyncio server)."""
    c = await RpcClient.connect(guest.socket, timeout=30)
    if when == "later":
        assert (await c.exec("true")).exit_code == 0
    yield c
    await c.aclose()


async def prelude_stats(c: RpcClient) -> dict[str, Any]:
    stats = (await c.info())["prelude"]
    assert isinstance(stats, dict)
    return stats


async def assert_served(c: RpcClient, when: str) -> None:
    """The exec under test was the prelude's (first) and asyncio was not loaded for it."""
    stats = await prelude_stats(c)
    assert stats["execs"] == 1 and stats["asyncio_loaded"] is False
    assert stats["handover"] == "first exec done"


def frame(header: dict[str, object], payload: bytes = b"") -> bytes:
    return encode_header(header, len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> tuple[dict[str, Any], bytes]:
    hlen, plen = struct.unpack("!II", await reader.readexactly(8))
    header = json.loads(await reader.readexactly(hlen))
    return header, await reader.readexactly(plen)


async def raw_hello(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_unix_connection(str(path))
    writer.write(frame({"t": "hello", "v": PROTOCOL_VERSION}))
    header, _ = await read_frame(reader)
    assert header["t"] == "hello"
    return reader, writer


async def results(reader: asyncio.StreamReader, ids: set[int]) -> dict[int, Any]:
    """Read frames until every call in `ids` has its result; stdout per call in 'out'."""
    done: dict[int, Any] = {}
    out: dict[int, bytes] = {}
    while set(done) != ids:
        header, payload = await asyncio.wait_for(read_frame(reader), 30)
        if header["t"] == "data":
            out[header["id"]] = out.get(header["id"], b"") + payload
        elif header["t"] in ("result", "error"):
            done[header["id"]] = {**header, "out": out.get(header["id"], b"")}
    return done


# -- the first exec is the prelude's -------------------------------------------------------
async def test_first_exec_runs_before_asyncio_is_imported(guest: GuestProcess) -> None:
    c = await RpcClient.connect(guest.socket, timeout=30)
    await c.ping()
    r = await c.exec("echo hi; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "hi\n", "err\n")
    stats = await prelude_stats(c)
    assert stats == {
        "execs": 1,
        "pings": 1,
        "asyncio_loaded": False,
        "handover": "first exec done",
    }
    assert (await c.exec("echo second")).stdout == "second\n"
    await c.aclose()


async def test_exit_status_and_streams(sb: RpcClient, when: str) -> None:
    r = await sb.exec("echo out; echo err >&2; kill -TERM $$")
    assert (r.stdout, r.stderr) == ("out\n", "err\n")
    assert r.exit_code == 128 + signal.SIGTERM and r.signal == signal.SIGTERM
    assert not r.timed_out and not r.truncated and not r.oom_killed and r.duration > 0
    if when == "first":
        await assert_served(sb, when)


async def test_output_streams_while_running(sb: RpcClient, when: str, guest: GuestProcess) -> None:
    # The command waits for a file this test creates (on the host, not through the guest)
    # once it has seen the first line: only possible if output arrives before the exit.
    seen: list[tuple[str, bytes]] = []

    def on_output(stream: str, chunk: bytes) -> None:
        seen.append((stream, chunk))
        if b"ready" in chunk:
            (guest.workspace / "go").touch()

    r = await asyncio.wait_for(
        sb.exec(
            "echo ready; while [ ! -e go ]; do sleep 0.01; done; echo done >&2",
            on_output=on_output,
        ),
        60,
    )
    assert r.exit_code == 0 and r.stdout == "ready\n" and r.stderr == "done\n"
    assert seen[0] == ("stdout", b"ready\n")
    if when == "first":
        await assert_served(sb, when)


async def test_stdin_env_and_cwd(sb: RpcClient, when: str, guest: GuestProcess) -> None:
    (guest.workspace / "sub").mkdir()
    big = os.urandom(3 << 20)  # more than a pipe holds: fed as the command reads
    r = await sb.exec(
        "head -c 5; echo; echo $FOO; pwd; echo $HOME; cat | wc -c",
        stdin=b"hello" + big,
        env={"FOO": "bar"},
        cwd="sub",
    )
    ws = str(guest.workspace)
    assert r.stdout == f"hello\nbar\n{ws}/sub\n{ws}\n{len(big)}\n"
    if when == "first":
        await assert_served(sb, when)


async def test_bad_cwd_is_refused_alike(sb: RpcClient, when: str, guest: GuestProcess) -> None:
    from sandbox.errors import FileNotFound, InvalidArgument

    with pytest.raises(FileNotFound, match="no such directory"):
        await sb.exec("pwd", cwd="nowhere")
    with pytest.raises(InvalidArgument):
        await sb.exec("true", output_limit=-1)
    assert (await sb.exec("echo ok")).stdout == "ok\n"


async def test_timeout_kills_the_group(sb: RpcClient, when: str, guest: GuestProcess) -> None:
    r = await sb.exec("sleep 100 & echo $! > bg.pid; sleep 100", timeout=0.5)
    assert r.timed_out and r.exit_code == 124 and r.signal == signal.SIGKILL
    pid = int((guest.workspace / "bg.pid").read_text())
    await eventually(lambda: process_gone(pid))
    if when == "first":
        await assert_served(sb, when)


async def test_cancel_kills_the_group(sb: RpcClient, when: str, guest: GuestProcess) -> None:
    task = asyncio.ensure_future(sb.exec("sleep 100 & echo $! > bg.pid; echo $$ > fg.pid; wait"))
    pids = [guest.workspace / "bg.pid", guest.workspace / "fg.pid"]
    await eventually(lambda: all(p.exists() and p.stat().st_size for p in pids))
    numbers = [int(p.read_text()) for p in pids]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: all(process_gone(pid) for pid in numbers))
    assert (await sb.exec("echo still-serving")).stdout == "still-serving\n"
    if when == "first":
        stats = await prelude_stats(sb)
        assert stats["execs"] == 0 and stats["handover"] == "exec cancelled"


async def test_output_cap_and_drain(sb: RpcClient, when: str) -> None:
    r = await sb.exec("head -c 20000000 /dev/zero | tr '\\0' x; echo tail", output_limit=1000)
    assert r.exit_code == 0 and r.truncated
    head, _, marker = r.stdout.partition("\n[corral: output truncated")
    assert head == "x" * 1000 and "after 1000 bytes" in marker and "tail" not in r.stdout
    if when == "first":
        await assert_served(sb, when)


async def test_output_cap_counts_both_streams(sb: RpcClient, when: str) -> None:
    r = await sb.exec("printf aaaa; sleep 0.1; printf bbbbbb >&2", output_limit=6)
    assert r.truncated and r.stdout_bytes == b"aaaa"
    assert r.stderr_bytes.startswith(b"bb\n[corral: output truncated after 6 bytes]")


async def test_output_beyond_the_window_needs_credit(sb: RpcClient, when: str) -> None:
    # 20 MB is more than the 8 MiB window: the prelude must wait for the client's credit.
    r = await sb.exec("head -c 20000000 /dev/zero", output_limit=32 << 20)
    assert r.exit_code == 0 and not r.truncated and r.stdout_bytes == bytes(20000000)
    if when == "first":
        await assert_served(sb, when)


async def test_missing_and_unexecutable_programs(
    sb: RpcClient, when: str, guest: GuestProcess
) -> None:
    r = await sb.exec(["/nonexistent/prog"])
    assert r.exit_code == 127 and "/nonexistent/prog" in r.stderr and r.signal is None
    (guest.workspace / "plain").write_text("echo no\n")
    r = await sb.exec(["./plain"])
    assert r.exit_code == 126 and "./plain" in r.stderr
    if when == "first":
        stats = await prelude_stats(sb)
        assert stats["execs"] == 1 and stats["handover"] == "first exec done"


# -- handing over ------------------------------------------------------------------------
async def test_second_connection_during_the_first_exec(guest: GuestProcess) -> None:
    a = await RpcClient.connect(guest.socket, timeout=30)
    first = asyncio.ensure_future(
        a.exec("echo started; touch started; while [ ! -e go ]; do sleep 0.01; done")
    )
    await eventually(lambda: (guest.workspace / "started").exists())
    b = await RpcClient.connect(guest.socket, timeout=30)  # the prelude hands over for it
    await b.ping()
    assert not first.done()
    await b.write("go", b"")
    r = await asyncio.wait_for(first, 30)  # the running exec went on under asyncio
    assert r.exit_code == 0 and r.stdout == "started\n"
    stats = await prelude_stats(b)
    assert stats["execs"] == 0 and stats["handover"] == "another connection"
    assert stats["asyncio_loaded"] is False
    await a.aclose()
    await b.aclose()


async def test_second_connection_while_the_first_is_idle(guest: GuestProcess) -> None:
    a = await RpcClient.connect(guest.socket, timeout=30)
    b = await RpcClient.connect(guest.socket, timeout=30)
    assert (await b.exec("echo b")).stdout == "b\n"
    assert (await a.exec("echo a")).stdout == "a\n"
    assert (await prelude_stats(a))["handover"] == "another connection"
    await a.aclose()
    await b.aclose()


async def test_another_call_during_the_first_exec(guest: GuestProcess) -> None:
    c = await RpcClient.connect(guest.socket, timeout=30)
    first = asyncio.ensure_future(c.exec("while [ ! -e go ]; do sleep 0.01; done; echo done"))
    await c.write("go", b"")  # an upload: the prelude hands over before handling it
    assert (await asyncio.wait_for(first, 30)).stdout == "done\n"
    assert (await prelude_stats(c))["handover"] == "call upload"
    await c.aclose()


async def test_pipelined_calls_are_not_lost(guest: GuestProcess) -> None:
    reader, writer = await raw_hello(guest.socket)
    writer.write(
        frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "echo one"}})
        + frame({"t": "call", "id": 2, "m": "ping", "a": {}})
        + frame({"t": "call", "id": 3, "m": "exec", "a": {"command": "cat"}}, b"three")
        + frame({"t": "call", "id": 4, "m": "stat", "a": {"path": "."}})
    )
    got = await results(reader, {1, 2, 3, 4})
    assert got[1]["t"] == "result" and got[1]["out"] == b"one\n"
    assert got[2]["t"] == "result" and got[3]["out"] == b"three"
    assert got[4]["t"] == "result" and got[4]["r"]["is_dir"] is True
    writer.close()


async def test_a_call_split_across_the_handover(guest: GuestProcess) -> None:
    # The second call's first bytes arrive with the first exec: the prelude reads them, and
    # the asyncio server must complete that frame with the rest sent later.
    reader, writer = await raw_hello(guest.socket)
    second = frame({"t": "call", "id": 2, "m": "exec", "a": {"command": "cat"}}, b"x" * 100_000)
    writer.write(frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "echo one"}}))
    writer.write(second[:5000])
    got = await results(reader, {1})
    assert got[1]["out"] == b"one\n"
    writer.write(second[5000:])
    got = await results(reader, {2})
    assert got[2]["t"] == "result" and got[2]["out"] == b"x" * 100_000
    writer.close()


async def test_result_then_call_right_away(guest: GuestProcess) -> None:
    reader, writer = await raw_hello(guest.socket)
    writer.write(frame({"t": "call", "id": 1, "m": "exec", "a": {"command": "echo one"}}))
    writer.write(frame({"t": "call", "id": 2, "m": "exec", "a": {"command": "echo two"}}))
    got = await results(reader, {1, 2})
    assert (got[1]["out"], got[2]["out"]) == (b"one\n", b"two\n")
    writer.close()


async def test_unsupported_first_call_goes_to_the_server(guest: GuestProcess) -> None:
    c = await RpcClient.connect(guest.socket, timeout=30)
    assert await c.list() == []
    stats = await prelude_stats(c)
    assert stats["execs"] == 0 and stats["handover"] == "call list"
    await c.aclose()


async def test_probes_and_refused_hellos_do_not_end_the_prelude(guest: GuestProcess) -> None:
    for _ in range(3):
        reader, writer = await asyncio.open_unix_connection(str(guest.socket))
        writer.close()  # a probe: connect and leave
    reader, writer = await asyncio.open_unix_connection(str(guest.socket))
    writer.write(frame({"t": "hello", "v": PROTOCOL_VERSION + 7}))
    header, _ = await read_frame(reader)
    assert header["t"] == "error" and header["id"] == 0 and "version mismatch" in header["message"]
    assert await reader.read() == b""
    writer.close()
    c = await RpcClient.connect(guest.socket, timeout=30)
    assert (await c.exec("echo hi")).stdout == "hi\n"
    assert (await prelude_stats(c))["execs"] == 1
    await c.aclose()


async def test_a_silent_connection_does_not_block(guest_root: Path) -> None:
    g = GuestProcess(guest_root, "--socket", str(guest_root / "rpc.sock"), "--hello-timeout", "0.3")
    try:
        reader, writer = await asyncio.wait_for(_open_when_up(g.socket), 30)
        assert await asyncio.wait_for(reader.read(), 30) == b""  # dropped after the timeout
        writer.close()
        c = await RpcClient.connect(g.socket, timeout=30)
        assert (await c.exec("echo hi")).stdout == "hi\n"
        stats = await prelude_stats(c)
        assert stats["handover"] == "hello timeout" and stats["execs"] == 0
        await c.aclose()
    finally:
        g.stop()


async def _open_when_up(path: Path) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    while True:
        try:
            return await asyncio.open_unix_connection(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            await asyncio.sleep(0.01)


async def test_sigterm_during_the_first_exec(guest: GuestProcess) -> None:
    c = await RpcClient.connect(guest.socket, timeout=30)
    task = asyncio.ensure_future(c.exec("echo $$ > fg.pid; exec sleep 100"))
    pid_file = guest.workspace / "fg.pid"
    await eventually(lambda: pid_file.exists() and pid_file.stat().st_size > 0)
    pid = int(pid_file.read_text())
    guest.proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(guest.proc.wait, 30) == 0
    await eventually(lambda: process_gone(pid))
    assert not guest.socket.exists()
    with pytest.raises(Exception):  # noqa: B017 - ConnectionLost, whatever the timing
        await asyncio.wait_for(task, 30)
    await c.aclose()
