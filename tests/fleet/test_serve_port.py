"""`corral serve --port 0` on PostgreSQL: the node registers the port the system chose (its
URL is where the other nodes forward calls), never port 0."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx

from tests.fleet.nodes import KEY, _dsn


def _listening(proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> str:
    """The URL of the `serve.listening` event the server printed (JSON logs)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()[-3000:]}")
        for line in log.read_text(errors="replace").splitlines():
            if '"serve.listening"' in line:
                [url] = json.loads(line)["urls"]
                return str(url)
        time.sleep(0.1)
    raise AssertionError(f"serve did not start: {log.read_text()[-3000:]}")


async def _node_urls(db_url: str) -> list[str]:
    conn = await asyncpg.connect(_dsn(db_url))
    try:
        return [r["url"] for r in await conn.fetch("SELECT url FROM nodes")]
    finally:
        await conn.close()


def test_port_zero_registers_the_port_actually_bound(pg_url: str, tmp_path: Path) -> None:
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "CORRAL_HOME": str(tmp_path / "home"),
        "CORRAL_DATABASE_URL": pg_url,
        "CORRAL_API_KEYS": f"{KEY}:fleet",
        "CORRAL_LOG_FORMAT": "json",
    }
    env.pop("CORRAL_NODE_URL", None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", "serve", "--port", "0"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = _listening(proc, log)
        port = int(url.rsplit(":", 1)[1])
        assert port != 0
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert asyncio.run(_node_urls(pg_url)) == [f"http://127.0.0.1:{port}"]
    finally:
        proc.terminate()
        proc.wait(timeout=60)
