"""The guest's URL rules for the browser (no Docker): what `goto` opens, what a frame may show,
how refusals are logged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.guest import browser_urls as U

POLICY = Path(__file__).parents[2] / "images" / "browser" / "policies" / "corral.json"


@pytest.mark.parametrize(
    ("url", "target"),
    [
        ("https://example.com/a?b#c", "https://example.com/a?b#c"),
        ("HTTP://example.com", "HTTP://example.com"),
        ("example.com", "http://example.com"),
        ("example.com/path", "http://example.com/path"),
        ("localhost:8080/x", "http://localhost:8080/x"),
        ("example.com:8443", "http://example.com:8443"),
        ("  https://example.com  ", "https://example.com"),
        ("about:blank", "about:blank"),
        ("ABOUT:BLANK", "about:blank"),
    ],
)
def test_web_urls_are_opened(url: str, target: str) -> None:
    assert U.goto_target(url) == target


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file:/etc/passwd",
        "File://localhost/etc/passwd",
        "chrome://version",
        "chrome-untrusted://print",
        "chrome-extension://abc/x.html",
        "devtools://devtools/bundled/inspector.html",
        "view-source:https://example.com",
        "data:text/html,hi",
        "data:1,x",
        "javascript:alert(1)",
        "filesystem:https://example.com/temporary/x",
        "blob:https://example.com/uuid",
        "ftp://example.com/",
        "ws://example.com/",
        "wss://example.com/",
        "about:config",
        "about:blank#x",
        "mailto:a@example.com",
        "https://exa\nmple.com/",
    ],
)
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(U.SchemeRefused) as info:
        U.goto_target(url)
    assert info.value.code == "invalid_argument"
    assert "only http:// and https://" in info.value.message


def test_frames_may_show_web_pages_and_chromiums_own_blank_and_error_pages() -> None:
    for url in ("https://a.example/", "http://a.example/", "about:blank", "about:srcdoc", ""):
        assert U.frame_allowed(url), url
    assert U.frame_allowed("chrome-error://chromewebdata/")
    for url in ("file:///etc/passwd", "chrome://version/", "blob:http://a/x", "data:,x"):
        assert not U.frame_allowed(url), url


def test_chromium_console_refusals_are_recognised() -> None:
    assert (
        U.blocked_url_in("Not allowed to load local resource: file:///etc/passwd")
        == "file:///etc/passwd"
    )
    assert (
        U.blocked_url_in("Not allowed to navigate top frame to data URL: data:text/html,x")
        == "data:text/html,x"
    )
    assert U.blocked_url_in("Uncaught TypeError: x is undefined") is None
    assert U.is_block_error("net::ERR_BLOCKED_BY_ADMINISTRATOR")
    assert U.is_block_error("net::ERR_UNSAFE_REDIRECT")
    assert not U.is_block_error("net::ERR_CONNECTION_REFUSED")
    assert not U.is_block_error(None)


def test_the_log_numbers_entries_and_counts_one_navigation_once_per_action() -> None:
    log = U.RefusalLog()
    assert log.since(0) == {"refusals": [], "next_offset": 0}
    log.record("file:///a", "goto")
    log.record("file:///a", "goto")  # asked twice: two refusals
    log.record("file:///b", "page", once_per=7)
    log.record("file:///b", "page", once_per=7)  # console and network of one navigation
    log.record("file:///b", "page", once_per=8)
    got = log.since(0)
    assert [(e["url"], e["source"]) for e in got["refusals"]] == [
        ("file:///a", "goto"),
        ("file:///a", "goto"),
        ("file:///b", "page"),
        ("file:///b", "page"),
    ]
    assert got["next_offset"] == 4
    assert log.since(3)["refusals"][0]["url"] == "file:///b"
    assert log.since(1 << 62) == {"refusals": [], "next_offset": 4}
    entry = got["refusals"][0]
    assert entry["scheme"] == "file" and entry["reason"] == "scheme_not_allowed"


def test_the_log_keeps_the_latest_entries() -> None:
    log = U.RefusalLog()
    for i in range(U.MAX_KEPT + 5):
        log.record(f"file:///{i}", "goto")
    got = log.since(0)
    assert got["next_offset"] == U.MAX_KEPT + 5
    assert len(got["refusals"]) == U.MAX_KEPT
    assert got["refusals"][0]["url"] == "file:///5"


def test_the_image_policy_allows_only_web_pages() -> None:
    policy = json.loads(POLICY.read_text())
    assert policy["URLAllowlist"] == ["http://*", "https://*", "about:blank"]
    blocked = set(policy["URLBlocklist"])
    # "*" no longer covers chrome:// in recent Chromium: internal schemes are listed.
    assert {"*", "file://*", "chrome://*", "devtools://*", "view-source:*"} <= blocked
