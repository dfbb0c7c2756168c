# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""The persistent Python session (a stdlib kernel child of the guest)."""

from __future__ import annotations

import os
import signal

from sandbox.rpc import RpcClient
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    guest,
    guest_root,
)


async def test_state_persists_and_trailing_expression_is_returned(client: RpcClient) -> None:
    r = await client.python("x = 20\nprint('hello')\nx + 1")
    assert (r.stdout, r.result_repr, r.error, r.timed_out) == ("hello\n", "21", None, False)
    r = await client.python("x * 2")
    assert r.result_repr == "40"
    r = await client.python("_ + 1")  # like Jupyter, the last value is `_`
    assert r.result_repr == "41"
    assert (await client.python("y = 1")).result_repr is None
    assert (await client.python("None")).result_repr is None


async def test_output_from_subprocesses_and_stderr(client: RpcClient) -> None:
    r = await client.python(
        "import os, sys\nsys.stderr.write('warn\\n')\nos.system('echo from-a-child')\n"
    )
    assert r.stderr == "warn\n"
    assert r.stdout == "from-a-child\n"
    assert r.result_repr == "0"


async def test_errors_come_back_as_tracebacks(client: RpcClient) -> None:
    r = await client.python("def f():\n    return 1 / 0\nf()")
    assert r.error is not None and "ZeroDivisionError" in r.error and 'File "<cell>"' in r.error
    assert "kernel.py" not in r.error
    r = await client.python("def broken(:\n  pass")
    assert r.error is not None and "SyntaxError" in r.error
    r = await client.python("raise SystemExit(3)")
    assert r.error is not None and "SystemExit" in r.error
    assert (await client.python("1 + 1")).result_repr == "2"  # still alive


async def test_restart_clears_state(client: RpcClient) -> None:
    await client.python("secret = 42")
    await client.python_restart()
    r = await client.python("secret")
    assert r.error is not None and "NameError" in r.error


async def test_timeout_interrupts_and_keeps_state(client: RpcClient) -> None:
    await client.python("kept = 'yes'")
    r = await client.python("while True:\n    pass", timeout=0.5)
    assert r.timed_out and not r.restarted
    assert r.error is not None and "KeyboardInterrupt" in r.error and "state kept" in r.error
    assert (await client.python("kept")).result_repr == "'yes'"


async def test_timeout_restarts_a_kernel_that_ignores_sigint(client: RpcClient) -> None:
    await client.python("lost = 1")
    r = await client.python(
        "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True:\n    time.sleep(0.01)",
        timeout=0.3,
    )
    assert r.timed_out and r.restarted
    assert r.error is not None and "restarted" in r.error
    r = await client.python("lost")
    assert r.error is not None and "NameError" in r.error


async def test_a_kernel_that_dies_is_restarted(client: RpcClient) -> None:
    r = await client.python("import os\nos._exit(7)")
    assert r.restarted and r.error is not None and "exit status 7" in r.error
    assert (await client.python("2 * 3")).result_repr == "6"


async def test_a_kernel_that_dies_leaving_a_process_behind_is_restarted(
    client: RpcClient, guest: GuestProcess
) -> None:
    # The process outlives the kernel in its own session: were the kernel's response pipe
    # inherited, it would hold the pipe open and the session would wait out the timeout.
    r = await client.python(
        "import os\nos.system('setsid sleep 600 >/dev/null 2>&1 & echo $! > sleeper')\nos._exit(3)",
        timeout=60,  # a hang guard
    )
    os.kill(int((guest.workspace / "sleeper").read_text()), signal.SIGKILL)
    assert r.restarted and not r.timed_out and r.error is not None
    assert "exit status 3" in r.error
    assert (await client.python("2 * 3")).result_repr == "6"


async def test_session_survives_reconnect(guest: GuestProcess, client: RpcClient) -> None:
    await client.python("shared = 'across connections'")
    other = await RpcClient.connect(guest.socket, timeout=30)
    try:
        assert (await other.python("shared")).result_repr == "'across connections'"
    finally:
        await other.aclose()


async def test_cwd_is_the_workspace_and_imports_work(
    client: RpcClient, guest: GuestProcess
) -> None:
    await client.write("mymod.py", b"VALUE = 'local module'\n")
    r = await client.python("import os, mymod\n(os.getcwd(), mymod.VALUE)")
    assert r.result_repr == repr((str(guest.workspace), "local module"))


async def test_large_output_and_errors_fit(client: RpcClient) -> None:
    r = await client.python("print('\\x01' * 3_000_000)\nraise ValueError('v' * 2_000_000)")
    assert r.stdout.startswith("\x01" * 1000) and "more bytes of output dropped" in r.stdout
    assert r.error is not None and "ValueError" in r.error
