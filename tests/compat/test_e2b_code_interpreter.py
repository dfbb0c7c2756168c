"""The real `e2b-code-interpreter` SDK (sync and async) against a live `corral serve`:
`run_code` streaming its logs while the cell runs, results (text and rich `_repr_*_` data,
`display`), errors, `envs`, `timeout`, named contexts (create with cwd, list, restart,
remove, the context limit), hostile cells, and tenancy. matplotlib figures: see
test_e2b_ci_matplotlib.py (needs the corral/research image)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from typing import Any

import pytest
from e2b import NotFoundException, SandboxException, TimeoutException
from e2b_code_interpreter import AsyncSandbox, Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from sandbox.guest.interp import MAX_CONTEXTS, OUTPUT_MAX
from tests.compat.e2b_support import serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread
from tests.sandbox.interp_cells import CHART, PNG

__all__ = ["start_server"]

pytestmark = pytest.mark.docker

RICH = (
    CHART
    + """
display('shown first')
print('between')
Chart()
"""
)
# Prints, then waits for a file the test creates only once the first line has reached it.
WAITS = (
    "import os, time\nprint('first')\n"
    "while not os.path.exists('/workspace/go'):\n    time.sleep(0.01)\nprint('second')"
)


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    keys = ApiKeys.from_mapping({"key-a": "a", "key-b": "b"})
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=keys))


def check_rich(ex: Any, seen: list[Any]) -> None:
    assert [r.is_main_result for r in ex.results] == [False, True]
    assert ex.results[0].text == "'shown first'"
    main = ex.results[1]
    assert main.png == base64.b64encode(PNG).decode()
    assert (main.html, main.markdown, main.svg, main.latex) == (
        "<b>hi</b>",
        "**hi**",
        "<svg/>",
        "$x$",
    )
    assert main.json == {"a": 1}
    assert ex.text == "Chart()"
    assert set(main.formats()) == {"text", "html", "markdown", "svg", "png", "json", "latex"}
    assert [type(s).__name__ for s in seen] == ["Result", "OutputMessage", "Result"]


def test_run_code(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        seen: list[str] = []
        ex = sb.run_code("x = 40\nprint('hello')\nx + 2", on_stdout=lambda m: seen.append(m.line))
        assert ex.text == "42"
        assert ex.logs.stdout == ["hello\n"]
        assert seen == ["hello\n"]
        assert ex.error is None
        assert ex.execution_count == 1
        assert sb.run_code("x", language="python").text == "40"  # the session persists
        errors: list[Any] = []
        ex = sb.run_code("1 / 0", on_error=errors.append)
        assert ex.error is not None and errors == [ex.error]
        assert ex.error.name == "ZeroDivisionError"
        assert ex.error.value == "division by zero"
        assert "Traceback" in ex.error.traceback and "ikernel" not in ex.error.traceback
        warned: list[Any] = []
        ex = sb.run_code("import sys; print('warn', file=sys.stderr)", on_stderr=warned.append)
        assert ex.logs.stderr == ["warn\n"]
        assert [(m.line, m.error) for m in warned] == [("warn\n", True)]
        # commands and files of the base SDK work on the same sandbox
        sb.files.write("/home/user/data.txt", "3")
        assert sb.run_code("open('data.txt').read()").text == "'3'"
        with pytest.raises(SandboxException, match="'r' is not supported"):
            sb.run_code("1", language="r")


def test_output_streams_while_the_cell_runs(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        lines: list[str] = []

        def on_stdout(m: Any) -> None:
            lines.append(m.line)
            if m.line == "first\n":  # the cell is still waiting for this file
                threading.Thread(target=sb.files.write, args=("/home/user/go", "1")).start()

        ex = sb.run_code(WAITS, on_stdout=on_stdout, timeout=120)  # timeout: a hang guard
        assert ex.error is None
        assert lines == ex.logs.stdout == ["first\n", "second\n"]


def test_rich_results_and_envs(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        seen: list[Any] = []
        ex = sb.run_code(RICH, on_result=seen.append, on_stdout=seen.append)
        check_rich(ex, seen)
        # Jupyter-style code: IPython.display (a stand-in when the image has no IPython)
        ex = sb.run_code(
            f"from IPython.display import Image, display\ndisplay(Image(data={PNG!r}))"
        )
        assert [r.png for r in ex.results] == [base64.b64encode(PNG).decode()]
        # envs: set for that cell (and its subprocesses), restored after it
        code = "import os, subprocess\n(os.environ.get('FOO'), subprocess.getoutput('echo $FOO'))"
        assert sb.run_code(code, envs={"FOO": "bar"}).text == "('bar', 'bar')"
        assert sb.run_code(code).text == "(None, '')"
        with pytest.raises(SandboxException, match="invalid environment variable"):
            sb.run_code("1", envs={"A=B": "c"})


def test_contexts(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        sb.commands.run("mkdir -p /workspace/proj")
        ctx = sb.create_code_context(cwd="/home/user/proj", language="python")
        assert (ctx.language, ctx.cwd) == ("python", "/home/user/proj")
        sb.run_code("x = 'default'")
        sb.run_code("x = 'ctx'", context=ctx)
        assert sb.run_code("x").text == "'default'"
        assert (
            sb.run_code("import os; (x, os.getcwd())", context=ctx).text
            == "('ctx', '/workspace/proj')"
        )
        assert {c.id for c in sb.list_code_contexts()} == {"default", ctx.id}
        sb.restart_code_context(ctx)
        assert sb.run_code("x", context=ctx).error.name == "NameError"  # type: ignore[union-attr]
        assert sb.run_code("x").text == "'default'"
        sb.restart_code_context("default")
        assert sb.run_code("x").error.name == "NameError"  # type: ignore[union-attr]
        sb.remove_code_context(ctx.id)
        assert [c.id for c in sb.list_code_contexts()] == ["default"]
        with pytest.raises(NotFoundException):
            sb.run_code("1", context=ctx)
        with pytest.raises(NotFoundException):
            sb.restart_code_context(ctx)
        with pytest.raises(SandboxException, match="cannot be removed"):
            sb.remove_code_context("default")
        with pytest.raises(SandboxException, match="not supported"):
            sb.create_code_context(language="bash")
        with pytest.raises(NotFoundException, match="no such directory"):
            sb.create_code_context(cwd="/home/user/missing")
        # hostile: asking for 10k contexts gets a clear refusal at the limit
        made = 1
        with pytest.raises(SandboxException, match=f"429.*at most {MAX_CONTEXTS} code contexts"):
            for _ in range(10_000):
                sb.create_code_context()
                made += 1
        assert made == MAX_CONTEXTS
        assert sb.run_code("1 + 1").text == "2"


def test_timeout_and_hostile_cells(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        sb.run_code("kept = 1")
        # the SDK's timeout ends the request; the server interrupts the cell, keeping the
        # namespace. The next cell of the context waits until the first has stopped.
        with pytest.raises(TimeoutException):
            sb.run_code("while True: pass", timeout=2)
        assert sb.run_code("kept", timeout=60).text == "1"  # waits for the loop to stop
        # 100 MB of output: bounded, and said so
        ex = sb.run_code(
            "import sys\nfor _ in range(100):\n    sys.stdout.write('x' * (1 << 20) + '\\n')"
        )
        assert sum(len(s) for s in ex.logs.stdout) == OUTPUT_MAX
        assert "more bytes of stdout dropped" in "".join(ex.logs.stderr)
        # the Python process dies: a clear error, and the next cell starts a fresh one
        ex = sb.run_code("import os\nos._exit(3)")
        assert (
            ex.error is not None and ex.error.name == "KernelDied" and "status 3" in ex.error.value
        )
        assert sb.run_code("kept").error.name == "NameError"  # type: ignore[union-attr]
        sb.restart_code_context("default")
        assert sb.run_code("2 * 21").text == "42"


def test_tenancy(srv: ServerThread) -> None:
    with Sandbox.create(timeout=60) as sb, pytest.raises(NotFoundException):
        Sandbox.connect(sb.sandbox_id, api_key="key-b")


async def test_async_sdk(srv: ServerThread) -> None:
    sb = await AsyncSandbox.create(timeout=120)
    try:
        ex = await sb.run_code("sum(range(5))")
        assert ex.text == "10"
        # streaming: async callbacks fire while the cell runs
        lines: list[str] = []

        async def on_stdout(m: Any) -> None:
            lines.append(m.line)
            if m.line == "first\n":
                await sb.files.write("/home/user/go", "1")

        ex = await sb.run_code(WAITS, on_stdout=on_stdout, timeout=120)
        assert ex.error is None and lines == ["first\n", "second\n"]
        seen: list[Any] = []
        check_rich(await sb.run_code(RICH, on_result=seen.append, on_stdout=seen.append), seen)
        assert (await sb.run_code("import os; os.environ['A']", envs={"A": "1"})).text == "'1'"
        ex = await sb.run_code("1 / 0")
        assert ex.error is not None and ex.error.name == "ZeroDivisionError"
        with pytest.raises(SandboxException, match="'bash' is not supported"):
            await sb.run_code("ls", language="bash")
        # contexts
        ctx = await sb.create_code_context(cwd="/tmp", language="python")
        assert (ctx.cwd, ctx.language) == ("/tmp", "python")
        await sb.run_code("y = 1", context=ctx)
        assert (await sb.run_code("y")).error.name == "NameError"  # type: ignore[union-attr]
        assert {c.id for c in await sb.list_code_contexts()} == {"default", ctx.id}
        await sb.restart_code_context(ctx)
        assert (await sb.run_code("y", context=ctx)).error.name == "NameError"  # type: ignore[union-attr]
        await sb.remove_code_context(ctx)
        with pytest.raises(NotFoundException):
            await sb.run_code("1", context=ctx)
        # timeout
        await sb.run_code("kept = 2")
        with pytest.raises(TimeoutException):
            await sb.run_code("while True: pass", timeout=2)
        assert (await sb.run_code("kept", timeout=60)).text == "2"
    finally:
        await sb.kill()


def test_code_interpreter_template(monkeypatch: pytest.MonkeyPatch) -> None:
    # code-interpreter-v1 is the image with matplotlib when it is built; an operator's own
    # mapping for it wins
    from runtime.e2b import interpreter

    base = {"base": "corral/base", "code-interpreter-v1": "corral/base"}
    for present in (True, False):
        monkeypatch.setattr(interpreter, "_image_present", lambda tag, p=present: p)
        got = interpreter.with_matplotlib(base, env={})
        assert got["code-interpreter-v1"] == ("corral/research" if present else "corral/base")
        assert got["base"] == "corral/base"
        mine = {"CORRAL_E2B_TEMPLATES": "code-interpreter-v1=corral/base"}
        assert interpreter.with_matplotlib(base, env=mine) == base
