"""The browser tool in a real corral/browser sandbox, reaching a local site through `allowlist`."""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio

from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.browser import BrowserResult
from sandbox.egress import EgressOptions
from sandbox.errors import ToolError
from sandbox.spec import SandboxSpec
from tests.sandbox.browser_site import CSV, Site, serve

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]
HOST = "site.test"


@dataclass
class Env:
    sb: Sandbox
    site: Site

    def url(self, path: str = "/") -> str:
        return self.site.url(HOST, path)


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve() as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def env(session_root: Path, site: Site) -> AsyncIterator[Env]:
    home = Path(tempfile.mkdtemp(prefix="browser-", dir=session_root))
    # The site is on a private address (the Docker bridge gateway): the operator opts in to
    # exactly that address and port, and maps the test name to it.
    options = EgressOptions(
        allow_private=(f"{site.gateway}:{site.port}",), hosts={HOST: site.gateway}
    )
    be = DockerBackend(home, egress=options)
    spec = SandboxSpec(image="corral/browser", network="allowlist", allowlist=(HOST,))
    try:
        sb = await Sandbox.create(spec, backend=be)
        yield Env(sb, site)
    finally:
        for h in await be.list():
            await be.destroy(h.id)
        await be.reconcile(adopt=False)
        await be.aclose()


def _ref(snapshot: BrowserResult, pattern: str) -> str:
    for line in str(snapshot.data["snapshot"]).splitlines():
        if re.search(pattern, line):
            m = re.search(r"\[(e\d+)\]", line)
            if m:
                return m.group(1)
    raise AssertionError(f"no element matching {pattern!r} in:\n{snapshot.data['snapshot']}")


async def test_navigate_snapshot_and_click_by_ref(env: Env) -> None:
    r = await env.sb.browser.goto(env.url())
    assert (r.page.title, r.data["status"]) == ("Corral Test Site", 200)
    snap = await env.sb.browser.snapshot()
    assert "# Welcome" in snap.data["snapshot"]
    about = _ref(snap, r'link "About us" -> /about')
    # Refs are stable: a second snapshot of the same page gives the same ones.
    assert _ref(await env.sb.browser.snapshot(), r'link "About us"') == about
    r = await env.sb.browser.click(about)
    assert r.page.url == env.url("/about") and r.page.title == "About"
    assert "marmalade" in await env.sb.browser.text()
    r = await env.sb.browser.back()
    assert r.page.title == "Corral Test Site"
    r = await env.sb.browser.forward()
    assert r.page.title == "About"


async def test_form_fill_and_submit(env: Env) -> None:
    await env.sb.browser.goto(env.url("/form"))
    snap = await env.sb.browser.snapshot()
    await env.sb.browser.fill(_ref(snap, r'textbox "Your name"'), "Grace")
    await env.sb.browser.fill(_ref(snap, r'combobox "Colour"'), "blue")
    await env.sb.browser.click(_ref(snap, r'checkbox "Newsletter"'))
    assert 'checkbox "Newsletter" checked' in (await env.sb.browser.snapshot()).data["snapshot"]
    r = await env.sb.browser.click(_ref(snap, r'button "Send"'))
    assert r.page.title == "Thanks"
    text = await env.sb.browser.text()
    assert "Hello, Grace!" in text and "Colour: blue. Newsletter: yes." in text
    # By selector and Enter, too.
    await env.sb.browser.goto(env.url("/form"))
    r = await env.sb.browser.fill(selector="#name", value="Linus", submit=True)
    assert r.page.title == "Thanks" and "Hello, Linus!" in await env.sb.browser.text()


async def test_js_rendered_page(env: Env) -> None:
    await env.sb.browser.goto(env.url("/js"))
    await env.sb.browser.wait(text="Rendered by JavaScript", timeout=10)
    snap = await env.sb.browser.snapshot()
    assert "Rendered by JavaScript" in snap.data["snapshot"]
    await env.sb.browser.click(_ref(snap, r'button "Reveal"'))
    assert "Revealed 2" in await env.sb.browser.text()


