# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
from __future__ import annotations

import asyncio
import signal

import pytest

from sandbox.errors import InvalidArgument, NotADirectory
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    eventually,
    guest,
    guest_root,
    process_gone,
)


async def test_exit_code_and_streams(client: RpcClient) -> None:
    r = await client.exec("echo out; echo err >&2; exit 3")
    assert (r.exit_code, r.stdout, r.stderr) == (3, "out\n", "err\n")
    assert not r.timed_out and not r.truncated and r.signal is None and not r.oom_killed
    assert not r.ok and r.duration > 0


async def test_argv_is_not_shell_parsed(client: RpcClient) -> None:
    r = await client.exec(["printf", "%s|", "a b", "$HOME", ";"])
    assert r.stdout == "a b|$HOME|;|"


async def test_missing_program_is_127(client: RpcClient) -> None:
    r = await client.exec(["/nonexistent/prog"])
    assert r.exit_code == 127
    assert "/nonexistent/prog" in r.stderr


async def test_killed_by_signal(client: RpcClient) -> None:
    r = await client.exec("kill -TERM $$")
    assert r.signal == signal.SIGTERM
    assert r.exit_code == 128 + signal.SIGTERM


async def test_binary_output_is_exact(client: RpcClient) -> None:
    r = await client.exec(["printf", "\\000\\377abc"])
    assert r.stdout_bytes == b"\x00\xffabc"
    assert r.stdout == "\x00\ufffdabc"


async def test_stdin_env_and_cwd(client: RpcClient, guest: GuestProcess) -> None:
    r = await client.exec("cat; echo $FOO; pwd; echo $HOME", stdin=b"in\n", env={"FOO": "bar"})
    ws = str(guest.workspace)
    assert r.stdout == f"in\nbar\n{ws}\n{ws}\n"
    await client.mkdir("sub/dir")
    assert (await client.exec("pwd", cwd="sub/dir")).stdout == f"{ws}/sub/dir\n"
    with pytest.raises(NotADirectory):
        await client.write("f", b"")
        await client.exec("pwd", cwd="f")


async def test_guest_python_variables_do_not_leak(guest_root) -> None:  # type: ignore[no-untyped-def]
    g = GuestProcess(guest_root, env={"PYTHONPATH": "/leak", "PYTHONSAFEPATH": "1", "KEEP": "1"})
    try:
        c = await RpcClient.connect(g.socket, timeout=30)
        r = await c.exec("env")
        await c.aclose()
    finally:
        g.stop()
    assert "KEEP=1" in r.stdout.splitlines()
    assert "PYTHON" not in r.stdout
    assert "TERM=dumb" in r.stdout.splitlines()


async def test_bad_arguments(client: RpcClient) -> None:
    with pytest.raises(InvalidArgument):
        await client.exec([])
    with pytest.raises(InvalidArgument):
        await client.exec("true", output_limit=-1)


async def test_output_streams_while_running(client: RpcClient) -> None:
    # The command waits for a file the callback creates when it sees the first line: this
    # only finishes if output reaches us before the command exits.
    seen: list[tuple[str, bytes]] = []

    async def on_output(stream: str, chunk: bytes) -> None:
        seen.append((stream, chunk))
        if b"ready" in chunk:
            await client.write("go", b"")

    r = await asyncio.wait_for(
        client.exec(
            "echo ready; while [ ! -e go ]; do sleep 0.01; done; echo done >&2",
            on_output=on_output,
        ),
        60,
    )
    assert r.exit_code == 0 and r.stderr == "done\n"
    assert seen[0] == ("stdout", b"ready\n")


async def test_order_per_stream_is_preserved(client: RpcClient) -> None:
    chunks: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
    r = await client.exec(
        "i=0; while [ $i -lt 3000 ]; do echo $i; echo e$i >&2; i=$((i+1)); done",
        on_output=lambda s, c: chunks[s].append(c),
    )
    assert r.stdout == "".join(f"{i}\n" for i in range(3000))
    assert r.stderr == "".join(f"e{i}\n" for i in range(3000))
    assert b"".join(chunks["stdout"]) == r.stdout_bytes
    assert b"".join(chunks["stderr"]) == r.stderr_bytes


async def test_output_cap_keeps_first_bytes_and_drains(client: RpcClient) -> None:
    # 20 MB of output against a 1000-byte cap: the command must still finish (pipes drained).
    r = await client.exec("head -c 20000000 /dev/zero | tr '\\0' x; echo tail", output_limit=1000)
    assert r.exit_code == 0 and r.truncated
    head, _, marker = r.stdout.partition("\n[corral: output truncated")
    assert head == "x" * 1000
    assert "after 1000 bytes" in marker
    assert "tail" not in r.stdout


async def test_output_cap_counts_both_streams(client: RpcClient) -> None:
    r = await client.exec("printf aaaa; sleep 0.1; printf bbbbbb >&2", output_limit=6)
    assert r.truncated
    assert r.stdout_bytes == b"aaaa"
    assert r.stderr_bytes.startswith(b"bb\n[corral: output truncated")


async def test_timeout_kills_the_whole_group(client: RpcClient, guest: GuestProcess) -> None:
    r = await client.exec("sleep 100 & echo $! > bg.pid; sleep 100", timeout=0.5)
    assert r.timed_out and r.exit_code == 124 and r.signal == signal.SIGKILL
    pid = int((await client.read("bg.pid")).decode())
    await eventually(lambda: process_gone(pid))


async def test_background_leftovers_do_not_block_exit(client: RpcClient) -> None:
    r = await client.exec("sleep 100 & echo $! > bg.pid; echo main")
    assert r.stdout == "main\n" and r.exit_code == 0
    pid = int((await client.read("bg.pid")).decode())
    assert not process_gone(pid)  # still running on purpose (documented); clean up
    await client.exec(f"kill {pid}")


async def test_cancelling_the_task_kills_the_group(client: RpcClient) -> None:
    task = asyncio.ensure_future(
        client.exec("sleep 100 & echo $! > bg.pid; echo $$ > fg.pid; wait")
    )

    async def started() -> bool:
        return sum(f.size > 0 for f in await client.list() if f.path.endswith(".pid")) == 2

    await eventually(started)
    pids = [int((await client.read(f)).decode()) for f in ("bg.pid", "fg.pid")]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await eventually(lambda: all(process_gone(pid) for pid in pids))
    assert (await client.exec("echo still-serving")).stdout == "still-serving\n"


async def test_concurrent_calls_are_multiplexed(client: RpcClient) -> None:
    # All 20 block until the last one has started: they can only finish if they run at once.
    async def one(i: int) -> str:
        r = await client.exec(
            f"echo {i} > started.{i}; while [ $(ls | grep -c '^started') -lt 20 ]; do sleep 0.01; done; echo {i}"
        )
        return r.stdout

    outs = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), 120)
    assert outs == [f"{i}\n" for i in range(20)]


async def test_oversized_command_is_a_clean_error(client: RpcClient) -> None:
    from sandbox.errors import FileNotFound, LimitExceeded

    with pytest.raises(LimitExceeded):
        await client.exec("echo " + "x" * 200_000)  # one argv string over the kernel's 128 KiB
    with pytest.raises(FileNotFound) as err:
        await client.read("missing/" + "y" * 900_000)
    assert len(str(err.value)) < 10_000  # the message quoting the huge path is cut
    await client.ping()
