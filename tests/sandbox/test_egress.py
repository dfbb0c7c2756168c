"""Network policy: the egress proxy's rules, and what allowlist / none sandboxes can reach."""

from __future__ import annotations

import asyncio
import http.server
import ipaddress
import json
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
import pytest_asyncio

from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend
from sandbox.egress import EgressOptions
from sandbox.egress.policy import read_refusals
from sandbox.egress.proxy import (
    ClientPolicy,
    Policies,
    Proxy,
    Refused,
    address_refusal,
    host_allowed,
    parse_target,
)
from sandbox.errors import SpecError
from sandbox.spec import SandboxSpec
from tests.sandbox.browser_site import CSV, Site, serve

# -- the rules, without Docker --------------------------------------------------------------


def test_host_patterns() -> None:
    allow = ("example.com", "*.python.org")
    assert host_allowed("example.com", allow)
    assert host_allowed("EXAMPLE.com.", allow)
    assert not host_allowed("www.example.com", allow)
    assert not host_allowed("example.com.evil.net", allow)
    assert host_allowed("python.org", allow)
    assert host_allowed("docs.python.org", allow)
    assert not host_allowed("notpython.org", allow)
    assert not host_allowed("1.2.3.4", allow)


@pytest.mark.parametrize(
    ("ip", "reason"),
    [
        ("93.184.215.14", None),
        ("10.1.2.3", "private_address"),
        ("192.168.1.1", "private_address"),
        ("172.17.0.1", "private_address"),
        ("127.0.0.1", "loopback_address"),
        ("::1", "loopback_address"),
        ("169.254.169.254", "metadata_address"),
        ("fd00:ec2::254", "metadata_address"),
        ("169.254.1.1", "link_local_address"),
        ("fe80::1", "link_local_address"),
        ("::ffff:127.0.0.1", "loopback_address"),
        ("0.0.0.0", "reserved_address"),
        ("224.0.0.1", "reserved_address"),
        ("100.64.0.1", "private_address"),
    ],
)
def test_address_rules(ip: str, reason: str | None) -> None:
    assert address_refusal(ipaddress.ip_address(ip), 80) == reason


def test_private_opt_in_is_exact() -> None:
    gw = ipaddress.ip_address("172.17.0.1")
    assert address_refusal(gw, 8080, ("172.17.0.1:8080",)) is None
    assert address_refusal(gw, 8081, ("172.17.0.1:8080",)) == "private_address"
    assert address_refusal(gw, 1, ("172.16.0.0/12",)) is None
    meta = ipaddress.ip_address("169.254.169.254")
    assert address_refusal(meta, 80, ("172.16.0.0/12",)) == "metadata_address"


def test_request_lines() -> None:
    assert parse_target("CONNECT pypi.org:443 HTTP/1.1") == ("CONNECT", "pypi.org", 443, "")
    assert parse_target("GET http://Site.test:8080/a?b=1 HTTP/1.1") == (
        "GET",
        "site.test",
        8080,
        "/a?b=1",
    )
    assert parse_target("GET http://[::1]/ HTTP/1.1")[1:3] == ("::1", 80)
    for bad in ("GET /relative HTTP/1.1", "CONNECT host HTTP/1.1", "GET http://u:p@h/ HTTP/1.1"):
        with pytest.raises(Refused):
            parse_target(bad)


def test_options_are_validated() -> None:
    EgressOptions(allow_private=("10.0.0.0/8", "172.17.0.1:80", "[fd00::1]:443"))
    with pytest.raises(SpecError):
        EgressOptions(allow_private=("intranet",))
    with pytest.raises(SpecError):
        EgressOptions(hosts={"a.test": "not-an-ip"})


