"""What the sandbox's browser may show: http(s) pages and the empty page, nothing local.

Chromium runs with the tool server's user, which can read files the agent cannot (and the
agent may have no exec tool at all), so `file:`, `chrome:`, `view-source:` and the other
non-web schemes are refused. Two layers enforce it:

- the browser image's managed Chromium policy (`images/browser/policies/corral.json`:
  `URLBlocklist: ["*", ...]`, `URLAllowlist: ["http://*", "https://*", "about:blank"]`),
  which Chromium applies to every navigation, redirect and frame whoever starts it;
- this module, used by `browser.py`: `goto` targets are checked before navigating, and every
  frame's URL is checked after each action (a fallback for images without the policy).

`NavigationGuard` records what Chromium refused (its console and network events) and empties
frames that show a non-web URL anyway. Every refusal is recorded in a `RefusalLog`; the host
reads it with the `refusals` action
(`sb.browser.refusals(offset)`), and runs report each one as a `network.refused` event.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from typing import Any

from .errors import INVALID_ARGUMENT, ToolFailure

NAVIGABLE_SCHEMES = frozenset({"http", "https"})
EMPTY_PAGE = "about:blank"
BENIGN_FRAME_URLS = frozenset({"", "about:blank", "about:srcdoc", "chrome-error://chromewebdata/"})
"""What Chromium itself puts in a frame: a new, never loaded or srcdoc frame, the page of a
failed (or refused) load."""
REASON = "scheme_not_allowed"
MAX_KEPT = 1000
URL_CHARS = 500
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)", re.DOTALL)
_HOST_PORT = re.compile(r"\d{1,5}(?:[/?#]|$)")
_RENDERER_REFUSED = re.compile(
    r"Not allowed to (?:load local resource|navigate top frame to \w+ URL): (\S+)"
)
_BLOCKED_ERRORS = ("ERR_BLOCKED_BY_ADMINISTRATOR", "ERR_UNSAFE_REDIRECT", "ERR_DISALLOWED_URL")


def scheme_of(url: str) -> str:
    """The URL's scheme, lower case ("" when it has none)."""
    m = _SCHEME.match(url.strip())
    return m.group(1).lower() if m else ""


def goto_target(url: str) -> str:
    """The URL `goto` navigates to: a bare `host[:port]/path` gets `http://`; anything with a
    scheme other than http(s) (or exactly about:blank) raises `SchemeRefused`."""
    text = url.strip()
    m = _SCHEME.match(text)
    if m is None or _HOST_PORT.match(m.group(2)):  # `localhost:8080/x` has no scheme
        return "http://" + text
    if m.group(1).lower() in NAVIGABLE_SCHEMES and not _has_control(text):
        return text
    if text.lower() == EMPTY_PAGE:
        return EMPTY_PAGE
    raise SchemeRefused(text)


def frame_allowed(url: str) -> bool:
    """True for a URL a frame may show (web pages and Chromium's own blank/error pages)."""
    return url.partition("#")[0] in BENIGN_FRAME_URLS or (
        scheme_of(url) in NAVIGABLE_SCHEMES and not _has_control(url)
    )


def blocked_url_in(message: str) -> str | None:
    """The URL Chromium refused to load, from a console message ("Not allowed to load local
    resource: file:///etc/passwd"), or None."""
    m = _RENDERER_REFUSED.search(message)
    return m.group(1) if m else None


def is_block_error(failure: str | None) -> bool:
    """True for a request failure that means "refused" rather than "unreachable"."""
    return bool(failure) and any(code in str(failure) for code in _BLOCKED_ERRORS)


def _has_control(url: str) -> bool:
    return any(ord(c) < 0x20 for c in url)


class SchemeRefused(ToolFailure):
    """`goto` was asked for a URL the browser may not open."""

    def __init__(self, url: str) -> None:
        self.url = url
        super().__init__(INVALID_ARGUMENT, refusal_message(url))


def refusal_message(url: str) -> str:
    scheme = scheme_of(url) or "?"
    return (
        f"refused to open {_short(url)!r}: the browser opens only http:// and https:// pages "
        f"(and about:blank); {scheme}: URLs (local files, browser-internal pages, scripts and "
        "other schemes) are blocked"
    )


