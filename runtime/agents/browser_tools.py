"""The browser as model-facing tools (`browser_*`), offered when an agent lists `browser`
and its sandbox image has a browser.

Every result starts with one line `Page: <title> — <url>` (the CLI live view shows it); actions
that change the page append a fresh snapshot, so the model sees the element refs it needs for
the next click without another call. Screenshots, PDFs and downloads go under the run's
output folder, so they become artifacts.

The browser opens only http(s) pages: a refused `goto` is an error result the model can read
("refused to open 'file:///etc/passwd': ..."), and a page's own refused navigation is a note
on the result. `BrowserRefusalWatcher` turns the sandbox's log of refused navigations into
`network.refused` events, like `RefusalWatcher` does for the egress proxy.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from runtime.providers.base import ToolSpec
from sandbox.api import Sandbox
from sandbox.browser import BrowserRefusal, BrowserResult, PageInfo
from sandbox.errors import ToolError

SNAPSHOT_CHARS = 8_000
TEXT_CHARS = 16_000
DEFAULT_TIMEOUT = 30.0
PAGE_CHANGING = frozenset({"goto", "click", "type", "back", "forward", "tabs", "press"})

_TARGET = {
    "ref": {"type": "string", "description": "Element ref from the snapshot, e.g. e12."},
    "text": {"type": "string", "description": "Visible text of the element (if no ref)."},
}
_TIMEOUT = {"type": "number", "description": "Seconds (default 30)."}


def _spec(name: str, doc: str, props: dict[str, Any], required: Sequence[str] = ()) -> ToolSpec:
    schema = {
        "type": "object",
        "properties": {**props, "timeout": _TIMEOUT},
        "required": list(required),
    }
    return ToolSpec(f"browser_{name}", doc, schema)


SPECS: dict[str, ToolSpec] = {
    s.name: s
    for s in (
        _spec(
            "goto",
            "Open a URL in the browser. Returns the page title, URL and a snapshot of the page "
            "with element refs ([e12]) to use with browser_click / browser_type.",
            {"url": {"type": "string"}},
            ["url"],
        ),
        _spec(
            "snapshot",
            "Outline of the visible page: headings, text and interactive elements with refs.",
            {},
        ),
        _spec(
            "read",
            "The page's readable text (its main content when marked up), for reading articles.",
            {"max_chars": {"type": "integer", "description": f"Default {TEXT_CHARS}."}},
        ),
        _spec("click", "Click an element (by ref from the snapshot, or by visible text).", _TARGET),
        _spec(
            "type",
            "Type into a field (or choose an option of a select) found by ref; submit=true "
            "presses Enter afterwards.",
            {
                **_TARGET,
                "value": {"type": "string", "description": "Text to enter / option to choose."},
                "submit": {"type": "boolean"},
            },
            ["value"],
        ),
        _spec(
            "press",
            "Press a key (Enter, Tab, Escape, ArrowDown, Control+A ...), on an element or the page.",
            {"key": {"type": "string"}, "ref": _TARGET["ref"]},
            ["key"],
        ),
        _spec(
            "scroll",
            "Scroll the page a screen down or up, or an element (ref) into view.",
            {"direction": {"type": "string", "enum": ["down", "up"]}, "ref": _TARGET["ref"]},
        ),
        _spec("back", "Go back in the tab's history.", {}),
        _spec("forward", "Go forward in the tab's history.", {}),
        _spec(
            "wait",
            "Wait until some text appears on the page, or for a number of seconds.",
            {"text": {"type": "string"}, "seconds": {"type": "number"}},
        ),
        _spec(
            "tabs",
            "Manage tabs: list them, open a new one (optionally at url), switch to or close one.",
            {
                "action": {"type": "string", "enum": ["list", "open", "switch", "close"]},
                "index": {"type": "integer"},
                "url": {"type": "string"},
            },
            ["action"],
        ),
        _spec(
            "screenshot",
            "Save a PNG screenshot of the page (or of an element by ref) as a run artifact.",
            {
                "name": {"type": "string", "description": "File name, e.g. results.png."},
                "full_page": {"type": "boolean"},
                "ref": _TARGET["ref"],
            },
        ),
        _spec(
            "pdf",
            "Save the page as a PDF run artifact.",
            {"name": {"type": "string", "description": "File name, e.g. page.pdf."}},
        ),
        _spec(
            "download",
            "Download a file by clicking an element (ref) or from a URL; it is saved as a run "
            "artifact under downloads/.",
            {"ref": _TARGET["ref"], "url": {"type": "string"}},
        ),
    )
}
EVALUATE = _spec(
    "evaluate",
    "Run a JavaScript expression or function in the page and return its JSON value.",
    {"expression": {"type": "string", "description": "e.g. () => document.title"}},
    ["expression"],
)


def browser_specs(*, evaluate: bool = False) -> list[ToolSpec]:
    return [*SPECS.values(), *([EVALUATE] if evaluate else [])]


async def image_has_browser(sandbox: Sandbox) -> bool:
    """True when the sandbox's guest can import Playwright (image corral/browser)."""
    info = await sandbox.rpc.info(timeout=10)
    return bool(info.get("playwright"))


