"""A managed run with the browser tools: scripted model, real corral/browser sandbox, local site."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from rich.console import Console

from runtime.agents.browser_tools import BrowserRefusalWatcher, BrowserTools
from runtime.agents.spec import AgentSpec
from runtime.agents.tools import Toolbox
from runtime.cli.render import EventPrinter
from runtime.events import EventBus
from runtime.providers.scripted import ScriptedCall, ScriptedProvider, ScriptedTurn
from runtime.runner import Runner, RunOptions
from runtime.settings import Settings
from runtime.store.base import EventRecord
from runtime.store.sql import open_store
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.egress import EgressOptions
from sandbox.errors import ToolError
from sandbox.spec import SandboxSpec
from tests.sandbox.browser_site import serve
from tests.sandbox.conftest import backend

__all__ = ["backend"]


def _call(tool: str, /, **arguments: Any) -> ScriptedTurn:
    return ScriptedTurn(tool_calls=(ScriptedCall(tool, arguments),))


@pytest.mark.docker
@pytest.mark.browser
async def test_agent_browses_fills_a_form_and_screenshots(corral_home: Path) -> None:
    with serve() as site:
        base = site.url("site.test")
        turns = [
            _call("browser_goto", url=base + "form"),
            _call("browser_type", ref="e1", value="Ada", submit=False),
            _call("browser_click", ref="e4"),
            _call("browser_screenshot", name="thanks.png"),
            _call("browser_goto", url="http://blocked.example/"),
            ScriptedTurn(text="Done: the form said hello."),
        ]
        settings = Settings(home=corral_home)
        settings.ensure_dirs()
        store = await open_store(settings)
        backend = DockerBackend(
            corral_home,
            egress=EgressOptions(
                allow_private=(f"{site.gateway}:{site.port}",), hosts={"site.test": site.gateway}
            ),
        )
        runner = Runner(
            settings,
            store,
            EventBus(store),
            backend,
            provider_factory=lambda *a, **k: ScriptedProvider(turns),
        )
        agent = AgentSpec.from_dict(
            {
                "name": "surfer",
                "model": "scripted:inline",
                "tools": ["browser", "files"],
                "network": {"mode": "allowlist", "allow": ["site.test"]},
            }
        )
        try:
            rec = await runner.create(
                agent, "fill the form", options=RunOptions(keep_sandbox=False)
            )
            final = await runner.start(rec)
            events = await store.list_events(rec.id)
        finally:
            await runner.aclose()
            for h in await backend.list():
                await backend.destroy(h.id)
            await backend.reconcile(adopt=False)
            await backend.aclose()
            await store.aclose()

    assert final.status == "completed", final
    results = [
        e.payload["step"]
        for e in events
        if e.event_type == "step.start" and e.payload["step"]["type"] == "function_result"
    ]
    assert [r["name"] for r in results] == [
        "browser_goto",
        "browser_type",
        "browser_click",
        "browser_screenshot",
        "browser_goto",
    ]
    assert not any(r["is_error"] for r in results[:4]), results
    assert results[0]["result"].startswith("Page: Contact — ")
    assert '[e1] textbox "Your name"' in results[0]["result"]
    assert results[2]["result"].startswith("Page: Thanks — ")
    assert "Hello, Ada!" in results[2]["result"]
    assert "saved /workspace/out/thanks.png" in results[3]["result"]
    assert "refused (not_allowed)" in results[4]["result"]
    artifacts = [
        e.payload["artifact"]["path"] for e in events if e.event_type == "artifact.created"
    ]
    assert "thanks.png" in {Path(p).name for p in artifacts}
    refused = [e.payload for e in events if e.event_type == "network.refused"]
    # (Chromium may ask twice, e.g. for the favicon; only the agent's host appears.)
    assert {(r["host"], r["port"], r["reason"]) for r in refused} == {
        ("blocked.example", 80, "not_allowed")
    }


def test_live_view_shows_the_page_of_browser_steps() -> None:
    out = io.StringIO()
    printer = EventPrinter(Console(file=out, width=200, color_system=None))

    def ev(i: int, t: str, payload: dict[str, Any]) -> EventRecord:
        return EventRecord(event_id=i, interaction_id="int-1", event_type=t, payload=payload)

    call = {"type": "function_call", "name": "browser_goto", "arguments": {"url": "http://a.test/"}}
    result = {
        "type": "function_result",
        "name": "browser_goto",
        "result": "Page: Example Domain — http://a.test/\n# Example",
        "is_error": False,
    }
    printer(ev(1, "step.start", {"index": 1, "step": call}))
    printer(ev(2, "step.start", {"index": 2, "step": result}))
    printer(ev(3, "network.refused", {"host": "b.test", "port": 443, "reason": "not_allowed"}))
    text = out.getvalue()
    assert "browser_goto url=http://a.test/" in text
    assert "Example Domain — http://a.test/" in text
    assert "network refused b.test:443 (not_allowed)" in text


def test_browser_tools_are_offered_only_with_a_browser_and_evaluate_is_opt_in() -> None:
    sandbox = cast(Sandbox, SimpleNamespace(browser=object()))
    names = ["browser", "exec"]

    def offered(**kw: Any) -> set[str]:
        return {s.name for s in Toolbox(sandbox, names, **kw).specs}

    assert offered() == {"exec"}  # the image has no browser
    assert {"browser_goto", "browser_click", "browser_screenshot"} <= offered(browser=True)
    assert "browser_evaluate" not in offered(browser=True)
    assert "browser_evaluate" in offered(browser=True, browser_evaluate=True)
    assert not any(
        n.startswith("browser_")
        for n in {s.name for s in Toolbox(sandbox, ["exec"], browser=True).specs}
    )


@pytest.mark.docker
@pytest.mark.browser
async def test_a_local_file_is_an_error_result_and_the_run_goes_on(corral_home: Path) -> None:
    turns = [
        _call("browser_goto", url="file:///etc/passwd"),
        _call("browser_tabs", action="open", url="chrome://version"),
        ScriptedTurn(text="Could not read it."),
    ]
    settings = Settings(home=corral_home)
    settings.ensure_dirs()
    store = await open_store(settings)
    backend = DockerBackend(corral_home)
    runner = Runner(
        settings,
        store,
        EventBus(store),
        backend,
        provider_factory=lambda *a, **k: ScriptedProvider(turns),
    )
    agent = AgentSpec.from_dict(
        {"name": "snoop", "model": "scripted:inline", "tools": ["browser"], "network": "none"}
    )
    try:
        rec = await runner.create(
            agent, "read the passwords", options=RunOptions(keep_sandbox=False)
        )
        final = await runner.start(rec)
        events = await store.list_events(rec.id)
    finally:
        await runner.aclose()
        for h in await backend.list():
            await backend.destroy(h.id)
        await backend.aclose()
        await store.aclose()

    assert final.status == "completed", final
    results = [
        e.payload["step"]
        for e in events
        if e.event_type == "step.start" and e.payload["step"]["type"] == "function_result"
    ]
    assert [(r["name"], r["is_error"]) for r in results] == [
        ("browser_goto", True),
        ("browser_tabs", True),
    ]
    assert "refused to open 'file:///etc/passwd'" in results[0]["result"]
    assert "refused to open 'chrome://version'" in results[1]["result"]
    assert not any("root:x:0:0" in r["result"] for r in results)
    refused = [e.payload for e in events if e.event_type == "network.refused"]
    assert [(r["url"], r["source"]) for r in refused] == [
        ("file:///etc/passwd", "browser:goto"),
        ("chrome://version", "browser:goto"),
    ]


@pytest.mark.docker
@pytest.mark.browser
async def test_refused_navigations_become_network_refused_events(backend: DockerBackend) -> None:
    emitted: list[tuple[str, dict[str, Any]]] = []

    async def emit(event_type: str, payload: dict[str, Any]) -> None:
        emitted.append((event_type, payload))

    async with await Sandbox.create(
        SandboxSpec(image="corral/browser", network="none"), backend=backend
    ) as sb:
        with contextlib.suppress(ToolError):
            await sb.browser.goto("file:///etc/hostname", timeout=10)  # before the run
        watcher = BrowserRefusalWatcher(sb, emit)
        await watcher.start()
        assert await watcher.scan() == 0  # earlier refusals are not repeated
        tools = BrowserTools(sb, output_dir="/workspace/out")
        with pytest.raises(ToolError, match="refused to open"):
            await tools.call("browser_goto", {"url": "file:///etc/passwd"})
        assert await watcher.scan() == 1
        assert await watcher.scan() == 0
    assert emitted == [
        (
            "network.refused",
            {
                "sandbox_id": sb.id,
                "host": "file:///etc/passwd",
                "port": 0,
                "reason": "scheme_not_allowed",
                "message": emitted[0][1]["message"],
                "url": "file:///etc/passwd",
                "scheme": "file",
                "source": "browser:goto",
            },
        )
    ]
    assert "only http:// and https://" in emitted[0][1]["message"]
