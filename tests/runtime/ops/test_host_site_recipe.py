"""docs/browser.md's recipe "Reaching a site on the host", run as written: a site served on the
host's Docker bridge address, the two CORRAL_EGRESS_* settings, an allowlist sandbox made with
the CLI reaching it by name. Also the recipe's warnings: without the opt-in the proxy refuses
the address, and a site bound to 127.0.0.1 is out of reach."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from tests.runtime.test_cli_frictions import allowlist_sandbox, corral
from tests.sandbox.browser_site import bridge_gateway

pytestmark = pytest.mark.docker


def _serve(folder: Path, address: str) -> Iterator[int]:
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[str, int]]:
    (tmp_path / "hello.txt").write_text("hello from the host\n")
    gateway = bridge_gateway()
    for port in _serve(tmp_path, gateway):
        yield gateway, port


@pytest.fixture
def loopback_site(tmp_path: Path) -> Iterator[int]:
    yield from _serve(tmp_path, "127.0.0.1")


def _curl(home: Path, sid: str, url: str, env: dict[str, str]) -> str:
    res = corral(
        home, "sandbox", "exec", sid, "--",
        f"curl -s -o /dev/null -D - --max-time 20 {url} | tr -d '\\r' | "
        "grep -iE '^(HTTP/|X-Corral-Refused)'; curl -s --max-time 20 " + url,
        **env,
    )  # fmt: skip
    return res.stdout


def test_host_site_recipe(corral_home: Path, site: tuple[str, int], loopback_site: int) -> None:
    gateway, port = site
    env = {
        "CORRAL_EGRESS_ALLOW_PRIVATE": f"{gateway}:{port},{gateway}:{loopback_site}",
        "CORRAL_EGRESS_HOSTS": f"site.test={gateway}",
    }
    sid = allowlist_sandbox(corral_home, "site.test", **env)
    try:
        out = _curl(corral_home, sid, f"http://site.test:{port}/hello.txt", env)
        assert "HTTP/1.0 200" in out and "hello from the host" in out, out

        # the warning: a site bound to 127.0.0.1 is not on the bridge address
        out = _curl(corral_home, sid, f"http://site.test:{loopback_site}/hello.txt", env)
        assert "x-corral-refused: connect_failed" in out.lower(), out
    finally:
        assert corral(corral_home, "sandbox", "rm", sid).returncode == 0

    # without the operator's opt-in the proxy refuses the host's address
    plain = {"CORRAL_EGRESS_HOSTS": f"site.test={gateway}"}
    made = corral(
        corral_home,
        "sandbox", "create", "--memory", "256m", "--network", "allowlist", "--allow", "site.test",
        **plain,
    )  # fmt: skip
    sid = made.stdout.strip()
    try:
        out = _curl(corral_home, sid, f"http://site.test:{port}/hello.txt", plain)
        assert "x-corral-refused: private_address" in out.lower(), out
        assert "hello from the host" not in out
    finally:
        corral(corral_home, "sandbox", "rm", sid)
        corral(corral_home, "sandbox", "gc")