class BrowserTools:
    """Runs `browser_*` tool calls against a sandbox's browser; returns text for the model."""

    def __init__(self, sandbox: Sandbox, *, output_dir: str, evaluate: bool = False) -> None:
        self.browser = sandbox.browser
        self.output_dir = output_dir.rstrip("/")
        self.specs = browser_specs(evaluate=evaluate)
        self.names = {s.name for s in self.specs}
        self._saved = 0

    async def call(self, name: str, args: dict[str, Any]) -> str:
        """Text for the model; raises ToolError / KeyError / TypeError / ValueError on failure."""
        action = name.removeprefix("browser_")
        timeout = float(args.get("timeout") or DEFAULT_TIMEOUT)
        b = self.browser
        extra = ""
        if action == "goto":
            r = await b.goto(_s(args, "url"), timeout=timeout)
            extra = f"HTTP status: {r.data.get('status')}"
        elif action == "snapshot":
            r = await b.snapshot(max_chars=SNAPSHOT_CHARS, timeout=timeout)
            return _page_line(r.page) + "\n" + _snapshot_text(r)
        elif action == "read":
            limit = int(args.get("max_chars") or TEXT_CHARS)
            r = await b.call("text", max_chars=limit, timeout=timeout)
            more = (
                f"\n[... cut at {limit} of {r.data.get('length')} characters]"
                if r.data.get("truncated")
                else ""
            )
            return f"{_page_line(r.page)}\n{r.data.get('text', '')}{more}"
        elif action == "click":
            r = await b.click(_opt(args, "ref"), text=_opt(args, "text"), timeout=timeout)
        elif action == "type":
            r = await b.fill(
                _opt(args, "ref"), _s(args, "value"), text=_opt(args, "text"),
                submit=bool(args.get("submit")), timeout=timeout,
            )  # fmt: skip
        elif action == "press":
            r = await b.press(_s(args, "key"), ref=_opt(args, "ref"), timeout=timeout)
        elif action == "scroll":
            r = await b.scroll(
                str(args.get("direction") or "down"), ref=_opt(args, "ref"), timeout=timeout
            )
            if "scroll_y" in r.data:
                extra = f"scrolled to y={r.data['scroll_y']} of {r.data['page_height']}"
        elif action == "back":
            r = await b.back(timeout=timeout)
        elif action == "forward":
            r = await b.forward(timeout=timeout)
        elif action == "wait":
            seconds = args.get("seconds")
            r = await b.wait(
                float(seconds) if seconds else None, text=_opt(args, "text"), timeout=timeout
            )
        elif action == "tabs":
            return await self._tabs(args, timeout)
        elif action in ("screenshot", "pdf"):
            ext = "png" if action == "screenshot" else "pdf"
            path = self._artifact_path(args.get("name"), ext)
            if action == "screenshot":
                saved = await b.screenshot(
                    path,
                    full_page=bool(args.get("full_page")),
                    ref=_opt(args, "ref"),
                    timeout=timeout,
                )
            else:
                saved = await b.pdf(path, timeout=timeout)
            return f"{_page_line(saved.page)}\nsaved {saved.path} ({saved.size} bytes)"
        elif action == "download":
            saved = await b.download(
                _opt(args, "ref"), url=_opt(args, "url"), folder=f"{self.output_dir}/downloads",
                timeout=timeout,
            )  # fmt: skip
            return f"{_page_line(saved.page)}\ndownloaded {saved.path} ({saved.size} bytes)"
        elif action == "evaluate" and name in self.names:
            value = await b.evaluate(_s(args, "expression"), timeout=timeout)
            return f"result: {value!r}"[:TEXT_CHARS]
        else:
            raise ValueError(f"unknown browser tool {name}")
        return await self._after_change(r, extra)

    async def _tabs(self, args: dict[str, Any], timeout: float) -> str:
        what = str(args.get("action") or "list")
        b = self.browser
        if what == "open":
            r = await b.tab_open(_opt(args, "url"), timeout=timeout)
            return await self._after_change(r, "opened a new tab")
        if what == "switch":
            r = await b.tab_switch(int(args["index"]), timeout=timeout)
            return await self._after_change(r, "")
        if what == "close":
            index = args.get("index")
            r = await b.tab_close(int(index) if index is not None else None, timeout=timeout)
            return await self._after_change(r, "closed the tab")
        if what != "list":
            raise ValueError("action must be list, open, switch or close")
        tabs = await b.tabs(timeout=timeout)
        lines = [
            f"{'*' if t.get('current') else ' '} [{t.get('index')}] {t.get('title')} — {t.get('url')}"
            for t in tabs
        ]
        return "Tabs (* = current):\n" + "\n".join(lines)

    async def _after_change(self, r: BrowserResult, extra: str) -> str:
        parts = [_page_line(r.page)]
        if r.notice:
            parts.append(f"Note: {r.notice}")
        if extra:
            parts.append(extra)
        snap = await self.browser.snapshot(max_chars=SNAPSHOT_CHARS)
        parts.append(_snapshot_text(snap))
        return "\n".join(parts)

    def _artifact_path(self, name: Any, ext: str) -> str:
        if not name:
            self._saved += 1
            stem = "screenshot" if ext == "png" else "page"
            return f"{self.output_dir}/browser/{stem}-{self._saved}.{ext}"
        base = str(name).replace("\\", "/").rsplit("/", 1)[-1] or f"page.{ext}"
        if not base.lower().endswith("." + ext):
            base += "." + ext
        return f"{self.output_dir}/{base}"


Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
_END = 1 << 62
"""An offset past any log: `refusals` returns the log's real end for it."""