def test_refusal_log_reads_whole_lines_only(tmp_path: Path) -> None:
    log = tmp_path / "refusals.jsonl"
    log.write_text(
        '{"sandbox": "sb-1", "host": "a", "port": 80, "reason": "not_allowed"}\n'
        '{"sandbox": "sb-2", "host": "b", "port": 80, "reason": "not_allowed"}\n'
        '{"sandbox": "sb-1", "host": "c", "port"'
    )
    found, offset = read_refusals(log, "sb-1")
    assert [r.host for r in found] == ["a"]
    with log.open("a") as f:
        f.write(': 443, "reason": "private_address"}\n')
    more, _ = read_refusals(log, "sb-1", offset)
    assert [(r.host, r.port, r.reason) for r in more] == [("c", 443, "private_address")]


async def test_proxy_forwards_http_and_connect_and_logs_refusals(tmp_path: Path) -> None:
    """The proxy itself, on the host (no Docker): the client is 127.0.0.1."""
    with serve(docker_gateway=False) as site:
        policy = tmp_path / "policy.json"
        log = tmp_path / "refusals.jsonl"
        policy.write_text(
            json.dumps(
                {
                    "clients": {
                        "127.0.0.1": {
                            "sandbox": "sb-host",
                            "allow": ["site.test"],
                            "private": [f"127.0.0.1:{site.port}"],
                            "hosts": {"site.test": "127.0.0.1"},
                        }
                    }
                }
            )
        )
        proxy = Proxy(Policies(str(policy)), str(log))
        server = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]

        async def ask(head: str, then: str = "") -> bytes:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(head.encode())
            if then:
                line = await reader.readuntil(b"\r\n\r\n")
                assert line.startswith(b"HTTP/1.1 200")
                writer.write(then.encode())
            data = await reader.read()
            writer.close()
            return data

        try:
            plain = await ask(
                f"GET http://site.test:{site.port}/about HTTP/1.1\r\nHost: site.test\r\n"
                "Proxy-Connection: keep-alive\r\n\r\n"
            )
            assert plain.startswith(b"HTTP/1.0 200") and b"marmalade" in plain
            tunnel = await ask(
                f"CONNECT site.test:{site.port} HTTP/1.1\r\n\r\n",
                "GET /files/report.csv HTTP/1.0\r\nHost: site.test\r\n\r\n",
            )
            assert tunnel.endswith(CSV)
            refused = await ask("GET http://other.test/ HTTP/1.1\r\n\r\n")
            assert (
                refused.startswith(b"HTTP/1.1 403") and b"X-Corral-Refused: not_allowed" in refused
            )
            wrong_port = await ask(f"CONNECT site.test:{site.port + 1} HTTP/1.1\r\n\r\n")
            assert b"X-Corral-Refused: loopback_address" in wrong_port
        finally:
            server.close()
            await server.wait_closed()
    found, _ = read_refusals(log, "sb-host")
    assert [(r.host, r.reason) for r in found] == [
        ("other.test", "not_allowed"),
        ("site.test", "loopback_address"),
    ]


# -- real sandboxes -------------------------------------------------------------------------


@dataclass
class Net:
    backend: DockerBackend
    site: Site
    controller_port: int
    a: Sandbox
    b: Sandbox
    closed: Sandbox


