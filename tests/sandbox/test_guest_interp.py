# ruff: noqa: F811 - the guest fixtures are imported from test_rpc_support by name
"""The code interpreter's contexts (sandbox/guest/interp.py) on a guest subprocess, through
`sandbox.interp.Interpreter`: streaming, rich results, contexts, env, timeouts, hostile cells."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
from typing import Any

import pytest

import sandbox.interp
from sandbox.errors import FileNotFound, InvalidArgument, LimitExceeded
from sandbox.guest.interp import MAX_CONTEXTS, OUTPUT_MAX
from sandbox.interp import Interpreter
from sandbox.rpc import RpcClient
from tests.sandbox.interp_cells import CHART, CHART_BUNDLE, PNG
from tests.sandbox.test_rpc_support import (  # noqa: F401 - fixtures
    GuestProcess,
    client,
    guest,
    guest_root,
)


async def test_output_streams_while_the_cell_runs(client: RpcClient, guest: GuestProcess) -> None:
    # The cell waits for a file that only our callback creates when it sees the first line:
    # it can end only if that line reached us while the cell was still running.
    go = guest.workspace / "go"
    seen: list[tuple[str, Any]] = []

    def on_output(kind: str, data: Any) -> None:
        seen.append((kind, data))
        if data == "first\n":
            go.write_text("1")

    cell = await Interpreter(client).run(
        "import os, time\nprint('first')\n"
        "while not os.path.exists('go'):\n    time.sleep(0.01)\nprint('second')\n7",
        on_output=on_output,
        timeout=60,  # a hang guard: without streaming the cell would wait forever
    )
    assert cell.error is None and not cell.timed_out
    assert seen == [("stdout", "first\n"), ("stdout", "second\n"), ("result", cell.result)]
    assert cell.result == {"text/plain": "7"}


async def test_rich_results_follow_ipython_repr_methods(client: RpcClient) -> None:
    seen: list[tuple[str, Any]] = []
    cell = await Interpreter(client).run(
        CHART
        + """
class Broken:
    def _repr_html_(self): raise RuntimeError('no')
    def __repr__(self): return 'Broken()'
