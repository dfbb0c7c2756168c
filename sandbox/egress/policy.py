"""Host side of the egress policy: operator options, the policy file, the refusal log.

The proxy (sandbox/egress/proxy.py) reads `policy.json` (written here atomically, keyed by each
allowlist sandbox's IP) and appends refusals to `refusals.jsonl` (read here).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import tempfile
import threading
from collections.abc import Set
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import SpecError


@dataclass(frozen=True)
class EgressOptions:
    """Operator settings of the egress proxy (a controller decision, never an agent's).

    `allow_private` opts in private/loopback/link-local addresses the proxy would otherwise
    refuse: `IP`, `IP:PORT` or `CIDR` (off by default: empty). `hosts` maps names to addresses
    the proxy uses instead of DNS (for tests and split-horizon setups); the address is still
    checked against the private rules. `image` runs the proxy (any image with python3).
    """

    allow_private: tuple[str, ...] = ()
    hosts: dict[str, str] = field(default_factory=dict)
    image: str = "corral/base"
    subnet_pool: str = "10.213.0.0/16"
    """Where per-sandbox internal networks (/29 each) are carved from."""

    def __post_init__(self) -> None:
        for entry in self.allow_private:
            addr = entry
            if entry.startswith("[") and "]:" in entry:
                addr = entry[1 : entry.index("]")]
            elif entry.count(":") == 1:
                addr, _, port = entry.partition(":")
                if not port.isdigit():
                    raise SpecError(f"allow_private: bad port in {entry!r}")
            try:
                ipaddress.ip_network(addr, strict=False)
            except ValueError as exc:
                raise SpecError(f"allow_private: {entry!r} is not an IP, IP:PORT or CIDR") from exc
        for name, addr in self.hosts.items():
            try:
                ipaddress.ip_address(addr)
            except ValueError as exc:
                raise SpecError(f"hosts: {name} -> {addr!r} is not an IP address") from exc


@dataclass(frozen=True)
class Refusal:
    """One request the egress proxy refused."""

    sandbox: str
    host: str
    port: int
    reason: str
    """not_allowed, private_address, loopback_address, link_local_address, metadata_address,
    reserved_address, unresolvable, connect_failed, bad_request, unknown_client."""
    detail: str
    method: str
    ts: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "sandbox": self.sandbox,
            "host": self.host,
            "port": self.port,
            "reason": self.reason,
            "detail": self.detail,
            "method": self.method,
            "ts": self.ts,
        }


class PolicyFile:
    """`policy.json`: client IP -> policy. Thread-safe; every write replaces the file whole."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        clients = data.get("clients")
        return clients if isinstance(clients, dict) else {}

    def _store(self, clients: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".policy-")
        with os.fdopen(fd, "w") as f:
            json.dump({"clients": clients}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, self.path)

    def put(self, ip: str, policy: dict[str, Any]) -> None:
        with self._lock:
            clients = self._load()
            clients[ip] = policy
            self._store(clients)

    def drop(self, sandbox_id: str) -> None:
        with self._lock:
            clients = self._load()
            kept = {ip: p for ip, p in clients.items() if p.get("sandbox") != sandbox_id}
            if kept != clients:
                self._store(kept)

    def keep_only(self, sandbox_ids: Set[str]) -> None:
        with self._lock:
            clients = self._load()
            kept = {ip: p for ip, p in clients.items() if p.get("sandbox") in sandbox_ids}
            if kept != clients:
                self._store(kept)

    def create(self) -> None:
        """An empty policy (nothing allowed) if there is none yet."""
        with self._lock:
            if not self.path.exists():
                self._store({})


def read_refusals(path: Path, sandbox_id: str, offset: int = 0) -> tuple[list[Refusal], int]:
    """Refusals of one sandbox logged from byte `offset` on, and the offset to read from next.

    A line still being written (no newline yet) is left for the next read; an offset past the
    end of the log reads nothing and returns the end (how a reader starts "from now on").
    """
    out: list[Refusal] = []
    try:
        with open(path, "rb") as f:
            # An offset past the end (the log was replaced, or "from now on") means its end.
            offset = min(offset, os.fstat(f.fileno()).st_size)
            f.seek(offset)
            data = f.read()
    except FileNotFoundError:
        return out, 0  # nothing refused yet: the log starts with the first refusal
    end = data.rfind(b"\n") + 1
    for line in data[:end].splitlines():
        with contextlib.suppress(ValueError, TypeError, KeyError):
            r = json.loads(line)
            if r.get("sandbox") != sandbox_id:
                continue
            out.append(
                Refusal(
                    sandbox=sandbox_id,
                    host=str(r.get("host", "")),
                    port=int(r.get("port", 0)),
                    reason=str(r["reason"]),
                    detail=str(r.get("detail", "")),
                    method=str(r.get("method", "")),
                    ts=float(r.get("ts", 0.0)),
                )
            )
    return out, offset + end
