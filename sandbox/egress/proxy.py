"""Corral's egress proxy: a small stdlib asyncio HTTP proxy enforcing per-sandbox allowlists.

Runs in its own container (code bind-mounted read-only, standard library only), attached to the
normal bridge network for its way out and to every allowlist sandbox's internal network. A
sandbox's only reachable address is this proxy; the proxy decides by the client's source IP
(sandboxes have no NET_RAW/NET_ADMIN, so they cannot spoof it) which policy applies.

- HTTPS: ``CONNECT host:port`` then bytes are piped, never intercepted.
- Plain HTTP: absolute-form requests are rewritten to origin form and forwarded.
- Names are resolved here (never by the sandbox); every resolved address is checked and the
  connection goes to the checked address itself, so DNS rebinding cannot slip past the check.
  Private, loopback, link-local, metadata and other non-global addresses are refused unless
  the policy's ``private`` opt-in names them (``IP``, ``IP:PORT`` or ``CIDR``).
- Every refusal is answered ``403`` with an ``X-Corral-Refused`` header and appended as one JSON
  line to the refusal log, which the controller reads.

The policy file is JSON, re-read when it changes::

    {"clients": {"10.213.4.3": {"sandbox": "sb-..", "allow": ["example.com", "*.python.org"],
                                 "private": ["172.17.0.1:8080"], "hosts": {"site.test": "172.17.0.1"}}}}
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

HEAD_MAX = 64 * 1024
HEAD_TIMEOUT = 30.0
CONNECT_TIMEOUT = 10.0
PIPE_CHUNK = 64 * 1024
MAX_CLIENTS = 1024
METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
HOP_HEADERS = frozenset({"proxy-connection", "proxy-authorization", "connection", "keep-alive"})

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """A request the policy does not allow; `reason` is a short machine-readable word."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ClientPolicy:
    sandbox: str
    allow: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClientPolicy:
        return cls(
            sandbox=str(data.get("sandbox", "?")),
            allow=tuple(str(d).lower().rstrip(".") for d in data.get("allow", ())),
            private=tuple(str(p) for p in data.get("private", ())),
            hosts={str(k).lower(): str(v) for k, v in (data.get("hosts") or {}).items()},
        )


# -- rules (pure functions, unit-tested on the host) ---------------------------------------
def host_allowed(host: str, patterns: tuple[str, ...]) -> bool:
    """`example.com` matches itself only; `*.example.com` matches it and every subdomain."""
    host = host.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            base = pattern[2:]
            if host == base or host.endswith("." + base):
                return True
        elif host == pattern:
            return True
    return False


def _opted_in(ip: IPAddress, port: int, private: tuple[str, ...]) -> bool:
    for entry in private:
        addr, _, want_port = entry.rpartition(":") if _has_port(entry) else (entry, "", "")
        if want_port and int(want_port) != port:
            continue
        try:
            if ip in ipaddress.ip_network(addr.strip("[]"), strict=False):
                return True
        except ValueError:
            continue
    return False


def _has_port(entry: str) -> bool:
    # "1.2.3.4:80" and "[fd00::1]:80" carry a port; "fd00::/8" and "10.0.0.0/8" do not.
    if entry.startswith("["):
        return "]:" in entry
    return entry.count(":") == 1


