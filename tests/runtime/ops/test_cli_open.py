"""`corral open ID`: the run's console page, through the real `corral` command (issue 14)."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

from runtime.settings import Settings
from runtime.store.base import InteractionRecord
from runtime.store.sql import open_store
from tests.runtime.test_cli_frictions import corral


def _stored_run(run_id: str) -> None:
    async def go() -> None:
        store = await open_store(Settings.from_env())
        try:
            await store.create_interaction(
                InteractionRecord(id=run_id, tenant="local", status="completed")
            )
        finally:
            await store.aclose()

    asyncio.run(go())


def _recording_browser(tmp_path: Path) -> tuple[str, Path]:
    """A $BROWSER command that writes the URL it is given to a file (Python's webbrowser
    runs it and waits for it)."""
    seen = tmp_path / "opened.txt"
    script = tmp_path / "browser.sh"
    script.write_text(f'#!/bin/sh\nprintf "%s" "$1" > {seen}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return f"{script} %s", seen


def test_open_opens_the_runs_page_by_prefix(tmp_path: Path, corral_home: Path) -> None:
    _stored_run("v1_opentestaaaa1111")
    _stored_run("v1_opentestbbbb2222")
    browser, seen = _recording_browser(tmp_path)
    res = corral(
        corral_home, "open", "v1_opentesta", "--url", "http://10.1.2.3:9000/", BROWSER=browser
    )
    assert res.returncode == 0, res.stderr
    page = "http://10.1.2.3:9000/runs/v1_opentestaaaa1111"
    assert res.stdout.strip() == page
    assert seen.read_text() == page


def test_open_takes_corral_url_and_print_only_opens_nothing(
    tmp_path: Path, corral_home: Path
) -> None:
    _stored_run("v1_printonly0001")
    browser, seen = _recording_browser(tmp_path)
    env = {"BROWSER": browser, "CORRAL_URL": "https://corral.example/base"}
    res = corral(corral_home, "open", "v1_printonly0001", "--print", **env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "https://corral.example/base/runs/v1_printonly0001"
    assert not seen.exists()
    default = corral(corral_home, "open", "v1_printonly", "--print", BROWSER=browser)
    assert default.stdout.strip() == "http://127.0.0.1:8000/runs/v1_printonly0001"


def test_open_refuses_unknown_ambiguous_runs_and_bad_urls(
    tmp_path: Path, corral_home: Path
) -> None:
    _stored_run("v1_twinaaaa")
    _stored_run("v1_twinbbbb")
    browser, seen = _recording_browser(tmp_path)
    for args, code, words in [
        (("v1_nosuchrun",), 1, "not found"),
        (("v1_twin",), 1, "ambiguous"),
        (("v1_twinaaaa", "--url", "file:///etc/passwd"), 2, "http(s)://"),
        (("v1_twinaaaa", "--url", "http://h/?x=1"), 2, "query"),
    ]:
        res = corral(corral_home, "open", *args, BROWSER=browser)
        assert res.returncode == code, (args, res.stderr)
        assert res.stdout == ""
        (line,) = res.stderr.splitlines()
        assert line.startswith("corral: error:") and words in line, line
    assert not seen.exists()
