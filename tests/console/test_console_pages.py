"""Console pages that need no sandbox: the agents page (spec, validation, save)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.console.conftest import Console
from tests.runtime.api.conftest import ServerThread

pytestmark = pytest.mark.console


def test_agents_page_shows_specs_and_validates(
    start_server: Callable[..., ServerThread], console: Callable[..., Console]
) -> None:
    server = start_server()
    r = httpx.post(
        f"{server.url}/v1beta/agents",
        json={"name": "writer", "model": "scripted:demo", "description": "Writes reports",
              "tools": ["exec"], "network": {"mode": "allowlist", "allow": ["example.org"]}},
    )  # fmt: skip
    assert r.status_code == 200, r.text
    c = console(server, phone=True)
    page = c.open("/agents")
    writer = page.locator('#agents li[data-name="writer"]')
    expect(writer).to_contain_text("Writes reports")
    expect(writer).to_contain_text("allowlist: example.org")
    expect(writer).to_contain_text("yours")
    expect(page.locator('#agents li[data-name="demo"]')).to_contain_text("shared")
    writer.locator("summary").click()
    expect(writer.locator("pre.code")).to_contain_text('"model": "scripted:demo"')
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    page.fill("#spec-input", "name: broken\nmodel: scripted:demo\ntools: [exec, teleport]\n")
    page.click("#validate")
    expect(page.locator("#validation")).to_contain_text("Invalid: tools[1]")
    expect(page.locator("#validation")).to_contain_text("teleport")
    expect(page.locator("#save-agent")).to_be_hidden()

    page.fill("#spec-input", "name: reviewer\nmodel: scripted:demo\ntools: [files]\n")
    page.click("#validate")
    expect(page.locator("#validation")).to_contain_text("Valid: agent reviewer")
    assert httpx.get(f"{server.url}/v1beta/agents/reviewer").status_code == 404  # not saved
    page.click("#save-agent")
    expect(page.locator("#validation")).to_contain_text("Saved agent reviewer")
    expect(page.locator('#agents li[data-name="reviewer"]')).to_contain_text("yours")
    assert httpx.get(f"{server.url}/v1beta/agents/reviewer").status_code == 200


def test_runs_list_pages_to_older_runs(
    start_server: Callable[..., ServerThread],
    console: Callable[..., Console],
    script: Callable[..., str],
) -> None:
    server = start_server()
    model = script({"text": "ok"})
    with httpx.Client(base_url=server.url) as http:
        for n in range(103):  # one page is 100 rows
            r = http.post("/v1beta/interactions", json={"model": model, "input": f"task {n}"})
            assert r.status_code == 200, r.text
    c = console(server)
    page = c.open("/")
    rows = page.locator("#runs tbody tr")
    expect(rows).to_have_count(100)
    expect(rows.first).to_contain_text("task 102")
    page.click("#older")
    expect(rows).to_have_count(103)
    expect(rows.last).to_contain_text("task 0")
    expect(page.locator("#older")).to_have_count(0)


def test_run_page_shows_a_failed_runs_error(
    server: ServerThread, console: Callable[..., Console], tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-turns.yaml"
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        json={"model": f"scripted:{missing}", "input": "this will fail"},
    )
    assert r.status_code == 200 and r.json()["status"] == "failed", r.text
    error = r.json()["errors"][0]
    c = console(server)
    page = c.open(f"/runs/{r.json()['id']}")
    expect(page.locator("#run-head .status")).to_have_text("failed")
    expect(page.locator("#run-head")).to_contain_text(f"{error['code']}: {error['message']}")
    expect(page.locator("#timeline .step-error")).to_contain_text(error["code"])
    expect(page.locator("#timeline .step-input")).to_contain_text("this will fail")
    expect(page.locator("#cancel")).to_be_hidden()


SSE_TEXT = (
    ": keep-alive\r\n\r\n"
    'id: 1\r\nevent: step.start\r\ndata: {"index": 0,\r\ndata:  "step": {"type": "x"}}\r\n\r\n'
    'id: 2\revent: step.delta\rdata: {"delta": "a\\nb"}\r\r'
    "data: not json\n\n"
    'id: 3\nevent: interaction.completed\ndata: {"done": true}\n\n'
    'id: 4\nevent: cut\ndata: {"partial": '
)


def test_console_parsers_in_the_browser(
    server: ServerThread, console: Callable[..., Console]
) -> None:
    """The SSE reader gets the same events however the stream is cut (CRLF split across
    pieces included); the CSV reader handles quotes, doubled quotes and newlines in fields."""
    page = console(server).open("/")
    script = """async ([text, size]) => {
        const { SseParser } = await import('/console/api.js');
        const parser = new SseParser();
        const events = [];
        for (let i = 0; i < text.length; i += size) events.push(...parser.push(text.slice(i, i + size)));
        return events;
    }"""
    expected = [
        {"type": "step.start", "id": "1", "data": {"index": 0, "step": {"type": "x"}}},
        {"type": "step.delta", "id": "2", "data": {"delta": "a\nb"}},
        {"type": "interaction.completed", "id": "3", "data": {"done": True}},
    ]
    for size in (1, 2, 3, 7, len(SSE_TEXT)):
        assert page.evaluate(script, [SSE_TEXT, size]) == expected, size

    rows = page.evaluate(
        """async (text) => (await import('/console/artifacts.js')).parseCsv(text)""",
        'n,"name, full","note"\r\n1,"Ada ""the first""","two\nlines"\n2,,x',
    )
    assert rows == [
        ["n", "name, full", "note"],
        ["1", 'Ada "the first"', "two\nlines"],
        ["2", "", "x"],
    ]