def address_refusal(ip: IPAddress, port: int, private: tuple[str, ...] = ()) -> str | None:
    """Why `ip:port` may not be reached (a reason word), or None when it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if _opted_in(ip, port, private):
        return None
    if ip in METADATA:
        return "metadata_address"
    if ip.is_loopback:
        return "loopback_address"
    if ip.is_link_local:
        return "link_local_address"
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved:
        return "reserved_address"
    if ip.is_private or not ip.is_global:
        return "private_address"
    return None


def parse_target(line: str) -> tuple[str, str, int, str]:
    """Request line -> (method, host, port, origin-form path). Raises Refused when malformed."""
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise Refused("bad_request", f"malformed request line {line[:100]!r}")
    method, target, _version = parts
    if method == "CONNECT":
        host, port = _split_hostport(target, None)
        return method, host, port, ""
    if not target.lower().startswith("http://"):
        raise Refused("bad_request", "only absolute http:// URLs or CONNECT are proxied")
    rest = target[7:]
    slash = rest.find("/")
    authority, path = (rest, "/") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise Refused("bad_request", "credentials in proxy URLs are not supported")
    host, port = _split_hostport(authority, 80)
    return method, host, port, path


def _split_hostport(authority: str, default: int | None) -> tuple[str, int]:
    if authority.startswith("["):
        end = authority.find("]")
        host, rest = authority[1:end], authority[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port_text = authority.partition(":")
    if not port_text:
        if default is None:
            raise Refused("bad_request", f"CONNECT needs host:port, got {authority[:100]!r}")
        return host.lower(), default
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise Refused("bad_request", f"bad port in {authority[:100]!r}")
    if not host:
        raise Refused("bad_request", "empty host")
    return host.lower(), int(port_text)


# -- the server ----------------------------------------------------------------------------
class Policies:
    """The policy file, re-read when its mtime or size changes (a stat per connection)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._clients: dict[str, ClientPolicy] = {}

    def get(self, client_ip: str) -> ClientPolicy | None:
        try:
            st = os.stat(self.path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                self._clients = {
                    ip: ClientPolicy.from_json(p) for ip, p in data.get("clients", {}).items()
                }
                self._stamp = stamp
        except (OSError, ValueError) as exc:
            log(f"policy {self.path} unreadable ({exc}); keeping the previous one")
        return self._clients.get(client_ip)


class Proxy:
    def __init__(self, policies: Policies, refusal_log: str) -> None:
        self.policies = policies
        self.refusal_log = refusal_log
        self.clients = asyncio.Semaphore(MAX_CLIENTS)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else "?"
        policy: ClientPolicy | None = None
        host, port, method = "", 0, ""
        try:
            async with self.clients:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HEAD_TIMEOUT)
                lines = head.decode("latin-1").split("\r\n")
                policy = self.policies.get(client_ip)
                method, host, port, path = parse_target(lines[0])
                if policy is None:
                    raise Refused("unknown_client", f"{client_ip} is not a Corral sandbox")
                if not host_allowed(host, policy.allow):
                    raise Refused("not_allowed", f"{host} is not in the sandbox's allowlist")
                upstream = await self._connect(host, port, policy)
                await self._serve(method, path, lines, reader, writer, upstream)
        except Refused as exc:
            self._refuse(writer, client_ip, policy, method, host, port, exc)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def _connect(
        self, host: str, port: int, policy: ClientPolicy
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            addrs = [ipaddress.ip_address(host.strip("[]"))]
        except ValueError:
            mapped = policy.hosts.get(host)
            if mapped is not None:
                addrs = [ipaddress.ip_address(mapped)]
            else:
                addrs = await resolve(host, port)
        reasons = [address_refusal(a, port, policy.private) for a in addrs]
        allowed = [a for a, r in zip(addrs, reasons, strict=True) if r is None]
        if not allowed:
            reason = next((r for r in reasons if r), "unresolvable")
            shown = ", ".join(str(a) for a in addrs) or "no address"
            raise Refused(reason, f"{host} resolves to {shown}, which is not reachable")
        last: Exception | None = None
        for addr in allowed:
            try:
                return await asyncio.wait_for(
                    asyncio.open_connection(str(addr), port, limit=HEAD_MAX), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError) as exc:
                last = exc
        raise Refused("connect_failed", f"cannot connect to {host}:{port}: {last}")

    async def _serve(
        self,
        method: str,
        path: str,
        lines: list[str],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        up_reader, up_writer = upstream
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                version = lines[0].rsplit(" ", 1)[1]
                kept = [
                    h
                    for h in lines[1:]
                    if h and h.split(":", 1)[0].strip().lower() not in HOP_HEADERS
                ]
                head = "\r\n".join(
                    [f"{method} {path} {version}", *kept, "Connection: close", "", ""]
                )
                up_writer.write(head.encode("latin-1"))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    def _refuse(
        self,
        writer: asyncio.StreamWriter,
        client_ip: str,
        policy: ClientPolicy | None,
        method: str,
        host: str,
        port: int,
        exc: Refused,
    ) -> None:
        # The line is in the log before the client sees the 403: whoever acts on the answer
        # (a tool call returning, then the controller reading refusals) finds it there, however
        # long this process is descheduled between the two.
        record = {
            "ts": time.time(),
            "sandbox": policy.sandbox if policy else None,
            "client": client_ip,
            "method": method,
            "host": host,
            "port": port,
            "reason": exc.reason,
            "detail": exc.detail,
        }
        try:
            # One write of one line with O_APPEND: lines from concurrent refusals never interleave.
            fd = os.open(self.refusal_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (json.dumps(record) + "\n").encode())
            finally:
                os.close(fd)
        except OSError as err:
            log(f"cannot log refusal: {err}")
        body = (
            f"corral egress: {host or '?'}:{port} refused ({exc.reason}): {exc.detail}\n".encode()
        )
        with contextlib.suppress(OSError, RuntimeError):
            writer.write(
                b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nConnection: close\r\n"
                + f"X-Corral-Refused: {exc.reason}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body
            )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The distinct addresses `host` resolves to; Refused(`unresolvable`) when it does not."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise Refused("unresolvable", f"cannot resolve {host}: {exc}") from exc
    out: list[IPAddress] = []
    for info in infos:
        addr = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
        if addr not in out:
            out.append(addr)
    return out


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(PIPE_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.close()


def log(message: str) -> None:
    print(f"corral-egress: {message}", file=sys.stderr, flush=True)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Corral egress proxy")
    parser.add_argument("--policy", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=3128)
    args = parser.parse_args(argv)
    proxy = Proxy(Policies(args.policy), args.log)
    server = await asyncio.start_server(
        proxy.handle, args.host, args.port, limit=HEAD_MAX, backlog=512
    )
    log(f"listening on {args.host}:{args.port}")
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
