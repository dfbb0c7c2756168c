"""The sandbox's browser opens web pages only: never local files, browser-internal pages or
other non-web schemes, whether the agent asks for them or a hostile page tries to reach them.

Chromium runs as the tool server, which can read what the agent cannot (and an agent may have
no exec tool), so `goto file:///etc/passwd` must not return the file. The hostile pages are
served from inside the sandbox on 127.0.0.1 (the browser reaches loopback directly), as an
agent could serve them itself; the sandbox has `network: none`.
"""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import pytest_asyncio

from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.errors import ToolError
from sandbox.spec import SandboxSpec

if TYPE_CHECKING:
    from sandbox.browser import BrowserRefusal

pytestmark = [
    pytest.mark.docker,
    pytest.mark.browser,
    pytest.mark.asyncio(loop_scope="module"),
]
PORT = 8765
SITE = f"http://127.0.0.1:{PORT}"
SECRET = "root:x:0:0"
"""The first line of /etc/passwd: it must never reach the caller."""

HOSTILE_SITE = r"""
import http.server, sys

PAGES = {
    "/": "<title>Home</title><h1>Home</h1>"
         "<a href='file:///etc/passwd'>Passwords</a> <a href='chrome://version'>Version</a>",
    "/location": "<title>Location</title><script>location = 'file:///etc/passwd'</script>",
    "/open": "<title>Open</title><script>window.open('file:///etc/passwd')</script>",
    "/iframe": "<title>Frame</title><iframe src='file:///etc/passwd'></iframe>",
    "/blob": "<title>Blob</title><script>location = URL.createObjectURL("
             "new Blob(['<title>Blobbed</title>made by the page'], {type: 'text/html'}))</script>",
    "/data": "<title>Data</title><script>location = 'data:text/html,<title>D</title>x'</script>",
}


class Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "file:///etc/passwd")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = PAGES.get(self.path, "<title>Not found</title>").encode()
        self.send_response(200 if self.path in PAGES else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""
WAIT_FOR_PORT = f"""
import socket, time
for _ in range(100):
    try:
        socket.create_connection(("127.0.0.1", {PORT}), timeout=1).close()
        break
    except OSError:
        time.sleep(0.05)
else:
    raise SystemExit("the hostile site did not start")
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def sb(session_root: Path) -> AsyncIterator[Sandbox]:
    home = Path(tempfile.mkdtemp(prefix="browser-schemes-", dir=session_root))
    be = DockerBackend(home)
    try:
        # Two Chromiums share this sandbox (the guest's, and one test's own): the pids limit
        # counts threads, and 256 left the second one hanging at launch on a loaded machine.
        spec = SandboxSpec(image="corral/browser", network="none", pids=1024)
        box = await Sandbox.create(spec, backend=be)
        await box.files.write("/workspace/hostile.py", HOSTILE_SITE)
        await box.spawn(["python3", "/workspace/hostile.py", str(PORT)])
        up = await box.exec(["python3", "-c", WAIT_FOR_PORT])
        assert up.exit_code == 0, up.stdout + up.stderr
        yield box
    finally:
        for h in await be.list():
            await be.destroy(h.id)
        await be.aclose()


async def _start(sb: Sandbox) -> int:
    """Offset of the refusal log's end: what happens from now on."""
    _, end = await sb.browser.refusals(1 << 62)
    return end


async def _refused_since(sb: Sandbox, start: int) -> list[BrowserRefusal]:
    refusals, _ = await sb.browser.refusals(start)
    return refusals


async def _assert_nothing_local_shown(sb: Sandbox) -> None:
    """No tab shows a non-web page, and no page text carries the file."""
    for tab in await sb.browser.tabs():
        url = str(tab["url"])
        assert url.startswith(("http://", "https://", "about:blank", "chrome-error:")), tab
    assert SECRET not in await sb.browser.text()
    snap = await sb.browser.snapshot()
    assert SECRET not in str(snap.data["snapshot"])


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:/etc/passwd",
        "FILE:///etc/passwd",
        " file:///etc/passwd",
        "view-source:file:///etc/passwd",
        "chrome://version",
        "chrome://settings",
        "chrome-extension://aapocclcgogkmnckokdopfmhonfmgoek/main.html",
        "devtools://devtools/bundled/inspector.html",
        f"view-source:{SITE}/",
        "data:text/html,<title>Data</title>hello",
        "javascript:document.title='pwned'",
        f"filesystem:{SITE}/temporary/x.html",
        f"blob:{SITE}/0b9a2c6e-5d1f-4b5e-9d0e-1f2a3b4c5d6e",
        "ftp://127.0.0.1/etc/passwd",
        "ws://127.0.0.1:8765/",
        "about:config",
    ],
)
async def test_goto_refuses_every_non_web_url(sb: Sandbox, url: str) -> None:
    start = await _start(sb)
    with pytest.raises(ToolError, match="refused to open") as info:
        await sb.browser.goto(url, timeout=10)
    assert "only http:// and https://" in str(info.value)
    refused = await _refused_since(sb, start)
    assert [(r.url, r.source, r.reason) for r in refused] == [
        (url.strip(), "goto", "scheme_not_allowed")
    ]
    await _assert_nothing_local_shown(sb)


async def test_goto_still_opens_web_pages_and_the_empty_page(sb: Sandbox) -> None:
    start = await _start(sb)
    r = await sb.browser.goto(f"127.0.0.1:{PORT}/")  # a bare host:port gets http://
    assert r.page.title == "Home" and r.page.url == f"{SITE}/"
    r = await sb.browser.goto("about:blank")
    assert r.page.url == "about:blank"
    assert await _refused_since(sb, start) == []


