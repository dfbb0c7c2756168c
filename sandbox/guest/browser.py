"""The `browser` tool: one headless Chromium per sandbox, driven by Playwright.

Playwright is imported only when the first browser action runs (the guest stays standard
library only at import time). Its sync API runs on one dedicated thread that owns the
browser; actions are serialised and awaited from the event loop without blocking it.

- Chromium starts lazily and stays up between calls (tabs, cookies and history persist).
- Every action has a timeout (Playwright's own, plus a hard stop a little later): an action
  that hangs past it kills the driver, and the next action starts a fresh browser.
- A crashed browser or tab is restarted and the caller is told so (the page state is lost).
- Elements are addressed by `ref` (from `snapshot`), a CSS `selector`, or visible `text`.
- Files (screenshots, PDFs, downloads) are written through the workspace's strict path rules.
- The egress proxy (`HTTPS_PROXY`, set for `network: allowlist`) is passed to Chromium.
- Only http(s) pages and about:blank are shown (see browser_urls.py): `goto` refuses other
  schemes, and a frame that reaches one anyway is emptied. Refusals are logged for the host
  (the `refusals` action) and reported in the result of the action during which they happened.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import re
import signal
import tempfile
import time
from typing import Any

from . import args as A
from . import browser_urls as U
from . import files
from .errors import INVALID_ARGUMENT, NOT_FOUND, TOOL_ERROR, ToolFailure
from .paths import Workspace

DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 300.0
HARD_GRACE = 15.0
"""Seconds past an action's timeout before the driver is killed."""
LAUNCH_TIMEOUT = 60.0
SNAPSHOT_CHARS = 12_000
TEXT_CHARS = 20_000
MAX_CHARS = 200_000
DOWNLOAD_DIR = "out/downloads"
SHOT_DIR = "out/browser"
SNAPSHOT_JS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "snapshot.js")
_CRASH = re.compile(
    r"Target (page, context or browser )?(has been )?closed|Browser has been closed|"
    r"crash|Connection closed|browser has disconnected",
    re.IGNORECASE,
)
QUIET_ARGS = [
    # Headless in a container: no GPU, /dev/shm is small.
    "--disable-dev-shm-usage",
    "--disable-gpu",
    "--no-first-run",
    # No background traffic of its own: every request the proxy sees comes from the agent.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-sync",
    "--no-pings",
    "--metrics-recording-only",
]
# Chromium still calls some of Google's service hosts on its own (account list, component
# updates) whatever the flags. They go direct rather than through the proxy: the sandbox has no
# route, so they fail at once, and the proxy's refusals stay the agent's own requests.
SERVICE_HOSTS = (
    "accounts.google.com",
    "clients2.google.com",
    "clients2.googleusercontent.com",
    "update.googleapis.com",
    "optimizationguide-pa.googleapis.com",
    "safebrowsing.googleapis.com",
    "content-autofill.googleapis.com",
)
DEBIAN_CHROMIUM = "/usr/lib/chromium/chromium"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")

ACTIONS = frozenset(
    {
        "goto", "click", "fill", "press", "scroll", "back", "forward", "reload", "wait",
        "snapshot", "text", "screenshot", "pdf", "download", "evaluate", "tabs",
        "tab_open", "tab_switch", "tab_close", "state", "close", "refusals",
    }
)  # fmt: skip


def site_packages() -> None:
    """Put the image's site-packages on sys.path: the guest starts with `python3 -S` (site
    costs start-up time, and only the browser needs a package from there)."""
    import site
    import sys

    if not any(p.endswith(("site-packages", "dist-packages")) for p in sys.path):
        site.main()


