"""Fixtures for the guest/RPC tests: a real guest process on a Unix socket in a temp dir.

No Docker: the guest runs as `python -B -m sandbox.guest` on this machine, exactly the code
that is bind-mounted into containers. Test modules import the fixtures from here.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from sandbox.rpc import RpcClient

REPO = Path(__file__).resolve().parents[2]


class GuestProcess:
    """A guest subprocess serving `workspace` on `socket` (or TCP)."""

    def __init__(self, root: Path, *extra: str, env: dict[str, str] | None = None) -> None:
        self.root = root
        self.workspace = root / "ws"
        self.workspace.mkdir()
        self.socket = root / "rpc.sock"
        where = list(extra) or ["--socket", str(self.socket)]
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-B",
                "-m",
                "sandbox.guest",
                *where,
                "--workspace",
                str(self.workspace),
            ],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            stderr=subprocess.PIPE,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        assert self.proc.stderr is not None
        self.proc.stderr.close()


def listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as s:
        try:
            s.connect(str(path))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
    return True


@pytest.fixture
def guest_root() -> Iterator[Path]:
    # Short path: a Unix socket path must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="cg-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def guest(guest_root: Path) -> Iterator[GuestProcess]:
    g = GuestProcess(guest_root)
    deadline = time.monotonic() + 30  # a hang guard, not a performance bar
    while not listening(g.socket):  # raw-socket tests need it accepting already
        assert g.alive() and time.monotonic() < deadline, "guest did not start"
        time.sleep(0.005)
    yield g
    g.stop()


@pytest.fixture
async def client(guest: GuestProcess) -> AsyncIterator[RpcClient]:
    c = await RpcClient.connect(guest.socket, timeout=30)
    yield c
    await c.aclose()


async def eventually(check: Callable[[], Awaitable[bool] | bool], *, limit: float = 30.0) -> None:
    """Poll `check` until true; `limit` only guards against a hang (not a performance bar)."""
    async with asyncio.timeout(limit):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await asyncio.sleep(0.01)


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (absent, or a zombie waiting for its new parent)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True
