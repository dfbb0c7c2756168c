"""`sb.pty` through the real `e2b` SDK (sync and async) against a live `corral serve`: a
shell on a pseudo-terminal with input, resize, envs, cwd, kill, exit codes and connect."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator

import pytest
from e2b import AsyncSandbox, CommandExitException, PtySize, Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.compat.e2b_support import e2b_sandbox, serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]

pytestmark = pytest.mark.docker
KEYS = {"key-a": "a"}


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=ApiKeys.from_mapping(KEYS)))


@pytest.fixture
def sb(srv: ServerThread) -> Iterator[Sandbox]:
    yield from e2b_sandbox(timeout=120)


def _until(it: Iterator[tuple[object, object, bytes | None]], marker: bytes) -> bytes:
    """PTY bytes read from the handle until `marker` shows up."""
    seen = b""
    for _, _, pty in it:
        seen += pty or b""
        if marker in seen:
            return seen
    raise AssertionError(f"{marker!r} never came; got {seen!r}")


def test_pty_input_size_env_cwd_and_exit_code(sb: Sandbox) -> None:
    h = sb.pty.create(PtySize(rows=24, cols=80), cwd="/home/user", envs={"FOO": "bar"})
    events = iter(h)
    sb.pty.send_stdin(h.pid, b"echo $FOO-$PWD-$(tty); stty size; echo M1\n")
    first = _until(events, b"\nM1")
    assert b"bar-/home/user-/dev/pts/" in first
    assert b"24 80" in first
    assert any(p.pid == h.pid for p in sb.commands.list())
    sb.pty.resize(h.pid, PtySize(rows=40, cols=120))
    sb.pty.send_stdin(h.pid, b"stty size; echo M2\n")
    assert b"40 120" in _until(events, b"\nM2")
    sb.pty.stream_input(h.pid, [b"echo str", b"eamed; echo M3\n"])
    assert b"streamed" in _until(events, b"\nM3")
    sb.pty.send_stdin(h.pid, b"exit 3\n")
    with pytest.raises(CommandExitException) as exc:
        h.wait()
    assert exc.value.exit_code == 3


def test_pty_kill_ends_the_whole_session(sb: Sandbox) -> None:
    h = sb.pty.create(PtySize(rows=24, cols=80))
    events = iter(h)
    sb.pty.send_stdin(h.pid, b"sleep 300 & echo started-$!\n")
    _until(events, b"started-")
    assert sb.pty.kill(h.pid)
    with pytest.raises(CommandExitException):
        h.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        left = sb.commands.run("pgrep -x sleep || true").stdout
        if not left:
            break
        time.sleep(0.2)
    assert left == "", "the PTY's background job outlived its kill"
    assert not sb.pty.kill(h.pid)  # gone: False, as E2B answers


def test_pty_is_confined_like_any_command(sb: Sandbox) -> None:
    """The PTY comes from the engine's exec, not the guest: it still runs as the sandbox's
    user, without capabilities, on the read-only root, and cannot become root."""
    h = sb.pty.create(PtySize(rows=24, cols=80))
    events = iter(h)
    sb.pty.send_stdin(
        h.pid,
        b"id -u; grep CapEff /proc/self/status; touch /etc/x; su -c true root </dev/null;"
        b" echo EN''D\n",
    )
    out = _until(events, b"END")
    assert re.search(rb"[\r\n]1000\r\n", out)  # id -u's line (not the echoed input)
    assert b"CapEff:\t0000000000000000" in out
    assert b"Read-only file system" in out
    assert b"uid=0" not in out
    sb.pty.kill(h.pid)


def test_pty_connect_follows_it(sb: Sandbox) -> None:
    h = sb.pty.create(PtySize(rows=24, cols=80))
    follower = sb.pty.connect(h.pid)
    sb.pty.send_stdin(h.pid, b"echo follow-$((6*7)); exit 0\n")
    seen = bytearray()
    assert follower.wait(on_pty=seen.extend).exit_code == 0
    assert b"follow-42" in seen
    assert h.wait().exit_code == 0


def test_pty_timeout_kills_it(sb: Sandbox) -> None:
    h = sb.pty.create(PtySize(rows=24, cols=80), timeout=1)
    with pytest.raises(Exception, match=r"timed out|deadline"):
        h.wait()
    assert all(p.pid != h.pid for p in sb.commands.list())


def test_pty_input_to_a_command_without_one_is_refused(sb: Sandbox) -> None:
    h = sb.commands.run("sleep 30", background=True)
    with pytest.raises(Exception, match="not started with a PTY"):
        sb.pty.send_stdin(h.pid, b"x")
    with pytest.raises(Exception, match="not started with a PTY"):
        sb.pty.resize(h.pid, PtySize(rows=10, cols=10))
    h.kill()
    with pytest.raises(Exception, match="out of range"):
        sb.pty.create(PtySize(rows=100_000, cols=80))


async def test_pty_async(srv: ServerThread) -> None:
    box = await AsyncSandbox.create(timeout=60)
    try:
        got = bytearray()
        seen = asyncio.Event()

        def on_data(data: bytes) -> None:
            got.extend(data)
            if b"\nM1" in got:
                seen.set()

        h = await box.pty.create(PtySize(rows=24, cols=80), on_data=on_data, envs={"V": "async"})
        await box.pty.send_stdin(h.pid, b"echo $V; stty size; echo M1\n")
        await asyncio.wait_for(seen.wait(), 30)
        assert b"async" in got and b"24 80" in got
        await box.pty.resize(h.pid, PtySize(rows=50, cols=100))
        await box.pty.send_stdin(h.pid, b"stty size; exit 0\n")
        result = await h.wait()
        assert result.exit_code == 0
        assert b"50 100" in got
        h2 = await box.pty.create(PtySize(rows=24, cols=80), on_data=lambda _: None)
        assert await box.pty.kill(h2.pid)
        with pytest.raises(CommandExitException):
            await h2.wait()
    finally:
        await box.kill()