display(Broken())
print('between')
Chart()
""",
        on_output=lambda kind, data: seen.append((kind, data)),
    )
    assert cell.error is None
    assert cell.result == CHART_BUNDLE
    # display() results come while the cell runs, in order with its output
    assert seen == [
        ("display", {"text/plain": "Broken()"}),
        ("stdout", "between\n"),
        ("result", cell.result),
    ]


async def test_contexts_are_separate_namespaces(client: RpcClient, guest: GuestProcess) -> None:
    interp = Interpreter(client)
    (guest.workspace / "sub").mkdir()
    a = await interp.create(cwd="sub")
    assert (a.language, a.cwd) == ("python", str(guest.workspace / "sub"))
    await interp.run("x = 'default'")
    await interp.run("x = 'a'\nimport os", context=a.id)
    assert (await interp.run("x")).result == {"text/plain": "'default'"}
    assert (await interp.run("x, os.getcwd()", context=a.id)).result == {
        "text/plain": repr(("a", str(guest.workspace / "sub")))
    }
    assert {c.id for c in await interp.list()} == {"default", a.id}
    await interp.restart(a.id)
    assert (await interp.run("x", context=a.id)).error.name == "NameError"  # type: ignore[union-attr]
    await interp.remove(a.id)
    with pytest.raises(FileNotFound, match="not found"):
        await interp.run("1", context=a.id)
    with pytest.raises(InvalidArgument, match="cannot be removed"):
        await interp.remove("default")
    with pytest.raises(InvalidArgument, match="'r' is not supported"):
        await interp.create(language="r")


async def test_context_limit(client: RpcClient) -> None:
    # Hostile: a caller asking for 10k contexts gets a clear refusal at the limit.
    interp = Interpreter(client)
    made = 1  # default
    with pytest.raises(LimitExceeded, match=f"at most {MAX_CONTEXTS}"):
        for _ in range(10_000):
            await interp.create()
            made += 1
    assert made == MAX_CONTEXTS
    assert (await interp.run("1 + 1")).result == {"text/plain": "2"}


async def test_env_is_set_for_one_cell(client: RpcClient) -> None:
    interp = Interpreter(client)
    code = "import os, subprocess\n(os.environ.get('FOO'), subprocess.getoutput('echo $FOO'))"
    assert (await interp.run(code, env={"FOO": "bar"})).result == {"text/plain": "('bar', 'bar')"}
    assert (await interp.run(code)).result == {"text/plain": "(None, '')"}


async def test_timeout_interrupts_and_keeps_the_namespace(client: RpcClient) -> None:
    interp = Interpreter(client)
    await interp.run("kept = 1")
    cell = await interp.run("while True: pass", timeout=0.5)
    assert cell.timed_out and not cell.restarted
    assert cell.error is not None and cell.error.name == "KeyboardInterrupt"
    assert "ikernel" not in cell.error.traceback and 'File "<cell>"' in cell.error.traceback
    assert (await interp.run("kept")).result == {"text/plain": "1"}
    # a cell that ignores SIGINT is killed: the namespace is lost, and said so
    cell = await interp.run(
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass",
        timeout=0.5,
    )
    assert cell.timed_out and cell.restarted and cell.error.name == "TimeoutError"  # type: ignore[union-attr]
    assert (await interp.run("kept")).error.name == "NameError"  # type: ignore[union-attr]


async def test_cancelled_cell_is_stopped_before_the_next(client: RpcClient) -> None:
    # The caller going away (an HTTP client disconnecting) interrupts the cell; the next cell
    # of the context waits for it to stop, so it cannot still be running.
    interp = Interpreter(client)
    started = asyncio.Event()
    task = asyncio.ensure_future(
        interp.run(
            "n = 0\nprint('go', flush=True)\nwhile True: n += 1",
            on_output=lambda kind, data: started.set(),
        )
    )
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # (were the loop still running, this cell would wait for it: the host's timeout guards)
    a = (await interp.run("n", timeout=60)).result
    b = (await interp.run("n")).result
    assert a == b and a is not None and a["text/plain"].isdigit()


async def test_hostile_cells(client: RpcClient, guest: GuestProcess) -> None:
    interp = Interpreter(client)
    # 100 MB of output: forwarded up to the cap, then a note; the session goes on
    got = {"stdout": 0, "stderr": ""}

    def count(kind: str, data: Any) -> None:
        if kind == "stdout":
            got["stdout"] += len(data)
        elif kind == "stderr":
            got["stderr"] += data

    cell = await interp.run(
        "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20))\n1",
        on_output=count,
    )
    assert cell.error is None and cell.result == {"text/plain": "1"}
    assert got["stdout"] == OUTPUT_MAX
    assert f"{100 * (1 << 20) - OUTPUT_MAX} more bytes of stdout dropped" in got["stderr"]
    # the kernel dies (leaving a process behind): the cell says so, the next one starts fresh
    await interp.run("x = 1")
    cell = await interp.run(
        "import os\nos.system('setsid sleep 600 >/dev/null 2>&1 & echo $! > sleeper')\nos._exit(3)",
        timeout=60,  # a hang guard (were the event pipe inherited, the cell would end here)
    )
    os.kill(int((guest.workspace / "sleeper").read_text()), signal.SIGKILL)
    assert cell.restarted and cell.error is not None and cell.error.name == "KernelDied"
    assert "status 3" in cell.error.value
    assert (await interp.run("x")).error.name == "NameError"  # type: ignore[union-attr]
    # the cell forges kernel events on the event pipe: the kernel is dropped, the guest is fine
    cell = await interp.run(
        "import os, sys\nos.write(int(sys.argv[2]), b'\\xff\\xff\\xff\\xff garbage')"
    )
    assert cell.restarted and cell.error is not None and cell.error.name == "KernelDied"
    cell = await interp.run("import os, sys\nos.write(int(sys.argv[2]), b'\\0\\0\\0\\x02{}')")
    assert cell.restarted and cell.error is not None and "unexpected event" in cell.error.value
    bomb = "b'[' * 200_000"
    cell = await interp.run(
        f"import os, struct, sys\nb = {bomb}\nos.write(int(sys.argv[2]), struct.pack('!I', len(b)) + b)"
    )
    assert cell.restarted and cell.error is not None and "not JSON" in cell.error.value
    # a result nested deeper than JSON allows is left out, not a crash
    cell = await interp.run("x = []\nfor _ in range(100_000): x = [x]\ndisplay(x)\n'ok'")
    assert cell.error is None and cell.result == {"text/plain": "'ok'"}
    assert (await interp.run("2 * 21")).result == {"text/plain": "42"}


async def test_restart_or_remove_while_a_cell_runs(client: RpcClient) -> None:
    interp = Interpreter(client)
    ctx = await interp.create()
    for context, stop in (("default", interp.restart), (ctx.id, interp.remove)):
        started = asyncio.Event()
        task = asyncio.ensure_future(
            interp.run(
                "import time\nprint('go')\nwhile True: time.sleep(0.01)",
                context=context,
                on_output=lambda kind, data, started=started: started.set(),
            )
        )
        await started.wait()
        await stop(context)
        cell = await task
        assert cell.restarted and cell.error is not None and cell.error.name == "KernelDied"
        assert "restarted" in cell.error.value
    assert [c.id for c in await interp.list()] == ["default"]
    assert (await interp.run("'fresh'")).result == {"text/plain": "'fresh'"}


async def test_subprocess_output_and_binary_writes(client: RpcClient) -> None:
    seen: list[tuple[str, Any]] = []
    cell = await Interpreter(client).run(
        "import os, sys\nos.system('echo from-a-child')\nsys.stdout.buffer.write('é\\n'.encode())\n"
        "print('to fd 1', file=sys.__stdout__)\nprint('x', end='')",
        on_output=lambda kind, data: seen.append((kind, data)),
    )
    assert cell.error is None
    # What reaches fd 1 directly (subprocesses, sys.__stdout__) comes through its own pipe:
    # in order with itself and before the prints that follow it, but it may come before
    # prints that preceded it (the two pipes are read side by side).
    assert {kind for kind, _ in seen} == {"stdout"}
    text = "".join(data for _, data in seen)
    assert text.index("from-a-child\n") < text.index("é\n")
    assert sorted(text.splitlines(keepends=True)) == ["from-a-child\n", "to fd 1\n", "x", "é\n"]


async def test_a_running_cell_keeps_the_sandbox_in_use(
    client: RpcClient, guest: GuestProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The idle TTL must not remove a sandbox under a long silent cell: while it runs, use is
    # recorded every KEEPALIVE seconds. The cell ends only once that has happened twice.
    monkeypatch.setattr(sandbox.interp, "KEEPALIVE", 0.01)
    touches = 0

    def touch() -> None:
        nonlocal touches
        touches += 1
        if touches == 2:
            (guest.workspace / "go").write_text("1")

    cell = await Interpreter(client, touch=touch).run(
        "import os, time\nwhile not os.path.exists('go'):\n    time.sleep(0.01)", timeout=60
    )
    assert cell.error is None and touches >= 2


async def test_ipython_display_stand_in(client: RpcClient, guest: GuestProcess) -> None:
    # Jupyter-style cells import IPython.display; without IPython the kernel provides it
    (guest.workspace / "chart.png").write_bytes(PNG)
    seen: list[Any] = []
    cell = await Interpreter(client).run(
        "from IPython.display import display, HTML, Image, Markdown, JSON\n"
        "display(HTML('<b>x</b>'), Markdown('*y*'))\n"
        "display(JSON({'k': [1]}))\n"
        "Image(filename='chart.png')",
        on_output=lambda kind, data: seen.append((kind, data)),
    )
    assert cell.error is None
    assert [d for _, d in seen[:3]] == [
        {"text/html": "<b>x</b>", "text/plain": "<IPython.core.display.HTML object>"},
        {"text/markdown": "*y*", "text/plain": "<IPython.core.display.Markdown object>"},
        {"application/json": {"k": [1]}, "text/plain": "<IPython.core.display.JSON object>"},
    ]
    assert cell.result is not None
    assert cell.result["image/png"] == base64.b64encode(PNG).decode()
    cell = await Interpreter(client).run("from IPython import get_ipython")
    assert cell.error is not None and cell.error.name == "ImportError"