def _short(url: str, limit: int = 200) -> str:
    return url if len(url) <= limit else url[: limit - 1] + "…"


class RefusalLog:
    """Refused navigations, numbered from 0; the last `MAX_KEPT` are kept.

    Written from the browser thread, read from the event loop: a lock keeps both sides whole.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[dict[str, Any]] = []
        self._first = 0
        """Number of the oldest kept entry."""
        self._seen: tuple[object, set[str]] = (None, set())

    @property
    def end(self) -> int:
        with self._lock:
            return self._first + len(self._items)

    def record(
        self, url: str, source: str, detail: str = "", *, once_per: object = None
    ) -> dict[str, Any] | None:
        """Add one refusal and return it. With `once_per` (the action under way), a URL
        reported twice for it (by the console and by the network events of one navigation)
        is recorded once."""
        now = time.time()
        url = url[:URL_CHARS]
        with self._lock:
            if once_per is not None:
                key, urls = self._seen
                if key != once_per:
                    urls = set()
                    self._seen = (once_per, urls)
                if url in urls:
                    return None
                urls.add(url)
            entry = {
                "url": url,
                "scheme": scheme_of(url),
                "reason": REASON,
                "source": source,
                "detail": detail or refusal_message(url),
                "ts": now,
            }
            self._items.append(entry)
            if len(self._items) > MAX_KEPT:
                drop = len(self._items) - MAX_KEPT
                del self._items[:drop]
                self._first += drop
            return entry

    def since(self, offset: int) -> dict[str, Any]:
        """Entries numbered `offset` and later, and the offset to pass next time."""
        with self._lock:
            start = max(offset - self._first, 0)
            items = [dict(e) for e in self._items[start:]]
            return {"refusals": items, "next_offset": self._first + len(self._items)}


class NavigationGuard:
    """Watches the browser (its handlers run on the browser thread) and logs what it refused.

    `action` is the number of the action under way: a navigation reported twice during one
    action (by the console and by the network events) is logged once.
    """

    def __init__(self) -> None:
        self.log = RefusalLog()
        self.action = 0

    def on_console(self, message: Any) -> None:
        # Chromium's renderer refuses a web page's link, location, iframe or window.open to a
        # local URL itself ("Not allowed to load local resource: file:///..."): record it.
        with contextlib.suppress(Exception):
            url = blocked_url_in(message.text)
            if url is not None:
                self.log.record(url, "page", once_per=self.action)

    def on_request_failed(self, request: Any) -> None:
        with contextlib.suppress(Exception):
            failure = str(request.failure or "")
            if not is_block_error(failure):
                return
            url = request.url
            if "ERR_UNSAFE_REDIRECT" in failure:
                detail = (
                    f"refused: {url} redirected to a URL that is not an http(s) page "
                    f"({failure}); the browser opens only http:// and https:// pages"
                )
                self.log.record(url, "redirect", detail, once_per=self.action)
            else:
                self.log.record(url, "page", once_per=self.action)

    def sweep(self, pages: list[Any]) -> bool:
        """Empty every frame that shows a URL it may not. Chromium's managed policy (in the
        browser image) normally stops such navigations before they commit; this is the
        fallback for what it lets through (a page navigating itself to a `blob:` URL) and for
        images without it. Returns True when a page that could not be emptied was closed."""
        closed = False
        for page in list(pages):
            try:
                frames = list(page.frames)
            except Exception:  # a closing page
                continue
            for frame in frames:
                url = frame.url
                if frame_allowed(url):
                    continue
                self.log.record(url, "page", once_per=self.action)
                try:
                    if frame is page.main_frame:
                        page.goto(EMPTY_PAGE, timeout=5000)
                    else:
                        frame.goto(EMPTY_PAGE, timeout=5000)
                except Exception:
                    with contextlib.suppress(Exception):
                        page.close()  # it cannot be emptied: it goes
                    closed = True
                    break
        return closed


def refused_notice(refused: list[dict[str, Any]]) -> str:
    """One line for an action's result: what was refused during it."""
    urls = ", ".join(str(r["url"])[:120] for r in refused[:3])
    more = f" and {len(refused) - 3} more" if len(refused) > 3 else ""
    return (
        f"refused to open {urls}{more}: the browser opens only http(s) pages; local files, "
        "browser-internal pages and other schemes are blocked"
    )
