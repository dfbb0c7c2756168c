"""The console in a real Chromium (Debian's `chromium`, driven by Playwright) against a live
server on a free port (the API tests' `start_server`).

No Chromium: the console tests fail with one line in CI (`CI=true`), else they are skipped
with that line. `.ci/run` installs the package.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from playwright.sync_api import Browser, Page, Playwright, ViewportSize, sync_playwright

from tests.runtime.api.conftest import ServerThread, script, server, start_server

__all__ = ["script", "server", "start_server"]

CHROMIUM = os.environ.get("CORRAL_TEST_CHROMIUM", "/usr/bin/chromium")
NO_CHROMIUM = "console tests need Chromium (apt-get install -y chromium)"
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1280, "height": 900}


def chromium_or_skip(configured: str = CHROMIUM) -> str:
    path = configured if os.path.exists(configured) else shutil.which("chromium")
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(NO_CHROMIUM, pytrace=False)
    pytest.skip(NO_CHROMIUM)


@pytest.fixture(scope="module")
def playwright_driver() -> Iterator[Playwright]:
    # Module scope, not session: Playwright's sync API keeps an event loop running in this
    # thread until it stops, and every asyncio test collected after it would fail to start.
    with sync_playwright() as pw:
        yield pw


@pytest.fixture
def browser(playwright_driver: Playwright) -> Iterator[Browser]:
    executable = chromium_or_skip()
    # --no-sandbox: CI runs as root, where Chromium refuses its own sandbox. The pages are
    # ours; the hostile-content test checks the console itself keeps script out.
    b = playwright_driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
    yield b
    b.close()


class Console:
    """A browser tab on the console, collecting page errors (a test fails on any)."""

    def __init__(self, browser: Browser, base: str, *, phone: bool = False) -> None:
        viewport = PHONE if phone else DESKTOP
        self.context = browser.new_context(viewport=viewport, accept_downloads=True)
        self.page: Page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("dialog", lambda d: d.accept())  # confirm() before a delete

    def open(self, path: str) -> Page:
        self.page.goto(self.base + path)
        return self.page

    def use_key(self, key: str) -> None:
        """Answer the key dialog the console opens on a 401."""
        self.page.locator("#key-dialog[open]").wait_for()
        self.page.fill("#key-input", key)
        self.page.click("#key-save")


@pytest.fixture
def console(browser: Browser) -> Iterator[Callable[..., Console]]:
    made: list[Console] = []

    def open_console(server: ServerThread, *, phone: bool = False) -> Console:
        c = Console(browser, server.url, phone=phone)
        made.append(c)
        return c

    yield open_console
    for c in made:
        c.context.close()
    for c in made:
        assert not c.errors, f"errors in the console page: {c.errors}"


def write_script(folder: Path, turns: list[dict[str, Any]], name: str = "turns.yaml") -> str:
    path = folder / name
    path.write_text(yaml.safe_dump({"turns": turns}))
    return f"scripted:{path}"


def exec_turn(command: str, text: str = "") -> dict[str, Any]:
    return {"text": text, "tool_calls": [{"name": "exec", "arguments": {"command": command}}]}


def put_agent(
    server: ServerThread, name: str, model: str, key: str = "k", **extra: Any
) -> dict[str, Any]:
    spec = {
        "name": name,
        "model": model,
        "tools": ["exec", "files"],
        "limits": {"max_steps": 8, "max_tool_calls": 8, "timeout": 120},
        **extra,
    }
    r = httpx.post(f"{server.url}/v1beta/agents", json=spec, headers={"x-goog-api-key": key})
    assert r.status_code == 200, r.text
    return dict(r.json())


def start_run(server: ServerThread, agent: str, task: str, key: str = "k") -> str:
    r = httpx.post(
        f"{server.url}/v1beta/interactions",
        json={"agent": agent, "input": task, "background": True},
        headers={"x-goog-api-key": key},
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def wait_run(server: ServerThread, run_id: str, key: str = "k", timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = httpx.get(f"{server.url}/v1beta/interactions/{run_id}", headers={"x-goog-api-key": key})
        if r.json()["status"] != "in_progress":
            return r.json()
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not end")
