"""The official MCP client against `corral mcp` run as a real subprocess (stdio): the sandbox
tools end to end with progress, bad input as tool errors, and `run_agent` with a scripted
model returning the agent's answer and its artifacts."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from mcp import ClientSession, StdioServerParameters, stdio_client


@asynccontextmanager
async def corral_mcp(home: Path) -> AsyncIterator[ClientSession]:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST", "LANG")}
    env["CORRAL_HOME"] = str(home)
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "runtime.cli", "mcp"], env=env, cwd=os.getcwd()
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def test_stdio_lists_tools_and_refuses_bad_input(corral_home: Path) -> None:
    async with corral_mcp(corral_home) as s:
        names = {t.name for t in (await s.list_tools()).tools}
        assert {"sandbox_create", "sandbox_exec", "run_agent", "browser_screenshot"} <= names
        bad = await s.call_tool("sandbox_write_file", {"sandbox_id": "sb-x", "path": "a"})
        assert bad.is_error and "content" in text(bad)
        missing = await s.call_tool("sandbox_exec", {"sandbox_id": "sb-none", "command": "true"})
        assert missing.is_error and text(missing).startswith("not_found")
        assert (await s.call_tool("sandbox_list", {})).structured_content == {"sandboxes": []}


@pytest.mark.docker
async def test_stdio_sandbox_round_trip(corral_home: Path) -> None:
    reports: list[float] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append(progress)

    async with corral_mcp(corral_home) as s:
        created = await s.call_tool("sandbox_create", {"ttl": 300}, progress_callback=on_progress)
        assert not created.is_error, text(created)
        assert reports, "no progress notification for sandbox_create"
        sid = created.structured_content["id"]
        w = await s.call_tool(
            "sandbox_write_file",
            {
                "sandbox_id": sid,
                "path": "/workspace/b.bin",
                "content": "AAEC",
                "encoding": "base64",
            },
        )
        assert w.structured_content["size"] == 3
        r = await s.call_tool("sandbox_exec", {"sandbox_id": sid, "command": ["wc", "-c", "b.bin"]})
        assert r.structured_content["stdout"].split()[0] == "3"
        got = await s.call_tool(
            "sandbox_read_file", {"sandbox_id": sid, "path": "b.bin", "encoding": "base64"}
        )
        assert got.structured_content["content"] == "AAEC"
        files = await s.call_tool("sandbox_list_files", {"sandbox_id": sid})
        assert [f["path"] for f in files.structured_content["files"]] == ["b.bin"]
        trav = await s.call_tool(
            "sandbox_read_file", {"sandbox_id": sid, "path": "../../etc/passwd"}
        )
        assert trav.is_error
        assert not (await s.call_tool("sandbox_delete", {"sandbox_id": sid})).is_error
        assert (await s.call_tool("sandbox_list", {})).structured_content == {"sandboxes": []}


@pytest.mark.docker
async def test_stdio_run_agent_returns_answer_and_artifacts(
    corral_home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "turns.yaml"
    turns = [
        {
            "text": "Writing the report.",
            "tool_calls": [
                {
                    "name": "exec",
                    "arguments": {
                        "command": "mkdir -p /workspace/out && printf 'hello' > "
                        "/workspace/out/report.txt && echo wrote-it"
                    },
                }
            ],
        },
        {"text": "Done: report.txt"},
    ]
    script.write_text(yaml.safe_dump({"turns": turns}))
    steps: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        steps.append(message or "")

    async with corral_mcp(corral_home) as s:
        r = await s.call_tool(
            "run_agent",
            {"input": "Write a report", "model": f"scripted:{script}", "max_steps": 5},
            progress_callback=on_progress,
        )
    assert not r.is_error, text(r)
    out = r.structured_content
    assert out["status"] == "completed", out
    assert out["output_text"] == "Done: report.txt"
    [artifact] = out["artifacts"]
    assert artifact["path"] == "report.txt" and artifact["size"] == 5
    assert artifact["download_path"].endswith(f"/{out['interaction_id']}/artifacts/report.txt")
    assert any(m.startswith("step:") for m in steps), steps