@pytest.fixture(scope="module")
def controller_port() -> Iterator[int]:
    """Stands for the controller's API on the host: nothing may reach it from a sandbox."""
    server = http.server.ThreadingHTTPServer(("0.0.0.0", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    with serve() as s:
        yield s


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def net(session_root: Path, site: Site, controller_port: int) -> AsyncIterator[Net]:
    home = Path(tempfile.mkdtemp(prefix="egress-", dir=session_root))
    options = EgressOptions(
        allow_private=(f"{site.gateway}:{site.port}",),
        hosts={
            "site.test": site.gateway,
            "controller.test": site.gateway,
            "loop.test": "127.0.0.1",
        },
    )
    be = DockerBackend(home, egress=options)
    allow = ("site.test", "controller.test", "loop.test", "169.254.169.254", "*.sandbox.test")
    try:
        a = await Sandbox.create(SandboxSpec(network="allowlist", allowlist=allow), backend=be)
        b = await Sandbox.create(SandboxSpec(network="allowlist", allowlist=allow), backend=be)
        closed = await Sandbox.create(SandboxSpec(network="none"), backend=be)
        yield Net(be, site, controller_port, a, b, closed)
    finally:
        for h in await be.list():
            await be.destroy(h.id)
        await be.reconcile(adopt=False)
        await be.aclose()


async def _curl(sb: Sandbox, url: str, *extra: str) -> tuple[int, str]:
    r = await sb.exec(["curl", "-s", "-m", "10", "-o", "-", "-w", "\n%{http_code}", *extra, url])
    body, _, code = r.stdout.rpartition("\n")
    return int(code or 0), body


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
async def test_allowlisted_site_is_reached_through_the_proxy(net: Net) -> None:
    env = (await net.a.exec("env")).stdout
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        assert f"{name}=http://10." in env
    assert "NO_PROXY=localhost,127.0.0.1" in env
    code, body = await _curl(net.a, net.site.url("site.test", "/about"))
    assert (code, "marmalade" in body) == (200, True)
    # Names resolve only at the proxy: the sandbox itself resolves nothing (no DNS channel out).
    lookup = await net.a.exec(
        ["python3", "-c", "import socket; socket.getaddrinfo('example.com', 80)"]
    )
    assert lookup.exit_code != 0 and "gaierror" in lookup.stderr


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
async def test_refusals_are_answered_and_reported(net: Net) -> None:
    _, start = await net.a.network_refusals()
    cases = {
        "example.com": ("http://example.com/", "not_allowed"),
        "1.1.1.1": ("http://1.1.1.1/", "not_allowed"),
        "169.254.169.254": ("http://169.254.169.254/latest/meta-data/", "metadata_address"),
        "loop.test": (f"http://loop.test:{net.site.port}/", "loopback_address"),
        "controller.test": (f"http://controller.test:{net.controller_port}/", "private_address"),
    }
    for url, _reason in cases.values():
        code, body = await _curl(net.a, url)
        assert code == 403, (url, body)
    # HTTPS goes by CONNECT: a refused CONNECT never reaches the site.
    r = await net.a.exec(["curl", "-s", "-m", "10", "https://example.com/"])
    assert r.exit_code != 0
    refusals, end = await net.a.network_refusals(start)
    seen = {(x.host, x.reason) for x in refusals}
    for host, (_, reason) in cases.items():
        assert (host, reason) in seen
    assert ("example.com", "not_allowed") in {(x.host, x.reason) for x in refusals if x.port == 443}
    assert all(x.sandbox == net.a.id for x in refusals)
    assert end > start
    # The other sandbox sees none of them.
    others, _ = await net.b.network_refusals(start)
    assert all(x.sandbox == net.b.id for x in others)


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
async def test_no_way_around_the_proxy(net: Net) -> None:
    gw = net.site.gateway
    # Straight to the host (site and "controller"), bypassing the proxy: no route.
    for port in (net.site.port, net.controller_port):
        code, _ = await _curl(net.a, f"http://{gw}:{port}/", "--noproxy", "*")
        assert code == 0
    # Another sandbox: its address is on a different internal network.
    await net.b.spawn(["python3", "-m", "http.server", "8000", "--bind", "0.0.0.0"])
    who = "import socket; print(socket.gethostbyname(socket.gethostname()))"
    b_ip = (await net.b.exec(["python3", "-c", who])).stdout.strip()
    assert ipaddress.ip_address(b_ip).is_private
    probe = await net.b.exec(
        'python3 -c "import time,urllib.request as u\n'
        "for _ in range(50):\n"
        "  try: u.urlopen('http://127.0.0.1:8000/', timeout=1); break\n"
        '  except Exception: time.sleep(0.1)"',
        env={"no_proxy": "*", "NO_PROXY": "*"},
    )
    assert probe.exit_code == 0
    code, _ = await _curl(net.a, f"http://{b_ip}:8000/", "--noproxy", "*")
    assert code == 0
    # ...and through the proxy, an address is not a listed domain.
    code, body = await _curl(net.a, f"http://{b_ip}:8000/")
    assert code == 403 and "not_allowed" in body
    # The proxy itself only speaks proxy: its other ports are closed.
    proxy = (await net.a.exec("echo $HTTP_PROXY")).stdout.strip()
    proxy_ip = proxy.split("//")[1].split(":")[0]
    code, _ = await _curl(net.a, f"http://{proxy_ip}:22/", "--noproxy", "*")
    assert code == 0


@pytest.mark.docker
@pytest.mark.asyncio(loop_scope="module")
async def test_none_has_no_route(net: Net) -> None:
    routes = (await net.closed.exec("cat /proc/net/route")).stdout.strip().splitlines()
    assert len(routes) == 1  # the header only
    ifaces = (await net.closed.exec("ls /sys/class/net")).stdout.split()
    assert ifaces == ["lo"]
    probe = await net.closed.exec(
        [
            "python3",
            "-c",
            "import socket,sys\n"
            "s = socket.socket()\n"
            "try:\n"
            f"    s.connect(('{net.site.gateway}', {net.site.port}))\n"
            "except OSError as e:\n"
            "    print(e.errno); sys.exit(0)\n"
            "sys.exit(1)",
        ]
    )
    assert probe.exit_code == 0 and probe.stdout.strip() == "101"  # ENETUNREACH


@pytest.mark.docker
async def test_reconcile_removes_unused_egress(session_root: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="egress-rec-", dir=session_root))
    be = DockerBackend(home)
    client = docker.from_env()
    labels = [f"corral.home={home}"]
    try:
        sb = await Sandbox.create(
            SandboxSpec(network="allowlist", allowlist=("example.com",)), backend=be
        )
        assert client.networks.list(filters={"label": labels})
        proxy = client.containers.list(filters={"label": [*labels, "corral.role=egress"]})
        assert len(proxy) == 1
        # It joins every sandbox network, so it must not route between them.
        forwarding = proxy[0].exec_run(["cat", "/proc/sys/net/ipv4/ip_forward"]).output
        assert isinstance(forwarding, bytes) and forwarding.strip() == b"0"
        await sb.close()  # disconnected, still running: reconcile adopts it and keeps egress
        report = await be.reconcile()
        assert report.adopted == [sb.id]
        assert client.networks.list(filters={"label": labels})
        await be.destroy(sb.id)
        await be.reconcile()
        assert client.networks.list(filters={"label": labels}) == []
        assert client.containers.list(all=True, filters={"label": labels}) == []
    finally:
        for h in await be.list():
            await be.destroy(h.id)
        await be.reconcile(adopt=False)
        await be.aclose()
        client.close()


def test_a_refusal_is_logged_before_the_client_sees_it(tmp_path: Path) -> None:
    """The controller reads refusals right after the tool call that met the 403: the line must
    already be there then, however long the proxy is descheduled after answering."""
    log_path = tmp_path / "refusals.log"
    proxy = Proxy(Policies(str(tmp_path / "policy.json")), str(log_path))
    seen: list[str] = []

    class Writer:
        def write(self, data: bytes) -> None:
            seen.append(log_path.read_text() if log_path.exists() else "")

    policy = ClientPolicy("sb-1")
    exc = Refused("not_allowed", "blocked.example is not in the sandbox's allowlist")
    proxy._refuse(Writer(), "10.0.0.2", policy, "GET", "blocked.example", 80, exc)  # type: ignore[arg-type]
    assert len(seen) == 1 and '"host": "blocked.example"' in seen[0]
    assert [r.host for r in read_refusals(log_path, "sb-1", 0)[0]] == ["blocked.example"]
