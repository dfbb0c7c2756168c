"""Hostile run content in the console: model text, tool output, artifact names and artifact
bytes that are HTML or script must show as text and never run in the console's origin."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import pytest
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import expect

from tests.console.conftest import Console, exec_turn, put_agent, start_run, write_script
from tests.runtime.api.conftest import ServerThread

pytestmark = [pytest.mark.console, pytest.mark.docker]

EVIL_NAME = "<img src=x onerror=window.__pwned=3>.html"
EVIL_TEXT = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'
WRITE_EVIL = (
    "mkdir -p /workspace/out && cd /workspace/out && "
    f"printf '%s' '<script>window.__pwned=4</script><h1>hi</h1>' > '{EVIL_NAME}' && "
    "printf '%s' '<svg xmlns=\"http://www.w3.org/2000/svg\" onload=\"window.__pwned=5\"/>' "
    "> evil.svg && echo '<img src=x onerror=window.__pwned=6>'"
)


def test_html_and_script_from_a_run_render_as_text(
    start_server: Callable[..., ServerThread],
    console: Callable[..., Console],
    tmp_path: Path,
) -> None:
    server = start_server()
    model = write_script(tmp_path, [exec_turn(WRITE_EVIL, EVIL_TEXT), {"text": "<b>done</b>"}])
    put_agent(server, "mallory", model)
    run_id = start_run(server, "mallory", "<script>window.__pwned=7</script>")
    c = console(server)
    response = c.page.goto(f"{server.url}/runs/{run_id}")
    assert response is not None
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    page = c.page

    timeline = page.locator("#timeline")
    expect(page.locator("#run-head")).to_contain_text("completed", timeout=60_000)
    expect(timeline.locator(".step-input")).to_contain_text("<script>window.__pwned=7</script>")
    expect(timeline.locator(".step-model").first).to_contain_text(EVIL_TEXT)
    expect(timeline.locator(".step-model").last).to_contain_text("<b>done</b>")
    expect(timeline.locator(".step-call pre.output")).to_contain_text(
        "<img src=x onerror=window.__pwned=6>"
    )

    evil = page.locator("#artifacts li").filter(has_text=EVIL_NAME)
    expect(evil.locator(".path")).to_have_text(EVIL_NAME)
    evil.get_by_role("button", name="Preview").click()
    expect(evil.locator("pre.file")).to_contain_text("<script>window.__pwned=4</script>")
    svg = page.locator('#artifacts li[data-path="evil.svg"]')
    svg.get_by_role("button", name="Preview").click()
    expect(svg.locator("pre.file")).to_contain_text('onload="window.__pwned=5"')

    with page.expect_download() as info:  # saved, not rendered in this origin
        evil.get_by_role("button", name="Download").click()
    assert Path(info.value.path()).read_bytes().startswith(b"<script>")
    assert page.url == f"{server.url}/runs/{run_id}"

    assert page.evaluate("window.__pwned") is None

    # the raw API download, opened directly, is saved too (attachment, nosniff), not rendered
    raw = f"{server.url}/v1beta/interactions/{run_id}/artifacts/{quote(EVIL_NAME)}"
    # goto raises when the navigation turns into a download: that is the point
    with page.expect_download() as info, contextlib.suppress(PlaywrightError):
        page.goto(raw)
    assert Path(info.value.path()).read_bytes().startswith(b"<script>")
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script, main svg, main iframe").count() == 0
    assert page.locator("b").count() == 0
