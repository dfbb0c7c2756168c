"""`sb.browser`: the sandbox's headless Chromium (image `corral/browser`).

    await sb.browser.goto("https://example.com")
    snap = await sb.browser.snapshot()           # outline with refs: [e3] link "More" -> /more
    await sb.browser.click("e3")
    shot = await sb.browser.screenshot("out/page.png")

One browser per sandbox, started on the first call and kept between calls. Elements are
addressed by `ref` (from `snapshot`), `selector` (CSS) or `text`. Every action takes
`timeout` (seconds, default 30). Failures raise `ToolError`; a crash restarts the browser and
the error says so.

Only http(s) pages (and about:blank) are ever shown: `goto` to `file:`, `chrome:`,
`view-source:`, `data:`, `javascript:` ... raises `InvalidArgument`, and a page's own attempts
(a link, a redirect, a script, a frame) are refused by Chromium. Each refusal is logged in the
guest: `await sb.browser.refusals(offset)`, like `sb.network_refusals` for the egress proxy,
and the refusals that happened during an action are on its result (`BrowserResult.refused`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.api import Sandbox


@dataclass(frozen=True)
class PageInfo:
    url: str
    title: str
    tab: int
    """Index of the current tab."""
    tabs: int
    """Number of open tabs."""


@dataclass(frozen=True)
class BrowserRefusal:
    """A navigation the browser refused: a URL that is not an http(s) page."""

    url: str
    scheme: str
    reason: str
    """`scheme_not_allowed`."""
    source: str
    """Who asked: `goto` or `download` (the caller), `page` (a link, script, frame or
    window of the page), `redirect` (a server's redirect)."""
    detail: str
    ts: float


@dataclass(frozen=True)
class BrowserResult:
    """What an action returns: the current page after it, and action-specific data."""

    page: PageInfo
    data: dict[str, Any]
    notice: str | None = None
    """Something the caller should know (a new tab opened, the browser was restarted, a
    navigation was refused)."""
    refused: tuple[BrowserRefusal, ...] = ()
    """Navigations refused during the action."""


@dataclass(frozen=True)
class SavedFile:
    path: str
    """Absolute path in the sandbox."""
    size: int
    page: PageInfo


def _refusals(raw: Any) -> list[BrowserRefusal]:
    out = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        ts = item.get("ts")
        out.append(
            BrowserRefusal(
                url=str(item.get("url", "")),
                scheme=str(item.get("scheme", "")),
                reason=str(item.get("reason", "")),
                source=str(item.get("source", "")),
                detail=str(item.get("detail", "")),
                ts=float(ts) if isinstance(ts, int | float) else 0.0,
            )
        )
    return out


def _page(raw: Any) -> PageInfo:
    p = raw if isinstance(raw, dict) else {}
    return PageInfo(
        url=str(p.get("url", "")),
        title=str(p.get("title", "")),
        tab=int(p.get("tab", 0)),
        tabs=int(p.get("tabs", 0)),
    )


class Browser:
    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    async def call(
        self, action: str, *, timeout: float | None = None, **args: Any
    ) -> BrowserResult:
        """Run any guest browser action by name (the typed methods below wrap this)."""
        raw = await self._sb._call(self._sb.rpc.browser(action, args, timeout=timeout))
        notice = raw.pop("notice", None)
        page = _page(raw.pop("page", None))
        refused = tuple(_refusals(raw.pop("refused", None)))
        return BrowserResult(page, raw, notice if isinstance(notice, str) else None, refused)

    async def refusals(self, offset: int = 0) -> tuple[list[BrowserRefusal], int]:
        """Navigations the browser refused, numbered from 0 for the sandbox's life; returns
        those numbered `offset` and later, and the offset to pass next time. A huge offset
        returns none and the current end (to start watching from now)."""
        raw = await self._sb._call(self._sb.rpc.browser("refusals", {"offset": offset}))
        end = raw.get("next_offset")
        return _refusals(raw.get("refusals")), end if isinstance(end, int) else offset

    # -- navigation -----------------------------------------------------------------------
    async def goto(
        self, url: str, *, wait_until: str = "load", timeout: float | None = None
    ) -> BrowserResult:
        return await self.call("goto", url=url, wait_until=wait_until, timeout=timeout)

    async def back(self, *, timeout: float | None = None) -> BrowserResult:
        return await self.call("back", timeout=timeout)

    async def forward(self, *, timeout: float | None = None) -> BrowserResult:
        return await self.call("forward", timeout=timeout)

    async def reload(self, *, timeout: float | None = None) -> BrowserResult:
        return await self.call("reload", timeout=timeout)

    async def wait(
        self,
        seconds: float | None = None,
        *,
        selector: str | None = None,
        text: str | None = None,
        state: str | None = None,
        timeout: float | None = None,
    ) -> BrowserResult:
        """Wait for an element (`selector`/`text`), a load `state`, or a number of seconds."""
        return await self.call(
            "wait", seconds=seconds, selector=selector, text=text, state=state, timeout=timeout
        )

    # -- interaction ----------------------------------------------------------------------
    async def click(
        self,
        ref: str | None = None,
        *,
        selector: str | None = None,
        text: str | None = None,
        timeout: float | None = None,
    ) -> BrowserResult:
        return await self.call("click", ref=ref, selector=selector, text=text, timeout=timeout)

    async def fill(
        self,
        ref: str | None = None,
        value: str = "",
        *,
        selector: str | None = None,
        text: str | None = None,
        submit: bool = False,
        timeout: float | None = None,
    ) -> BrowserResult:
        """Type `value` into a field (or pick the option labelled `value` of a select);
        `submit` presses Enter afterwards."""
        return await self.call(
            "fill", ref=ref, value=value, selector=selector, text=text, submit=submit,
            timeout=timeout,
        )  # fmt: skip

    async def press(
        self,
        key: str,
        *,
        ref: str | None = None,
        selector: str | None = None,
        timeout: float | None = None,
    ) -> BrowserResult:
        """Press a key (`Enter`, `Tab`, `Control+A`, ...) on an element or the page."""
        return await self.call("press", key=key, ref=ref, selector=selector, timeout=timeout)

    async def scroll(
        self,
        direction: str = "down",
        amount: int | None = None,
        *,
        ref: str | None = None,
        timeout: float | None = None,
    ) -> BrowserResult:
        """Scroll the page by `amount` pixels (default: a screen), or an element into view."""
        return await self.call(
            "scroll", direction=direction, amount=amount, ref=ref, timeout=timeout
        )

    # -- reading --------------------------------------------------------------------------
    async def snapshot(
        self, *, max_chars: int | None = None, timeout: float | None = None
    ) -> BrowserResult:
        """`data["snapshot"]`: the visible page as an outline with element refs."""
        return await self.call("snapshot", max_chars=max_chars, timeout=timeout)

    async def text(self, *, max_chars: int | None = None, timeout: float | None = None) -> str:
        """The page's readable text (its main/article element when it has one)."""
        r = await self.call("text", max_chars=max_chars, timeout=timeout)
        return str(r.data.get("text", ""))

    async def evaluate(self, expression: str, *, timeout: float | None = None) -> Any:
        """Evaluate JavaScript in the page; returns its JSON-serialisable value."""
        r = await self.call("evaluate", expression=expression, timeout=timeout)
        return r.data.get("value")

    # -- files ----------------------------------------------------------------------------
    async def screenshot(
        self,
        path: str | None = None,
        *,
        full_page: bool = False,
        ref: str | None = None,
        timeout: float | None = None,
    ) -> SavedFile:
        """A PNG saved in the workspace (default under /workspace/out/browser/)."""
        r = await self.call("screenshot", path=path, full_page=full_page, ref=ref, timeout=timeout)
        return _saved(r)

    async def pdf(self, path: str | None = None, *, timeout: float | None = None) -> SavedFile:
        r = await self.call("pdf", path=path, timeout=timeout)
        return _saved(r)

    async def download(
        self,
        ref: str | None = None,
        *,
        url: str | None = None,
        selector: str | None = None,
        text: str | None = None,
        folder: str | None = None,
        timeout: float | None = None,
    ) -> SavedFile:
        """Click an element (or fetch `url`) that downloads a file; it is saved in `folder`
        of the workspace (default /workspace/out/downloads)."""
        r = await self.call(
            "download", ref=ref, url=url, selector=selector, text=text, folder=folder,
            timeout=timeout,
        )  # fmt: skip
        return _saved(r)

    # -- tabs -----------------------------------------------------------------------------
    async def tabs(self, *, timeout: float | None = None) -> list[dict[str, Any]]:
        r = await self.call("tabs", timeout=timeout)
        tabs = r.data.get("tab_list")
        return list(tabs) if isinstance(tabs, list) else []

    async def tab_open(
        self, url: str | None = None, *, timeout: float | None = None
    ) -> BrowserResult:
        return await self.call("tab_open", url=url, timeout=timeout)

    async def tab_switch(self, index: int, *, timeout: float | None = None) -> BrowserResult:
        return await self.call("tab_switch", index=index, timeout=timeout)

    async def tab_close(
        self, index: int | None = None, *, timeout: float | None = None
    ) -> BrowserResult:
        return await self.call("tab_close", index=index, timeout=timeout)

    async def close(self) -> None:
        """Stop Chromium (the next action starts a fresh one)."""
        await self._sb._call(self._sb.rpc.browser("close"))


def _saved(r: BrowserResult) -> SavedFile:
    return SavedFile(path=str(r.data.get("path", "")), size=int(r.data.get("size", 0)), page=r.page)