def refusal_event(sandbox_id: str, r: BrowserRefusal) -> dict[str, Any]:
    """The `network.refused` payload of a refused navigation: the egress proxy's fields
    (`host` is the URL, `port` 0: a local file has neither) plus `url`, `scheme`, `source`."""
    return {
        "sandbox_id": sandbox_id,
        "host": r.url,
        "port": 0,
        "reason": r.reason,
        "message": r.detail,
        "url": r.url,
        "scheme": r.scheme,
        "source": f"browser:{r.source}",
    }


class BrowserRefusalWatcher:
    """Emits one `network.refused` event per navigation the sandbox's browser refused.

    Run `start()` when the run starts (earlier refusals in a reused sandbox are not
    repeated) and `scan()` after each tool call; a scan is one cheap guest call that never
    starts Chromium.
    """

    def __init__(self, sandbox: Sandbox, emit: Emit) -> None:
        self.sandbox = sandbox
        self.emit = emit
        self.offset: int | None = None

    async def start(self) -> None:
        try:
            _, self.offset = await self.sandbox.browser.refusals(_END)
        except ToolError:  # a guest from before the refusal log: nothing to watch
            self.offset = None

    async def scan(self) -> int:
        if self.offset is None:
            return 0
        refusals, self.offset = await self.sandbox.browser.refusals(self.offset)
        for r in refusals:
            await self.emit("network.refused", refusal_event(self.sandbox.id, r))
        return len(refusals)


def _page_line(page: PageInfo) -> str:
    tabs = f" [tab {page.tab + 1}/{page.tabs}]" if page.tabs > 1 else ""
    return f"Page: {page.title or '(untitled)'} — {page.url}{tabs}"


def _snapshot_text(r: BrowserResult) -> str:
    text = str(r.data.get("snapshot", "")) or "(the page shows nothing)"
    if r.data.get("truncated"):
        text += "\n[... snapshot cut; scroll or use browser_read for more]"
    return text


def _s(args: dict[str, Any], key: str) -> str:
    value = args[key]
    if not isinstance(value, str):
        raise TypeError(f"{key} must be a string")
    return value


def _opt(args: dict[str, Any], key: str) -> str | None:
    value = args.get(key)
    return str(value) if value not in (None, "") else None
