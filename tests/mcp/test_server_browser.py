"""The browser tools over MCP (stdio `corral mcp`) in a `corral/browser` sandbox: goto a page
served inside the sandbox, snapshot it, and get the screenshot back as MCP image content."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.mcp.test_server_stdio import corral_mcp, text

pytestmark = [pytest.mark.docker, pytest.mark.browser]


async def test_browser_goto_snapshot_screenshot(corral_home: Path) -> None:
    async with corral_mcp(corral_home) as s:
        created = await s.call_tool("sandbox_create", {"image": "corral/browser", "ttl": 300})
        assert not created.is_error, text(created)
        sid = created.structured_content["id"]
        page = (
            "<html><head><title>Corral MCP</title></head><body><a href='/x'>More</a></body></html>"
        )
        await s.call_tool(
            "sandbox_write_file", {"sandbox_id": sid, "path": "site/index.html", "content": page}
        )
        serve = await s.call_tool(
            "sandbox_exec",
            {
                "sandbox_id": sid,
                "command": "cd site && (python3 -m http.server 8765 >/dev/null 2>&1 &) ; "
                'for i in $(seq 50); do python3 -c "import urllib.request as u; '
                "u.urlopen('http://127.0.0.1:8765/')\" 2>/dev/null && break; sleep 0.1; done",
            },
        )
        assert serve.structured_content["exit_code"] == 0
        went = await s.call_tool(
            "browser_goto", {"sandbox_id": sid, "url": "http://127.0.0.1:8765/"}
        )
        assert not went.is_error, text(went)
        assert went.structured_content["page"]["title"] == "Corral MCP"
        snap = await s.call_tool("browser_snapshot", {"sandbox_id": sid})
        assert "More" in snap.structured_content["snapshot"]
        shot = await s.call_tool("browser_screenshot", {"sandbox_id": sid})
        assert not shot.is_error, text(shot)
        [image] = [c for c in shot.content if c.type == "image"]
        assert image.mime_type == "image/png"
        assert base64.b64decode(image.data).startswith(b"\x89PNG")
        assert shot.structured_content["size"] == len(base64.b64decode(image.data))
        bad = await s.call_tool("browser_goto", {"sandbox_id": sid, "url": "file:///etc/passwd"})
        assert bad.is_error
        await s.call_tool("sandbox_delete", {"sandbox_id": sid})


async def test_browser_tools_without_a_browser_are_tool_errors(corral_home: Path) -> None:
    async with corral_mcp(corral_home) as s:
        sid = (await s.call_tool("sandbox_create", {"ttl": 300})).structured_content["id"]
        r = await s.call_tool("browser_goto", {"sandbox_id": sid, "url": "http://127.0.0.1/"})
        assert r.is_error and text(r)
        assert not (
            await s.call_tool("sandbox_exec", {"sandbox_id": sid, "command": "true"})
        ).is_error
        await s.call_tool("sandbox_delete", {"sandbox_id": sid})
