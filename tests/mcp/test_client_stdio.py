"""A stdio MCP server inside a real sandbox, used by an agent run end to end (`corral run`).

The sandbox image has no `mcp` package and no PyPI, so the server here is a small
standard-library JSON-RPC program speaking the real protocol (initialize, tools/list,
tools/call) on its stdin/stdout; it reaches the sandbox as a skill folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from runtime.cli.main import app
from tests.runtime.test_cli_frictions import write_agent

pytestmark = pytest.mark.docker

SERVER = r"""
import json, os, sys, time

TOOLS = [
    {"name": "whereami", "description": "Where the server runs.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "write_note", "description": "Write a note into the output folder.",
     "inputSchema": {"type": "object", "properties": {"text": {"type": "string"}},
                     "required": ["text"]}},
    {"name": "fail", "description": "Reports an error.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "hang", "description": "Never answers.",
     "inputSchema": {"type": "object", "properties": {}}},
    {"name": "crash", "description": "The server process exits.",
     "inputSchema": {"type": "object", "properties": {}}},
]


def send(msg):
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


def text(s, error=False):
    return {"content": [{"type": "text", "text": s}], "isError": error}


for line in sys.stdin:
    msg = json.loads(line)
    method, mid = msg.get("method"), msg.get("id")
    if mid is None:
        continue  # notifications (initialized, cancelled)
    params = msg.get("params") or {}
    if method == "initialize":
        send({"jsonrpc": "2.0", "id": mid, "result": {
            "protocolVersion": params.get("protocolVersion"),
            "capabilities": {"tools": {}},
            "serverInfo": {"name": "sandboxed", "version": "1.0"}}})
    elif method == "tools/list":
        send({"jsonrpc": "2.0", "id": mid, "result": {"tools": TOOLS}})
    elif method == "ping":
        send({"jsonrpc": "2.0", "id": mid, "result": {}})
    elif method == "tools/call":
        name, args = params.get("name"), params.get("arguments") or {}
        if name == "whereami":
            result = text(f"cwd={os.getcwd()} uid={os.getuid()} token={os.environ.get('TOKEN')}")
        elif name == "write_note":
            with open("/workspace/out/note.txt", "w") as f:
                f.write(args["text"])
            result = text("written")
        elif name == "fail":
            result = text("no such record", error=True)
        elif name == "hang":
            continue
        elif name == "crash":
            os._exit(3)
        else:
            send({"jsonrpc": "2.0", "id": mid,
                  "error": {"code": -32602, "message": f"unknown tool {name}"}})
            continue
        send({"jsonrpc": "2.0", "id": mid, "result": result})
    else:
        send({"jsonrpc": "2.0", "id": mid,
              "error": {"code": -32601, "message": f"no method {method}"}})
"""


def call(name: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": name, "arguments": arguments}]}


def agent(tmp_path: Path, turns: list[dict[str, Any]], **server: Any) -> Path:
    folder = tmp_path / "mcpsrv"
    folder.mkdir()
    (folder / "server.py").write_text(SERVER)
    box = {
        "type": "mcp_server",
        "name": "box",
        "command": "python3",
        "args": ["/workspace/skills/mcpsrv/server.py"],
        "env": {"TOKEN": "t0k"},
        **server,
    }
    return write_agent(
        tmp_path, [*turns, {"text": "done"}], tools=["exec", box], skills=[str(folder)]
    )


def run(*args: str) -> Any:
    return CliRunner().invoke(app, ["run", *args], catch_exceptions=False)


def steps(output: str, kind: str) -> list[dict[str, Any]]:
    evs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    return [e["step"] for e in evs if e["event_type"] == "step.start" and e["step"]["type"] == kind]


def test_stdio_server_in_the_sandbox(tmp_path: Path, corral_home: Path) -> None:
    spec = agent(
        tmp_path,
        [
            call("box__whereami"),
            call("box__write_note", text="from mcp"),
            call("box__fail"),
            call("box__hang"),
            call("box__whereami"),
            call("box__crash"),
            call("box__whereami"),
        ],
        timeout=2,
    )
    out = tmp_path / "out"
    res = run("--agent", str(spec), "--out", str(out), "--json", "use the box")
    assert res.exit_code == 0, res.output
    calls = steps(res.output, "mcp_server_tool_call")
    assert [(c["server_name"], c["name"]) for c in calls] == [
        ("box", "whereami"),
        ("box", "write_note"),
        ("box", "fail"),
        ("box", "hang"),
        ("box", "whereami"),
        ("box", "crash"),
        ("box", "whereami"),
    ]
    results = steps(res.output, "mcp_server_tool_result")
    assert [r["call_id"] for r in results] == [c["id"] for c in calls]
    where, note, fail, hang, again, crash, gone = results
    assert where["result"].startswith("cwd=/workspace ") and "token=t0k" in where["result"]
    assert "uid=0" not in where["result"]  # the sandbox's agent user, not root
    assert not where["is_error"] and note["result"] == "written"
    assert (out / "note.txt").read_text() == "from mcp"  # it ran where the files are
    assert fail["is_error"] and fail["result"] == "no such record"
    assert hang["is_error"] and "timed out after 2s" in hang["result"]
    assert again == {**again, "is_error": False} and again["result"] == where["result"]
    assert crash["is_error"] and "no longer reachable" in crash["result"]
    assert gone["is_error"] and "no longer reachable" in gone["result"]


def test_stdio_server_that_cannot_start_fails_the_run(tmp_path: Path, corral_home: Path) -> None:
    spec = agent(tmp_path, [call("box__whereami")], command="/no/such/server", args=[])
    res = run("--agent", str(spec), "--json", "x")
    assert res.exit_code != 0
    assert "mcp_server_unavailable" in res.output and "box" in res.output


def test_remote_server_refused_when_network_is_none(tmp_path: Path, corral_home: Path) -> None:
    far = {"type": "mcp_server", "name": "far", "url": "https://mcp.example/mcp"}
    spec = write_agent(tmp_path, [{"text": "done"}], tools=[far])
    res = run("--agent", str(spec), "--json", "x")
    assert res.exit_code != 0
    assert "mcp_server_refused" in res.output and "network is 'none'" in res.output
