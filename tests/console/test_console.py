"""The web console in a real Chromium against a live server, real runs in real sandboxes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import docker
import httpx
import pytest
from playwright.sync_api import expect

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from sandbox.backends.docker import LABEL_HOME
from tests.console.conftest import (
    Console,
    exec_turn,
    put_agent,
    start_run,
    wait_run,
    write_script,
)
from tests.runtime.api.conftest import ServerThread

pytestmark = [pytest.mark.console, pytest.mark.docker]
OpenConsole = Callable[..., Console]
StartServer = Callable[..., ServerThread]


def _release(home: Path) -> None:
    """Let the gated command of the run under `home` finish (it waits for /workspace/go)."""
    client = docker.from_env()
    try:
        (box,) = client.containers.list(filters={"label": f"{LABEL_HOME}={home}"})
        assert box.exec_run("touch /workspace/go", user="1000").exit_code == 0
    finally:
        client.close()


def test_runs_list_and_run_page_follow_a_run_live(
    start_server: StartServer, console: OpenConsole, tmp_path: Path, corral_home: Path
) -> None:
    server = start_server()
    # The command waits for the test's signal, so "still running" is a fact, not a race.
    command = "echo first-line; until [ -e /workspace/go ]; do sleep 0.1; done; echo second-line"
    model = write_script(tmp_path, [exec_turn(command), {"text": "Done."}])
    put_agent(server, "sleeper", model)
    c = console(server)
    page = c.open("/")
    expect(page.locator("#runs-state")).to_contain_text("No runs yet")
    page.evaluate("window.__sameDocument = true")

    run_id = start_run(server, "sleeper", "nap <b>then</b> report")
    row = page.locator(f'tr[data-id="{run_id}"]')
    expect(row).to_have_attribute("data-status", "in_progress", timeout=15_000)
    expect(row).to_contain_text("sleeper")
    expect(row).to_contain_text("nap <b>then</b> report")  # the task as text
    assert page.evaluate("window.__sameDocument") is True  # added in place, no reload

    # meanwhile, in a second tab, the run page streams the command's output while it runs
    tab = c.context.new_page()
    tab.on("pageerror", lambda exc: c.errors.append(str(exc)))
    tab.goto(f"{server.url}/runs/{run_id}")
    call = tab.locator("#timeline .step-call")
    expect(call.locator("pre.output")).to_contain_text("first-line")
    assert call.get_attribute("data-done") is None  # no result yet: this is live output
    expect(call.locator("pre.output")).not_to_contain_text("second-line")
    expect(tab.locator("#cancel")).to_be_visible()
    expect(row).to_have_attribute("data-status", "in_progress")

    _release(corral_home)
    expect(call).to_have_attribute("data-done", "true", timeout=60_000)
    expect(call.locator("pre.output")).to_contain_text("second-line")
    expect(tab.locator("#run-head")).to_contain_text("completed")

    # and the list, never reloaded, shows the run completed
    expect(row).to_have_attribute("data-status", "completed")
    expect(row.locator(".status")).to_have_text("completed")
    assert page.evaluate("window.__sameDocument") is True
    row.locator("a").click()
    expect(page).to_have_url(f"{server.url}/runs/{run_id}")
    expect(page.locator("#timeline .step-call")).to_contain_text("second-line")


def test_run_page_shows_steps_output_and_artifacts_on_a_phone(
    start_server: StartServer, console: OpenConsole
) -> None:
    server = start_server()
    run_id = start_run(server, "demo", "a task for the console")
    c = console(server, phone=True)
    page = c.open(f"/runs/{run_id}")
    timeline = page.locator("#timeline")
    expect(timeline.locator(".step-input")).to_contain_text("a task for the console")
    expect(timeline.locator(".step-model").first).to_contain_text("Scripted demo")
    shell = timeline.locator(".step-call").first
    expect(shell).to_contain_text("uname -a")  # the command
    expect(shell.locator("pre.output")).to_contain_text("Python 3")  # and what it printed
    expect(page.locator("#run-head")).to_contain_text("completed", timeout=60_000)
    expect(page.locator("#run-head")).to_contain_text("demo")

    artifacts = page.locator("#artifacts")
    csv = artifacts.locator('li[data-path="primes.csv"]')
    expect(csv).to_be_visible()
    csv.get_by_role("button", name="Preview").click()
    table = csv.locator("table.csv")
    expect(table.locator("th").first).to_have_text("n")
    expect(table.locator("tbody tr").first).to_contain_text("2")
    report = artifacts.locator('li[data-path="report.md"]')
    report.get_by_role("button", name="Preview").click()
    expect(report.locator("pre.file")).to_contain_text("# Corral demo report")

    with page.expect_download() as info:
        report.get_by_role("button", name="Download").click()
    download = info.value
    assert download.suggested_filename == "report.md"
    saved = Path(download.path()).read_bytes()
    direct = httpx.get(f"{server.url}/v1beta/interactions/{run_id}/artifacts/report.md")
    assert saved == direct.content and saved.startswith(b"# Corral demo report")

    # phone width: nothing wider than the screen, here and on the runs list
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.click("a[href='/']")
    expect(page.locator(f'tr[data-id="{run_id}"]')).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390


def test_sandboxes_page_lists_and_deletes(start_server: StartServer, console: OpenConsole) -> None:
    server = start_server()
    r = httpx.post(
        f"{server.url}/v1beta/sandboxes",
        json={"image": "corral/base", "network": "none", "ttl": 600, "memory": "256m"},
    )
    assert r.status_code == 200, r.text
    sandbox_id = r.json()["id"]
    try:
        c = console(server, phone=True)
        page = c.open("/sandboxes")
        card = page.locator(f'li[data-id="{sandbox_id}"]')
        expect(card).to_contain_text("created over the API")
        expect(card).to_contain_text("corral/base")
        expect(card).to_contain_text("none")  # network
        expect(card).to_contain_text("10 min")  # idle TTL
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        card.get_by_role("button", name="Delete").click()
        expect(card).to_have_count(0)
        assert httpx.get(f"{server.url}/v1beta/sandboxes/{sandbox_id}").status_code == 404
    finally:
        httpx.delete(f"{server.url}/v1beta/sandboxes/{sandbox_id}")


def test_a_second_tenant_sees_nothing_of_the_first(
    start_server: StartServer, console: OpenConsole
) -> None:
    keys = ApiKeys.from_mapping({"key-a": "team-a", "key-b": "team-b"})
    server = start_server(ApiConfig(keys=keys, allow_scripted=True))
    run_id = start_run(server, "demo", "team a's secret task", key="key-a")
    wait_run(server, run_id, key="key-a")

    a = console(server)
    page_a = a.open("/")
    a.use_key("key-a")
    expect(page_a.locator(f'tr[data-id="{run_id}"]')).to_contain_text("team a's secret task")
    page_a.goto(f"{server.url}/sandboxes")  # the run's kept sandbox is team a's
    expect(page_a.locator("#sandboxes li[data-id]")).to_have_count(1)

    b = console(server)
    page_b = b.open("/")
    b.use_key("key-b")
    expect(page_b.locator("#runs-state")).to_contain_text("No runs yet")
    page_b.goto(f"{server.url}/runs/{run_id}")
    expect(page_b.locator("#run-head")).to_contain_text(f"No run {run_id} for this key")
    expect(page_b.locator("#timeline .step")).to_have_count(0)
    expect(page_b.locator("#artifacts li[data-path]")).to_have_count(0)
    page_b.goto(f"{server.url}/sandboxes")
    expect(page_b.locator("#sandboxes")).to_contain_text("No sandboxes.")
    assert "secret" not in page_b.content()

    # no key at all: the console asks for one and shows nothing
    anon = console(server)
    page = anon.open("/")
    expect(page.locator("#key-dialog")).to_have_attribute("open", "")
    expect(page.locator("#runs")).to_contain_text("missing API key")
