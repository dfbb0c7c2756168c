"""The real `e2b-code-interpreter` SDK (sync and async) against a live `corral serve`:
`run_code` on the sandbox's persistent Python session, logs, results, errors, the one
`default` context, and tenancy."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from e2b import NotFoundException, SandboxException
from e2b_code_interpreter import AsyncSandbox, Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.runtime.api.conftest import ServerThread, start_server

__all__ = ["start_server"]

pytestmark = pytest.mark.docker


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    s = start_server(ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a", "key-b": "b"})))
    monkeypatch.setenv("E2B_API_URL", s.url)
    monkeypatch.setenv("E2B_SANDBOX_URL", s.url)
    monkeypatch.setenv("E2B_API_KEY", "key-a")
    return s


def test_run_code(srv: ServerThread) -> None:
    with Sandbox.create(timeout=120) as sb:
        seen: list[str] = []
        ex = sb.run_code("x = 40\nprint('hello')\nx + 2", on_stdout=lambda m: seen.append(m.line))
        assert ex.text == "42"
        assert ex.logs.stdout == ["hello\n"]
        assert seen == ["hello\n"]
        assert ex.error is None
        assert sb.run_code("x", language="python").text == "40"  # the session persists
        ex = sb.run_code("1 / 0")
        assert ex.error is not None
        assert ex.error.name == "ZeroDivisionError"
        assert ex.error.value == "division by zero"
        assert "Traceback" in ex.error.traceback
        ex = sb.run_code("import sys; print('warn', file=sys.stderr)")
        assert ex.logs.stderr == ["warn\n"]
        # one context, the session; restarting it forgets the variables
        (ctx,) = sb.list_code_contexts()
        assert ctx.id == "default"
        sb.restart_code_context(ctx)
        assert sb.run_code("x").error.name == "NameError"  # type: ignore[union-attr]
        with pytest.raises(SandboxException, match="more than one code context"):
            sb.create_code_context()
        with pytest.raises(SandboxException, match="not supported"):
            sb.run_code("1", language="r")
        # commands and files of the base SDK work on the same sandbox
        sb.files.write("/home/user/data.txt", "3")
        assert sb.run_code("open('/workspace/data.txt').read()").text == "'3'"


def test_tenancy(srv: ServerThread) -> None:
    with Sandbox.create(timeout=60) as sb, pytest.raises(NotFoundException):
        Sandbox.connect(sb.sandbox_id, api_key="key-b")


async def test_async_run_code(srv: ServerThread) -> None:
    sb = await AsyncSandbox.create(timeout=60)
    try:
        ex = await sb.run_code("sum(range(5))")
        assert ex.text == "10"
    finally:
        await sb.kill()
