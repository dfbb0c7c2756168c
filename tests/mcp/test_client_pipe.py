# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""`pipe`: a process in the sandbox with its stdin and stdout as the call's streams."""

from __future__ import annotations

import pytest

from sandbox.errors import FileNotFound
from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    eventually,
    guest,
    guest_root,
    process_gone,
)

ECHO_LINES = (
    "import sys\n"
    "for line in sys.stdin:\n"
    "    sys.stdout.write(line.upper()); sys.stdout.flush()\n"
    "sys.stderr.write('bye\\n')\n"
)


async def _read_until(pipe: object, want: bytes) -> bytes:
    out = b""
    while want not in out:
        chunk = await pipe.read()  # type: ignore[attr-defined]
        assert chunk, f"EOF before {want!r}; got {out!r}"
        out += chunk
    return out


async def test_round_trips_and_exit(client: RpcClient) -> None:
    pipe = await client.pipe(["python3", "-c", ECHO_LINES])
    await pipe.write(b"hello\n")
    assert await _read_until(pipe, b"\n") == b"HELLO\n"
    big = b"x" * 300_000 + b"\n"  # more than one window of credit each way
    await pipe.write(big)
    assert await _read_until(pipe, b"\n") == big.upper()
    pipe.close_stdin()
    assert await pipe.read() == b""
    assert pipe.result is not None
    assert pipe.result["exit_code"] == 0 and "bye" in pipe.result["stderr"]
    await pipe.aclose()


async def test_close_kills_the_process(client: RpcClient) -> None:
    pipe = await client.pipe("echo $$; exec sleep 1000")
    pid = int((await _read_until(pipe, b"\n")).strip())
    await pipe.aclose()

    async def gone() -> bool:
        return process_gone(pid)

    await eventually(gone)


async def test_missing_command_is_a_tool_error(client: RpcClient) -> None:
    pipe = await client.pipe(["/no/such/server"])
    with pytest.raises(FileNotFound):
        await pipe.read()
    await pipe.aclose()
