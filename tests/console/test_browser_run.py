"""A run that browses a local site: its screenshot shows inline on the run page, and the
navigation the egress rules refused shows as a refusal."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.console.conftest import Console, put_agent, start_run, write_script
from tests.runtime.api.conftest import ServerThread
from tests.sandbox.browser_site import serve

pytestmark = [pytest.mark.console, pytest.mark.docker, pytest.mark.browser]


def _call(tool: str, **arguments: Any) -> dict[str, Any]:
    return {"tool_calls": [{"name": tool, "arguments": arguments}]}


def test_run_page_shows_a_screenshot_inline_and_a_refusal(
    start_server: Callable[..., ServerThread],
    console: Callable[..., Console],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with serve() as site:
        # the egress proxy may reach the test site, by a test hostname (as in the API tests)
        monkeypatch.setenv("CORRAL_EGRESS_ALLOW_PRIVATE", f"{site.gateway}:{site.port}")
        monkeypatch.setenv("CORRAL_EGRESS_HOSTS", f"site.test={site.gateway}")
        server = start_server()
        turns = [
            _call("browser_goto", url=site.url("site.test", "/about")),
            _call("browser_screenshot", name="about.png"),
            _call("browser_goto", url="http://blocked.example/"),
            {"text": "Done: the page said marmalade."},
        ]
        put_agent(
            server,
            "surfer",
            write_script(tmp_path, turns),
            tools=["browser", "files"],
            network={"mode": "allowlist", "allow": ["site.test"]},
        )
        run_id = start_run(server, "surfer", "look at the about page")
        c = console(server, phone=True)
        page = c.open(f"/runs/{run_id}")
        expect(page.locator("#run-head")).to_contain_text("completed", timeout=120_000)

        timeline = page.locator("#timeline")
        expect(timeline.locator(".step-call").first).to_contain_text("marmalade")
        shot = timeline.locator(".step-shot img.shot")
        expect(shot).to_have_count(1)
        expect(timeline.locator(".step-shot")).to_contain_text("about.png")
        shot.scroll_into_view_if_needed()
        page.wait_for_function(
            "() => { const i = document.querySelector('.step-shot img.shot');"
            " return i && i.complete && i.naturalWidth > 0; }"
        )
        assert shot.evaluate("i => i.src").startswith("blob:")
        expect(timeline.locator(".step-refused").first).to_contain_text("blocked.example")
        listed = page.locator('#artifacts li[data-path="about.png"]')
        listed.get_by_role("button", name="Preview").click()
        expect(listed.locator(".preview img.shot")).to_be_visible()
        assert listed.locator(".preview img.shot").evaluate("i => i.naturalWidth") > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
