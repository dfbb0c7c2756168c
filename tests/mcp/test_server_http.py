"""The official MCP client against `corral serve`'s `/mcp` (streamable HTTP): the sandbox
tools end to end, progress, tool errors for bad input, path traversal, tenancy and keys."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from tests.runtime.api.conftest import ServerThread, start_server

__all__ = ["start_server"]  # the fixture, used by name

KEYS = ApiConfig(keys=ApiKeys.from_mapping({"key-a": "tenant-a", "key-b": "tenant-b"}))


@asynccontextmanager
async def mcp_session(url: str, key: str | None = None) -> AsyncIterator[ClientSession]:
    headers = {"Authorization": f"Bearer {key}"} if key else None
    async with (
        create_mcp_http_client(headers=headers) as http,
        streamable_http_client(f"{url}/mcp", http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def test_tools_are_listed_with_schemas(start_server: Callable[..., ServerThread]) -> None:
    server = start_server()
    async with mcp_session(server.url) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
    expected = {
        "sandbox_create",
        "sandbox_exec",
        "sandbox_write_file",
        "sandbox_read_file",
        "sandbox_list_files",
        "sandbox_delete",
        "browser_goto",
        "browser_snapshot",
        "browser_screenshot",
        "run_agent",
    }
    assert expected <= set(tools)
    exec_schema = tools["sandbox_exec"].input_schema
    assert exec_schema["required"] == ["sandbox_id", "command"]
    assert exec_schema["properties"]["timeout"]["anyOf"][0]["maximum"] == 24 * 3600
    assert all(t.description and t.output_schema for t in tools.values())


async def test_unauthenticated_mcp_is_401(start_server: Callable[..., ServerThread]) -> None:
    server = start_server(KEYS)
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
    async with httpx.AsyncClient() as http:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"x-goog-api-key": "nope"}):
            r = await http.post(f"{server.url}/mcp", json=init, headers=headers)
            assert r.status_code == 401, r.text
            assert r.json()["error"]["status"] == "UNAUTHENTICATED"


async def test_bad_arguments_are_tool_errors(start_server: Callable[..., ServerThread]) -> None:
    server = start_server(KEYS)
    async with mcp_session(server.url, "key-a") as s:
        cases: list[tuple[str, dict[str, Any], str]] = [
            ("sandbox_exec", {"command": "true"}, "sandbox_id"),
            ("sandbox_exec", {"sandbox_id": "sb-x", "command": "true", "timeout": -1}, "timeout"),
            ("sandbox_exec", {"sandbox_id": "../etc", "command": "true"}, "sandbox_id"),
            ("sandbox_create", {"cpus": 1e9}, "cpus"),
            ("sandbox_create", {"memory": "lots"}, "memory"),
            ("sandbox_create", {"bogus": 1}, "bogus"),
            ("sandbox_read_file", {"sandbox_id": "sb-nope", "path": "a"}, "not_found"),
            ("no_such_tool", {}, "no tool"),
            ("run_agent", {"input": ""}, "input"),
        ]
        for name, args, needle in cases:
            r = await s.call_tool(name, args)
            assert r.is_error, (name, args)
            assert needle in text(r), (name, args, text(r))
        # the session survived all of that
        assert (await s.call_tool("sandbox_list", {})).structured_content == {"sandboxes": []}


@pytest.mark.docker
async def test_sandbox_round_trip_progress_and_tenancy(
    start_server: Callable[..., ServerThread],
) -> None:
    server = start_server(KEYS)
    reports: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        reports.append((progress, message))

    async with mcp_session(server.url, "key-a") as a, mcp_session(server.url, "key-b") as b:
        created = await a.call_tool("sandbox_create", {"ttl": 300}, progress_callback=on_progress)
        assert not created.is_error, text(created)
        sid = created.structured_content["id"]
        assert reports and reports[-1][1] == "sandbox ready"
        assert [p for p, _ in reports] == sorted(p for p, _ in reports)

        w = await a.call_tool(
            "sandbox_write_file", {"sandbox_id": sid, "path": "notes/hi.txt", "content": "hello"}
        )
        assert w.structured_content == {"path": "notes/hi.txt", "size": 5}
        r = await a.call_tool("sandbox_exec", {"sandbox_id": sid, "command": "cat notes/hi.txt"})
        assert r.structured_content["exit_code"] == 0
        assert r.structured_content["stdout"] == "hello"
        failed = await a.call_tool("sandbox_exec", {"sandbox_id": sid, "command": "exit 3"})
        assert not failed.is_error and failed.structured_content["exit_code"] == 3
        got = await a.call_tool("sandbox_read_file", {"sandbox_id": sid, "path": "notes/hi.txt"})
        assert got.structured_content["content"] == "hello"
        b64 = await a.call_tool(
            "sandbox_read_file", {"sandbox_id": sid, "path": "notes/hi.txt", "encoding": "base64"}
        )
        assert b64.structured_content["content"] == "aGVsbG8="
        listed = await a.call_tool(
            "sandbox_list_files", {"sandbox_id": sid, "path": ".", "recursive": True}
        )
        paths = {f["path"] for f in listed.structured_content["files"]}
        assert "notes/hi.txt" in paths

        for path in ("../../etc/passwd", "/etc/passwd", "notes/../../x", "/workspace/../etc/hosts"):
            bad = await a.call_tool("sandbox_read_file", {"sandbox_id": sid, "path": path})
            assert bad.is_error, path
            wbad = await a.call_tool(
                "sandbox_write_file", {"sandbox_id": sid, "path": path, "content": "x"}
            )
            assert wbad.is_error, path
        link = await a.call_tool(
            "sandbox_exec", {"sandbox_id": sid, "command": "ln -s /etc/passwd escape"}
        )
        assert link.structured_content["exit_code"] == 0
        assert (
            await a.call_tool("sandbox_read_file", {"sandbox_id": sid, "path": "escape"})
        ).is_error

        # tenant B sees nothing of A's sandbox
        for name, args in (
            ("sandbox_exec", {"sandbox_id": sid, "command": "echo pwned"}),
            ("sandbox_read_file", {"sandbox_id": sid, "path": "notes/hi.txt"}),
            ("sandbox_write_file", {"sandbox_id": sid, "path": "x", "content": "x"}),
            ("sandbox_list_files", {"sandbox_id": sid}),
            ("sandbox_delete", {"sandbox_id": sid}),
        ):
            res = await b.call_tool(name, args)
            assert res.is_error and text(res).startswith("not_found"), (name, text(res))
        assert (await b.call_tool("sandbox_list", {})).structured_content == {"sandboxes": []}

        gone = await a.call_tool("sandbox_delete", {"sandbox_id": sid})
        assert gone.structured_content == {"sandbox_id": sid, "deleted": True}
        again = await a.call_tool("sandbox_exec", {"sandbox_id": sid, "command": "true"})
        assert again.is_error and "not_found" in text(again)

        # a scripted model reads a file on the server: refused on a multi-tenant server
        scripted = await a.call_tool("run_agent", {"input": "x", "model": "scripted:/etc/passwd"})
        assert scripted.is_error and "scripted" in text(scripted)


async def test_key_ceilings_apply_as_on_the_http_api(
    start_server: Callable[..., ServerThread],
) -> None:
    tight = TenantPolicy(max_memory=2 * 1024**3, max_cpus=1.0, max_sandboxes=0)
    config = ApiConfig(keys=ApiKeys.from_mapping({"key-a": "tenant-a"}, policies={"key-a": tight}))
    server = start_server(config)
    async with mcp_session(server.url, "key-a") as s:
        over = await s.call_tool("sandbox_create", {"memory": "64g"})
        assert over.is_error and text(over).startswith("permission_denied: memory 64g")
        cpus = await s.call_tool("sandbox_create", {"cpus": 2})
        assert cpus.is_error and "ceiling of 1" in text(cpus)
        open_net = await s.call_tool("sandbox_create", {"network": "open"})
        assert open_net.is_error and "network open is not allowed" in text(open_net)
        no_domains = await s.call_tool("sandbox_create", {"network": "allowlist"})
        assert no_domains.is_error and "allowlist" in text(no_domains)


@pytest.mark.docker
async def test_live_sandbox_cap(start_server: Callable[..., ServerThread]) -> None:
    policy = TenantPolicy(max_sandboxes=0)
    config = ApiConfig(keys=ApiKeys.from_mapping({"key-a": "tenant-a"}, policies={"key-a": policy}))
    server = start_server(config)
    async with mcp_session(server.url, "key-a") as s:
        full = await s.call_tool("sandbox_create", {})
        assert full.is_error and text(full).startswith("resource_exhausted: live sandboxes")


@pytest.mark.docker
async def test_run_agent_over_http(
    start_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    script = tmp_path / "turns.yaml"
    command = "mkdir -p /workspace/out && printf 'a,b\\n1,2\\n' > /workspace/out/data.csv"
    turns = [
        {"tool_calls": [{"name": "exec", "arguments": {"command": command}}]},
        {"text": "Wrote data.csv"},
    ]
    script.write_text(yaml.safe_dump({"turns": turns}))
    config = ApiConfig(keys=KEYS.keys, allow_scripted=True)
    server = start_server(config)
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    async with mcp_session(server.url, "key-a") as a:
        r = await a.call_tool(
            "run_agent",
            {"input": "Make a CSV", "model": f"scripted:{script}", "timeout": 120},
            progress_callback=on_progress,
        )
    assert not r.is_error, text(r)
    out = r.structured_content
    assert (out["status"], out["output_text"]) == ("completed", "Wrote data.csv")
    assert [(x["path"], x["size"]) for x in out["artifacts"]] == [("data.csv", 8)]
    assert messages[0].startswith("run ") and "step: model_output" in messages
    got = httpx.get(
        f"{server.url}{out['artifacts'][0]['download_path']}",
        headers={"Authorization": "Bearer key-a"},
    )
    assert got.status_code == 200 and got.content == b"a,b\n1,2\n"
    other = httpx.get(
        f"{server.url}{out['artifacts'][0]['download_path']}",
        headers={"Authorization": "Bearer key-b"},
    )
    assert other.status_code == 404
