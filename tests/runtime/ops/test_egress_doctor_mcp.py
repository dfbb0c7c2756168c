"""The egress proxy seen by `corral doctor` (ok while needed and up, a failing row when
sandboxes need it and it is down) and tended by `corral mcp` as `corral serve`'s reaper tends
it (restarted when it dies, removed once unused). Real Docker, real proxy, the real
`corral mcp` process over stdio."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import docker
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client

from runtime.cli.doctor import Check, run_checks
from tests.mcp.test_server_stdio import text
from tests.runtime.ops.support import poll
from tests.runtime.ops.test_egress_lifecycle import _proxy, _proxy_name
from tests.runtime.test_cli_frictions import allowlist_sandbox, corral

pytestmark = pytest.mark.docker


def egress_row(home: Path) -> Check:
    return next(r for r in run_checks(home=home) if r.name == "egress proxy")


def test_doctor_shows_the_egress_proxy(corral_home: Path) -> None:
    engine = docker.from_env()
    name = _proxy_name(corral_home)
    off = egress_row(corral_home)
    assert off.level == "ok" and "no sandbox needs it" in off.detail
    sid = allowlist_sandbox(corral_home, "example.com")
    try:
        up = egress_row(corral_home)
        assert up.level == "ok" and f"{name}: ok (needed by {sid}" in up.detail
        _proxy(engine, name).kill()
        down = egress_row(corral_home)
        assert down.failed and f"{name}: down (needed by {sid})" in down.detail
        assert "corral sandbox egress start" in down.hint
        shown = corral(corral_home, "doctor")
        assert shown.returncode == 1
        assert "egress proxy: " in shown.stdout and "corral sandbox egress start" in shown.stdout
    finally:
        assert corral(corral_home, "sandbox", "rm", sid).returncode == 0
        corral(corral_home, "sandbox", "gc")
        engine.close()


@asynccontextmanager
async def corral_mcp(home: Path, reap_interval: str) -> AsyncIterator[ClientSession]:
    keep = ("PATH", "HOME", "DOCKER_HOST", "LANG")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(CORRAL_HOME=str(home), CORRAL_REAP_INTERVAL=reap_interval)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "runtime.cli", "mcp"], env=env, cwd=os.getcwd()
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def test_corral_mcp_restarts_and_removes_the_proxy(corral_home: Path) -> None:
    engine = docker.from_env()
    name = _proxy_name(corral_home)
    async with corral_mcp(corral_home, "0.2") as s:
        made = await s.call_tool(
            "sandbox_create", {"memory": "256m", "network": "allowlist", "allowlist": ["a.com"]}
        )
        assert not made.is_error, text(made)
        sid = made.structured_content["id"]
        first = poll(lambda: _proxy(engine, name)).id
        _proxy(engine, name).kill()  # the engine does not restart a killed container
        poll(lambda: (p := _proxy(engine, name)) is not None and p.id != first)
        poll(lambda: _proxy(engine, name).status == "running")
        gone = await s.call_tool("sandbox_delete", {"sandbox_id": sid})
        assert not gone.is_error, text(gone)
        poll(lambda: _proxy(engine, name) is None)
    engine.close()


def test_a_bad_reap_interval_is_refused_naming_it(corral_home: Path) -> None:
    out = corral(corral_home, "mcp", CORRAL_REAP_INTERVAL="nan")
    assert out.returncode != 0
    assert "CORRAL_REAP_INTERVAL" in out.stderr and "Traceback" not in out.stderr