class BrowserSession:
    """The sandbox's browser. `call(action, args)` is the whole API (see ACTIONS)."""

    def __init__(self, ws: Workspace, env: dict[str, str]) -> None:
        self.ws = ws
        self.env = env
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = asyncio.Lock()
        self._driver: Any = None  # the sync_playwright() context manager
        self._pw: Any = None
        self._browser: Any = None
        self._context: Any = None
        self._current: Any = None
        self._snapshot_js: str | None = None
        self._crashed_pages: set[int] = set()
        self._seq = 0
        self._generation = 0
        """Bumped when a stuck thread is abandoned, so it cannot touch the next browser."""
        self.launches = 0
        self.guard = U.NavigationGuard()
        """Refused navigations (read by the host with the `refusals` action)."""

    # -- the async face -------------------------------------------------------------------
    async def call(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        if action not in ACTIONS:
            raise ToolFailure(INVALID_ARGUMENT, f"unknown browser action {action!r}")
        timeout = min(A.opt_seconds(args, "timeout") or DEFAULT_TIMEOUT, MAX_TIMEOUT)
        if action == "refusals":  # no browser needed, and not queued behind a slow action
            return await self._refusals(A.integer(args, "offset", 0))
        async with self._lock:
            if action == "close":
                await self._shutdown()
                return {"closed": True}
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="corral-browser"
                )
            loop = asyncio.get_running_loop()
            fut = loop.run_in_executor(self._executor, self._run, action, args, timeout)
            try:
                return await asyncio.wait_for(
                    asyncio.shield(fut), timeout + HARD_GRACE + self._launch_allowance()
                )
            except TimeoutError:
                self._abandon()
                raise ToolFailure(
                    TOOL_ERROR,
                    f"browser action {action!r} did not finish within {timeout:g}s; the browser "
                    "was stopped and will restart on the next action (open pages were lost)",
                ) from None
            except asyncio.CancelledError:
                # The caller went away mid-action: let the action finish on its thread (it is
                # bounded by its own timeout) so the browser stays consistent.
                raise

    async def _refusals(self, offset: int) -> dict[str, Any]:
        if self._browser is not None and self._executor is not None and not self._lock.locked():
            async with self._lock:  # deliver what Chromium reported since the last action
                loop = asyncio.get_running_loop()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(loop.run_in_executor(self._executor, self._pump), 2)
        return self.guard.log.since(offset)

    def _launch_allowance(self) -> float:
        return LAUNCH_TIMEOUT if self._browser is None else 0.0

    async def _shutdown(self) -> None:
        if self._executor is None:
            return
        loop = asyncio.get_running_loop()
        try:
            await asyncio.wait_for(loop.run_in_executor(self._executor, self._stop), 20)
        except TimeoutError:
            self._abandon()
            return
        self._executor.shutdown(wait=False)
        self._executor = None

    def close(self) -> None:
        """Guest shutdown: stop the driver and Chromium without waiting on the thread."""
        if self._executor is not None:
            self._abandon()

    def _abandon(self) -> None:
        """Kill the driver (and with it Chromium) and forget the stuck thread."""
        self._generation += 1
        _kill_driver_tree()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._executor = None
        self._driver = self._pw = self._browser = self._context = self._current = None

    # -- on the browser thread ------------------------------------------------------------
    def _run(self, action: str, args: dict[str, Any], timeout: float) -> dict[str, Any]:
        generation = self._generation
        restarted = False
        if self._browser is not None and not self._browser.is_connected():
            self._stop()
            restarted = True
        if self._browser is None:
            self._start()
        self.guard.action += 1
        notices = [self._replace_crashed_tab()]
        first_refusal = self.guard.log.end
        ms = timeout * 1000
        try:
            self._sweep()  # no action reads or acts on a page it may not show
            result: dict[str, Any] = getattr(self, f"_do_{action}")(args, ms)
            self._sweep()
        except ToolFailure:
            raise
        except Exception as exc:
            if generation != self._generation:  # abandoned meanwhile: the state is not ours
                raise ToolFailure(TOOL_ERROR, f"{action}: stopped ({_first_line(exc)})") from None
            if _is_crash(exc) or not self._browser.is_connected():
                self._stop()
                raise ToolFailure(
                    TOOL_ERROR,
                    f"the browser crashed during {action!r} ({_first_line(exc)}); it was "
                    "restarted: open pages, tabs and cookies were lost",
                ) from None
            with contextlib.suppress(Exception):
                self._sweep()
            refused = self.guard.log.since(first_refusal)["refusals"]
            if refused:  # the action failed because a navigation was refused: say that
                raise ToolFailure(TOOL_ERROR, f"{action}: {refused[0]['detail']}") from None
            raise ToolFailure(TOOL_ERROR, f"{action}: {_first_line(exc)}") from None
        result.setdefault("page", self._page_info())
        notices.append(result.pop("notice", None))
        if restarted:
            result["restarted"] = True
            notices = ["the browser had crashed and was restarted; earlier pages were lost"]
        refused = self.guard.log.since(first_refusal)["refusals"]
        if refused:
            result["refused"] = refused
            notices.append(U.refused_notice(refused))
        notice = "; ".join(n for n in notices if n)
        if notice:
            result["notice"] = notice
        return result

    def _pump(self) -> None:
        """One round trip to the browser process (not to a page, which may be busy), so the
        events Playwright has queued for this thread are dispatched."""
        if self._context is not None:
            self._context.cookies("http://corral.invalid/")

    def _sweep(self) -> None:
        if self._context is not None and self.guard.sweep(self._context.pages):
            self._current = None  # a page that could not be emptied was closed

    def _replace_crashed_tab(self) -> str | None:
        page = self._current
        if page is None or id(page) not in self._crashed_pages:
            return None
        self._crashed_pages.discard(id(page))
        with contextlib.suppress(Exception):
            page.close()
        self._current = self._context.new_page()
        return "the tab had crashed and was replaced by a blank one"

    def _watch(self, page: Any) -> None:
        page.on("crash", lambda p: self._crashed_pages.add(id(p)))
        page.on("console", self.guard.on_console)

    def _start(self) -> None:
        try:
            site_packages()
            from playwright.sync_api import sync_playwright
        except ImportError:
            raise ToolFailure(
                TOOL_ERROR, "this sandbox image has no browser (use the corral/browser image)"
            ) from None
        driver = sync_playwright()
        pw = driver.start()
        launch: dict[str, Any] = {
            "headless": True,
            "timeout": LAUNCH_TIMEOUT * 1000,
            "args": QUIET_ARGS,
            # No Google API keys: without them Chromium does not call Google's services.
            "env": {k: v for k, v in self.env.items() if not k.startswith("GOOGLE_")},
        }
        exe = _chromium_binary(self.env.get("CORRAL_CHROMIUM") or os.environ.get("CORRAL_CHROMIUM"))
        if exe:
            launch["executable_path"] = exe
        proxy = self.env.get("HTTPS_PROXY") or self.env.get("HTTP_PROXY")
        if proxy:
            bypass = ",".join(("localhost", "127.0.0.1", *SERVICE_HOSTS))
            launch["proxy"] = {"server": proxy, "bypass": bypass}
        try:
            browser = pw.chromium.launch(**launch)
        except Exception as exc:
            driver.__exit__(None, None, None)
            raise ToolFailure(TOOL_ERROR, f"cannot start Chromium: {_first_line(exc)}") from None
        self._driver, self._pw, self._browser = driver, pw, browser
        self._context = browser.new_context(accept_downloads=True, viewport=None)
        self._context.on("page", self._watch)
        self._context.on("requestfailed", self.guard.on_request_failed)
        self._current = self._context.new_page()
        self.launches += 1

    def _stop(self) -> None:
        for obj in (self._context, self._browser):
            try:
                if obj is not None:
                    obj.close()
            except Exception:  # already gone: closing is best effort
                pass
        try:
            if self._driver is not None:
                self._driver.__exit__(None, None, None)
        except Exception:
            pass
        self._driver = self._pw = self._browser = self._context = self._current = None

    # -- helpers ----------------------------------------------------------------------------
    @property
    def page(self) -> Any:
        pages = self._context.pages
        if self._current is None or self._current.is_closed():
            self._current = pages[-1] if pages else self._context.new_page()
        return self._current

    def _page_info(self) -> dict[str, Any]:
        if self._context is None:
            return {}
        page = self.page
        try:
            title = page.title()
        except Exception:
            title = ""
        pages = self._context.pages
        return {
            "url": page.url,
            "title": title,
            "tab": pages.index(page) if page in pages else 0,
            "tabs": len(pages),
        }

    def _locator(self, args: dict[str, Any]) -> Any:
        ref, selector, text = (A.opt_string(args, k) for k in ("ref", "selector", "text"))
        page = self.page
        if ref:
            if not re.fullmatch(r"e\d+", ref):
                raise ToolFailure(INVALID_ARGUMENT, f"ref {ref!r} is not like e12 (from snapshot)")
            loc = page.locator(f'[data-corral-ref="{ref}"]')
            if loc.count() == 0:
                raise ToolFailure(
                    NOT_FOUND, f"no element {ref} on this page (it changed?): take a new snapshot"
                )
            return loc.first
        if selector:
            return page.locator(selector).first
        if text:
            return page.get_by_text(text).first
        raise ToolFailure(INVALID_ARGUMENT, "give one of ref (from snapshot), selector or text")

    def _follow_new_tab(self, before: int, result: dict[str, Any]) -> dict[str, Any]:
        pages = self._context.pages
        if len(pages) > before:
            self._current = pages[-1]
            with contextlib.suppress(Exception):
                self._current.wait_for_load_state("domcontentloaded", timeout=10_000)
            result["notice"] = "a new tab opened and is now the current tab"
        return result

    def _save(self, path: str, data: bytes) -> dict[str, Any]:
        tmp = files.TempFile(self.ws, path, mode=0o644, parents=True)
        try:
            tmp.write(data)
            tmp.commit()
        except BaseException:
            tmp.abort()
            raise
        return {"path": self._abs(path), "size": len(data)}

    def _abs(self, path: str) -> str:
        return os.path.join(self.ws.root, self.ws.relative(self.ws.names(path)))

    def _default_path(self, folder: str, stem: str, ext: str) -> str:
        self._seq += 1
        return f"{folder}/{stem}-{time.strftime('%Y%m%d-%H%M%S')}-{self._seq}.{ext}"

    # -- actions ----------------------------------------------------------------------------
    def _do_goto(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        url = self._checked(A.string(a, "url"), "goto")
        wait = A.string(a, "wait_until", "load")
        if wait not in ("load", "domcontentloaded", "networkidle", "commit"):
            raise ToolFailure(INVALID_ARGUMENT, f"wait_until {wait!r} is not one of load, ...")
        page = self.page
        for attempt in (1, 2):
            try:
                response = page.goto(url, timeout=ms, wait_until=wait)
                return {"status": response.status if response is not None else None}
            except Exception as exc:
                # A failed navigation commits Chromium's error page a moment later; let it
                # settle so it does not interrupt the next navigation, then retry once if it
                # already did.
                with contextlib.suppress(Exception):
                    page.wait_for_load_state("load", timeout=2000)
                if attempt == 2 or "interrupted by another navigation" not in str(exc):
                    raise
        raise AssertionError("unreachable")

    def _checked(self, url: str, source: str) -> str:
        """The http(s) URL to open for `url`; a refused one is recorded and raises."""
        try:
            return U.goto_target(url)
        except U.SchemeRefused as exc:
            self.guard.log.record(exc.url, source)
            raise

    def _do_click(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        loc = self._locator(a)
        before = len(self._context.pages)
        target = loc.evaluate("e => (e.closest('a[target], form[target]') || {}).target || ''")
        if target and target not in ("_self", "_parent", "_top"):
            # The new tab opens asynchronously: wait for it so the result describes it.
            with self._context.expect_page(timeout=ms):
                loc.click(timeout=ms, button=A.string(a, "button", "left"))
            return self._follow_new_tab(before, {})
        loc.click(
            timeout=ms,
            button=A.string(a, "button", "left"),
            click_count=A.integer(a, "count", 1, low=1),
        )
        self._settle(ms)
        return self._follow_new_tab(before, {})

    def _do_fill(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        loc = self._locator(a)
        value = A.string(a, "value")
        if loc.evaluate("e => e.tagName") == "SELECT":
            loc.select_option(label=value, timeout=ms)
        else:
            loc.fill(value, timeout=ms)
        if A.boolean(a, "submit"):
            loc.press("Enter", timeout=ms)
            self._settle(ms)
        return {}

    def _do_press(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        key = A.string(a, "key")
        if any(a.get(k) for k in ("ref", "selector", "text")):
            self._locator(a).press(key, timeout=ms)
        else:
            self.page.keyboard.press(key)
        self._settle(ms)
        return {}

    def _do_scroll(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        if any(a.get(k) for k in ("ref", "selector", "text")):
            self._locator(a).scroll_into_view_if_needed(timeout=ms)
            return {}
        direction = A.string(a, "direction", "down")
        amount = A.integer(a, "amount", 0)
        sign = {"down": 1, "up": -1}.get(direction)
        if sign is None:
            raise ToolFailure(INVALID_ARGUMENT, "direction must be down or up")
        pos = self.page.evaluate(
            "([s, n]) => { window.scrollBy(0, s * (n || window.innerHeight * 0.9));"
            " return [window.scrollY, document.documentElement.scrollHeight, window.innerHeight]; }",
            [sign, amount],
        )
        return {"scroll_y": pos[0], "page_height": pos[1], "viewport_height": pos[2]}

    def _do_back(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        return {"moved": self.page.go_back(timeout=ms) is not None}

    def _do_forward(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        return {"moved": self.page.go_forward(timeout=ms) is not None}

    def _do_reload(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        self.page.reload(timeout=ms)
        return {}

    def _do_wait(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        page = self.page
        if a.get("selector"):
            page.locator(A.string(a, "selector")).first.wait_for(timeout=ms)
        elif a.get("text"):
            page.get_by_text(A.string(a, "text")).first.wait_for(timeout=ms)
        elif a.get("state"):
            page.wait_for_load_state(A.string(a, "state"), timeout=ms)
        else:
            seconds = A.opt_seconds(a, "seconds") or 1.0
            page.wait_for_timeout(min(seconds * 1000, ms))
        return {}

    def _do_snapshot(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        if self._snapshot_js is None:
            with open(SNAPSHOT_JS_FILE, encoding="utf-8") as f:
                self._snapshot_js = f.read()
        limit = min(A.integer(a, "max_chars", SNAPSHOT_CHARS, low=200), MAX_CHARS)
        snap = self.page.evaluate(self._snapshot_js, limit)
        return {"snapshot": snap["text"], "refs": snap["refs"], "truncated": snap["truncated"]}

    def _do_text(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        limit = min(A.integer(a, "max_chars", TEXT_CHARS, low=200), MAX_CHARS)
        text = self.page.evaluate(
            "() => { const r = document.querySelector('main, article, [role=main]') || document.body;"
            " return r ? r.innerText : ''; }"
        )
        text = re.sub(r"\n\s*\n+", "\n\n", text or "").strip()
        return {"text": text[:limit], "truncated": len(text) > limit, "length": len(text)}

    def _do_screenshot(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        path = A.opt_string(a, "path") or self._default_path(SHOT_DIR, "screenshot", "png")
        if any(a.get(k) for k in ("ref", "selector", "text")):
            data = self._locator(a).screenshot(timeout=ms)
        else:
            data = self.page.screenshot(timeout=ms, full_page=A.boolean(a, "full_page"))
        return self._save(path, data)

    def _do_pdf(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        path = A.opt_string(a, "path") or self._default_path(SHOT_DIR, "page", "pdf")
        return self._save(path, self.page.pdf(print_background=True))

    def _do_download(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        folder = A.string(a, "folder", DOWNLOAD_DIR)
        page = self.page
        with page.expect_download(timeout=ms) as info:
            if a.get("url"):
                page.evaluate(
                    "u => { const l = document.createElement('a'); l.href = u; l.download = '';"
                    " document.body.appendChild(l); l.click(); l.remove(); }",
                    self._checked(A.string(a, "url"), "download"),
                )
            else:
                self._locator(a).click(timeout=ms)
        download = info.value
        name = _UNSAFE_NAME.sub("_", download.suggested_filename).strip("._") or "download"
        with tempfile.TemporaryDirectory(prefix="corral-dl-") as tmp:
            local = os.path.join(tmp, "file")
            download.save_as(local)
            failure = download.failure()
            if failure:
                raise ToolFailure(TOOL_ERROR, f"download failed: {failure}")
            target = f"{folder.rstrip('/')}/{name}"
            out = files.TempFile(self.ws, target, mode=0o644, parents=True)
            size = 0
            try:
                with open(local, "rb") as f:
                    while chunk := f.read(1 << 20):
                        out.write(chunk)
                        size += len(chunk)
                out.commit()
            except BaseException:
                out.abort()
                raise
        return {"path": self._abs(target), "size": size, "url": download.url}

    def _do_evaluate(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        value = self.page.evaluate(A.string(a, "expression"))
        return {"value": value}

    def _do_tabs(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        out = []
        for i, p in enumerate(self._context.pages):
            try:
                title = p.title()
            except Exception:
                title = ""
            out.append({"index": i, "url": p.url, "title": title, "current": p is self.page})
        return {"tab_list": out}

    def _do_tab_open(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        self._current = self._context.new_page()
        if a.get("url"):
            return self._do_goto(a, ms)
        return {}

    def _do_tab_switch(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        pages = self._context.pages
        index = A.integer(a, "index", 0)
        if index >= len(pages):
            raise ToolFailure(INVALID_ARGUMENT, f"no tab {index} (there are {len(pages)})")
        self._current = pages[index]
        self._current.bring_to_front()
        return {}

    def _do_tab_close(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        pages = self._context.pages
        index = A.integer(a, "index", pages.index(self.page) if self.page in pages else 0)
        if index >= len(pages):
            raise ToolFailure(INVALID_ARGUMENT, f"no tab {index} (there are {len(pages)})")
        pages[index].close()
        self._current = None
        return {}

    def _do_state(self, a: dict[str, Any], ms: float) -> dict[str, Any]:
        return {}

    def _settle(self, ms: float) -> None:
        # A click or Enter may start a navigation: wait for it briefly so the result (and the
        # page info returned) describes the new page, without failing when nothing happens.
        with contextlib.suppress(Exception):
            self.page.wait_for_load_state("load", timeout=min(ms, 5000))


def _chromium_binary(configured: str | None) -> str | None:
    """The Chromium binary itself. Debian's /usr/bin/chromium is a shell wrapper that sources
    /etc/chromium.d (Google API keys, remote extensions); we run the binary it wraps."""
    if configured and os.path.isfile(DEBIAN_CHROMIUM):
        try:
            with open(configured, "rb") as f:
                if f.read(2) == b"#!":
                    return DEBIAN_CHROMIUM
        except OSError:
            pass
    return configured


def _is_crash(exc: BaseException) -> bool:
    return bool(_CRASH.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    # Playwright messages carry a long call log after the first lines; the model needs the gist.
    lines = [ln for ln in text.splitlines() if ln.strip()]
    head = " ".join(lines[:2]) if lines else text
    return head[:500]


def _kill_driver_tree() -> None:
    """SIGKILL every descendant of this process that belongs to Playwright or Chromium."""
    me = os.getpid()
    parents: dict[int, int] = {}
    names: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                names[int(entry)] = f.read().decode(errors="replace")
        except OSError:
            continue
        parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    victims = []
    for pid, cmd in names.items():
        p, chain = pid, set()
        while p in parents and p not in chain and p != me:
            chain.add(p)
            p = parents[p]
        if p == me and ("playwright" in cmd or "chrom" in cmd):
            victims.append(pid)
    for pid in victims:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