async def test_screenshot_pdf_and_download_land_in_the_workspace(env: Env) -> None:
    await env.sb.browser.goto(env.url())
    shot = await env.sb.browser.screenshot("out/home.png", full_page=True)
    assert shot.path == "/workspace/out/home.png" and shot.size > 1000
    assert (await env.sb.files.read(shot.path))[:8] == b"\x89PNG\r\n\x1a\n"
    default = await env.sb.browser.screenshot()
    assert default.path.startswith("/workspace/out/browser/") and default.path.endswith(".png")
    pdf = await env.sb.browser.pdf("out/home.pdf")
    assert (await env.sb.files.read(pdf.path))[:5] == b"%PDF-"
    snap = await env.sb.browser.snapshot()
    dl = await env.sb.browser.download(_ref(snap, r'link "Report \(CSV\)"'))
    assert dl.path == "/workspace/out/downloads/report.csv"
    assert await env.sb.files.read(dl.path) == CSV
    again = await env.sb.browser.download(url=env.url("/files/report.csv"), folder="dl")
    assert again.path == "/workspace/dl/report.csv"
    with pytest.raises(ToolError, match=r"outside the workspace|not allowed"):
        await env.sb.browser.screenshot("/etc/evil.png")


async def test_tabs(env: Env) -> None:
    await env.sb.browser.goto(env.url())
    snap = await env.sb.browser.snapshot()
    r = await env.sb.browser.click(_ref(snap, r'link "About in a new tab"'))
    assert r.notice and "new tab" in r.notice
    assert (r.page.title, r.page.tabs, r.page.tab) == ("About", 2, 1)
    tabs = await env.sb.browser.tabs()
    assert [t["title"] for t in tabs] == ["Corral Test Site", "About"]
    r = await env.sb.browser.tab_switch(0)
    assert r.page.title == "Corral Test Site"
    r = await env.sb.browser.tab_open(env.url("/form"))
    assert (r.page.title, r.page.tabs) == ("Contact", 3)
    await env.sb.browser.tab_close()
    await env.sb.browser.tab_close(1)
    assert len(await env.sb.browser.tabs()) == 1


async def test_evaluate_and_errors(env: Env) -> None:
    await env.sb.browser.goto(env.url())
    assert await env.sb.browser.evaluate("() => document.links.length") == 5
    with pytest.raises(ToolError, match="take a new snapshot"):
        await env.sb.browser.click("e999999")
    with pytest.raises(ToolError, match="Timeout"):
        await env.sb.browser.wait(selector="#never", timeout=1)
    with pytest.raises(ToolError, match="unknown browser action"):
        await env.sb.browser.call("teleport")


async def test_refused_site_is_reported(env: Env) -> None:
    _, start = await env.sb.network_refusals()
    r = await env.sb.browser.goto("http://not-listed.example/", timeout=15)
    assert r.data["status"] == 403  # the proxy's answer, shown as the page
    assert "refused (not_allowed)" in await env.sb.browser.text()
    with pytest.raises(ToolError):
        await env.sb.browser.goto("https://not-listed.example/", timeout=15)
    refusals, _ = await env.sb.network_refusals(start)
    assert {(x.host, x.port) for x in refusals} >= {
        ("not-listed.example", 80),
        ("not-listed.example", 443),
    }


KILL_CHROMIUM = """
import os, signal
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\\0")
    except OSError:
        continue
    if b"chromium" in argv[0] and not any(a.startswith(b"--type=") for a in argv):
        os.kill(int(pid), signal.SIGKILL)
        print(pid)
"""


async def test_crash_restarts_the_browser(env: Env) -> None:
    await env.sb.browser.goto(env.url("/about"))
    killed = await env.sb.exec(["python3", "-c", KILL_CHROMIUM])
    assert killed.exit_code == 0 and killed.stdout.strip()
    try:
        r = await env.sb.browser.goto(env.url())
        assert r.notice is not None and "restarted" in r.notice
    except ToolError as exc:  # the driver noticed the crash during the action, not before
        assert "restarted" in str(exc)
        r = await env.sb.browser.goto(env.url())
    assert r.page.title == "Corral Test Site" and r.page.tabs == 1