async def test_tab_open_and_download_refuse_local_urls(sb: Sandbox) -> None:
    start = await _start(sb)
    with pytest.raises(ToolError, match="refused to open"):
        await sb.browser.tab_open("file:///etc/passwd", timeout=10)
    await sb.browser.goto(f"{SITE}/")
    with pytest.raises(ToolError, match="refused to open"):
        await sb.browser.download(url="file:///etc/passwd", timeout=10)
    refused = await _refused_since(sb, start)
    assert [(r.url, r.source) for r in refused] == [
        ("file:///etc/passwd", "goto"),
        ("file:///etc/passwd", "download"),
    ]
    await _assert_nothing_local_shown(sb)
    for i in range(len(await sb.browser.tabs()) - 1, 0, -1):
        await sb.browser.tab_close(i)


async def test_clicking_a_link_to_a_local_file_is_refused(sb: Sandbox) -> None:
    await sb.browser.goto(f"{SITE}/")
    start = await _start(sb)
    r = await sb.browser.click(text="Passwords")
    assert r.page.url == f"{SITE}/"  # the page stayed
    assert [x.url for x in r.refused] == ["file:///etc/passwd"]
    assert r.notice is not None and "refused to open file:///etc/passwd" in r.notice
    refused = await _refused_since(sb, start)
    assert [(x.url, x.source) for x in refused] == [("file:///etc/passwd", "page")]
    await _assert_nothing_local_shown(sb)


async def test_clicking_a_link_to_a_browser_page_is_refused(sb: Sandbox) -> None:
    await sb.browser.goto(f"{SITE}/")
    start = await _start(sb)
    r = await sb.browser.click(text="Version")
    assert r.page.url == f"{SITE}/"
    refused = await _refused_since(sb, start)
    assert [(x.scheme, x.source) for x in refused] == [("chrome", "page")]
    await _assert_nothing_local_shown(sb)


async def test_a_redirect_to_a_local_file_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    with pytest.raises(ToolError, match="refused") as info:
        await sb.browser.goto(f"{SITE}/redirect", timeout=10)
    assert "redirect" in str(info.value)
    refused = await _refused_since(sb, start)
    assert [(x.url, x.source) for x in refused] == [(f"{SITE}/redirect", "redirect")]
    await _assert_nothing_local_shown(sb)


async def test_a_script_setting_location_to_a_local_file_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    r = await sb.browser.goto(f"{SITE}/location")
    assert r.page.url == f"{SITE}/location"
    refused = await _refused_since(sb, start)
    assert [(x.url, x.source) for x in refused] == [("file:///etc/passwd", "page")]
    await _assert_nothing_local_shown(sb)


async def test_window_open_of_a_local_file_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    await sb.browser.goto(f"{SITE}/open")
    refused = await _refused_since(sb, start)
    assert [(x.url, x.source) for x in refused] == [("file:///etc/passwd", "page")]
    await _assert_nothing_local_shown(sb)
    for i in range(len(await sb.browser.tabs()) - 1, 0, -1):
        await sb.browser.tab_close(i)


async def test_an_iframe_of_a_local_file_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    await sb.browser.goto(f"{SITE}/iframe")
    refused = await _refused_since(sb, start)
    assert [(x.url, x.source) for x in refused] == [("file:///etc/passwd", "page")]
    await _assert_nothing_local_shown(sb)


async def test_a_page_navigating_itself_to_a_blob_url_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    r = await sb.browser.goto(f"{SITE}/blob")
    assert r.page.url == "about:blank", r.page  # emptied, not shown
    assert [x.scheme for x in r.refused] == ["blob"]
    refused = await _refused_since(sb, start)
    assert [(x.scheme, x.source) for x in refused] == [("blob", "page")]
    await _assert_nothing_local_shown(sb)


async def test_a_page_navigating_itself_to_a_data_url_is_refused(sb: Sandbox) -> None:
    start = await _start(sb)
    r = await sb.browser.goto(f"{SITE}/data")
    assert r.page.url == f"{SITE}/data"
    refused = await _refused_since(sb, start)
    assert [(x.scheme, x.source) for x in refused] == [("data", "page")]
    await _assert_nothing_local_shown(sb)


CHROMIUM_ALONE = r"""
from playwright.sync_api import sync_playwright

with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path="/usr/lib/chromium/chromium", timeout=60_000)
    for url in ("file:///etc/passwd", "file:///proc/self/environ", "view-source:file:///etc/passwd",
                "devtools://devtools/bundled/inspector.html"):
        page = browser.new_page()
        try:
            page.goto(url, timeout=10_000)
            print(url, "OPENED", page.content()[:80].replace("\n", " "))
        except Exception as exc:
            print(url, str(exc).splitlines()[0])
        page.close()
    browser.close()
"""


async def test_chromium_itself_refuses_local_urls(sb: Sandbox) -> None:
    """The image's managed policy binds any Chromium started in it, not only the guest's
    checks: a Chromium driven without them refuses too."""
    r = await sb.exec(
        ["python3", "-u", "-c", CHROMIUM_ALONE], timeout=120
    )  # -u: lines survive a kill
    assert r.exit_code == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 4 and all("ERR_BLOCKED_BY_ADMINISTRATOR" in ln for ln in lines), r.stdout
