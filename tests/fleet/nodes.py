"""Real `corral serve` processes sharing one throwaway PostgreSQL database.

`fresh_database(url)` makes a database of its own on the server of CORRAL_TEST_POSTGRES_URL (so
tests never meet each other's rows) and drops it afterwards. `ServeNode` is one `corral serve`
subprocess with its own CORRAL_HOME (its own sandboxes folder and artifacts), like a node on
its own machine; they share the Docker engine here, told apart by the `corral.home` label.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from tests.runtime.api.conftest import free_port

KEY = "fleet-key"
HEADERS = {"x-goog-api-key": KEY}
OTHER_HEADERS = {"x-goog-api-key": "other-key"}
"""Another tenant's key."""


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@contextmanager
def fresh_database(url: str) -> Iterator[str]:
    """A new empty database next to `url`'s, as a SQLAlchemy URL; dropped at the end."""
    name = f"corral_fleet_{uuid.uuid4().hex[:12]}"

    async def admin(sql: str) -> None:
        conn = await asyncpg.connect(_dsn(url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(url).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class ServeNode:
    """One `corral serve` process; `url` is where it answers."""

    def __init__(self, home: Path, db_url: str, name: str, env: dict[str, str] | None = None):
        self.name = name
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        self.log = home / "serve.log"
        self.env = {
            **os.environ,
            "CORRAL_HOME": str(home),
            "CORRAL_DATABASE_URL": db_url,
            "CORRAL_API_KEYS": f"{KEY}:fleet,other-key:other",
            "CORRAL_ALLOW_SCRIPTED": "1",
            "CORRAL_LOG_LEVEL": "info",
            "CORRAL_LOG_FORMAT": "json",
            **(env or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ServeNode:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtime.cli", "serve", "--port", str(self.port)],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"node {self.name} exited: {self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"node {self.name} did not start: {self.log.read_text()[-3000:]}")

    def client(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers=HEADERS, timeout=60, **kw)

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()

    def runs_active(self) -> int:
        return int(httpx.get(f"{self.url}/healthz", timeout=10).json()["runs_active"])

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


def sse_events(resp: httpx.Response) -> Iterator[dict[str, Any]]:
    """The JSON payloads of an SSE response, as they arrive."""
    for line in resp.iter_lines():
        if line.startswith("data: "):
            yield json.loads(line[len("data: ") :])


def owner_of(nodes: list[ServeNode], timeout: float = 60) -> ServeNode:
    """The node executing the one active run (whichever claimed it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        busy = [n for n in nodes if n.runs_active() > 0]
        if len(busy) == 1:
            return busy[0]
        time.sleep(0.05)
    raise AssertionError("no single node is running the run")


def fleet_metrics(node: ServeNode) -> dict[str, float]:
    """The node's `corral_fleet_*` samples from /metrics, keyed as they are written there
    (`name{label="value"}`)."""
    text = httpx.get(f"{node.url}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        if line.startswith("corral_fleet_"):
            key, _, value = line.rpartition(" ")
            samples[key] = float(value)
    return samples
