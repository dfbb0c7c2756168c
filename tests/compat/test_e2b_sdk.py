"""The real `e2b` SDK (sync and async) against a live `corral serve`: lifecycle, commands,
files, tenancy, and the refusals of what is not translated (docs/e2b.md)."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from e2b import AsyncSandbox, CommandExitException, Sandbox, SandboxQuery, SandboxState
from e2b.exceptions import (
    AuthenticationException,
    NotFoundException,
    RateLimitException,
    SandboxException,
    TimeoutException,
)

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from runtime.api.policy import TenantPolicy
from tests.compat.e2b_support import e2b_sandbox, serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]

pytestmark = pytest.mark.docker
KEYS = {"key-a": "a", "key-b": "b"}


@pytest.fixture
def srv(start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch) -> ServerThread:
    return serve_e2b(start_server, monkeypatch, ApiConfig(keys=ApiKeys.from_mapping(KEYS)))


@pytest.fixture
def sb(srv: ServerThread) -> Iterator[Sandbox]:
    yield from e2b_sandbox(timeout=120, metadata={"suite": "e2b"}, envs={"GREETING": "hi"})


def test_commands(sb: Sandbox) -> None:
    seen: list[str] = []
    r = sb.commands.run("echo $GREETING; echo err >&2; pwd", on_stdout=seen.append)
    assert r.exit_code == 0
    assert r.stdout == "hi\n/home/user\n"  # E2B's home, as on E2B (docs/e2b.md)
    assert r.stderr == "err\n"
    assert "".join(seen) == "hi\n/home/user\n"
    r = sb.commands.run("echo $X", envs={"X": "y"}, cwd="/tmp")
    assert r.stdout == "y\n"
    with pytest.raises(CommandExitException) as exc:
        sb.commands.run("exit 3")
    assert exc.value.exit_code == 3


def test_a_user_the_sandbox_does_not_have_is_refused(sb: Sandbox) -> None:
    """No silent `user=` drop: `user` works, `root` is refused naming it (no root here)."""
    assert sb.commands.run("id -u", user="user").stdout == "1000\n"
    with pytest.raises(Exception, match="user 'root'") as refused:
        sb.commands.run("id -u", user="root")
    assert not isinstance(refused.value, CommandExitException)
    with pytest.raises(Exception, match="user 'root'"):
        sb.files.write("/home/user/as-root.txt", "x", user="root")
    assert not sb.files.exists("/home/user/as-root.txt")


def test_background(sb: Sandbox) -> None:
    h = sb.commands.run("sleep 30", background=True)
    assert any(p.pid == h.pid for p in sb.commands.list())
    assert sb.commands.kill(h.pid)
    with pytest.raises(CommandExitException):
        h.wait()
    h = sb.commands.run("echo done", background=True)
    assert h.wait().stdout == "done\n"


def test_connect_to_a_running_command(sb: Sandbox) -> None:
    h = sb.commands.run("sleep 1; echo late; exit 4", background=True)
    follower = sb.commands.connect(h.pid)
    with pytest.raises(CommandExitException) as exc:
        follower.wait()
    assert (exc.value.exit_code, exc.value.stdout) == (4, "late\n")
    with pytest.raises(CommandExitException):
        h.wait()
    with pytest.raises(NotFoundException):
        sb.commands.connect(99999).wait()


def test_stdin(sb: Sandbox) -> None:
    h = sb.commands.run("cat; echo bye >&2", background=True, stdin=True)
    sb.commands.send_stdin(h.pid, "hello\n")
    sb.commands.send_stdin(h.pid, "again\n")
    sb.commands.close_stdin(h.pid)
    r = h.wait()
    assert (r.exit_code, r.stdout, r.stderr) == (0, "hello\nagain\n", "bye\n")
    h = sb.commands.run("cat", background=True, stdin=True)
    sb.commands.stream_input(h.pid, ["streamed ", b"in\n", "order\n"])
    sb.commands.close_stdin(h.pid)
    assert h.wait().stdout == "streamed in\norder\n"
    with pytest.raises(NotFoundException):
        sb.commands.stream_input(99999, ["x"])
    h = sb.commands.run("cat", background=True, stdin=True)
    assert sb.commands.kill(h.pid)
    with pytest.raises(CommandExitException):
        h.wait()


def test_files(sb: Sandbox) -> None:
    sb.files.write("/home/user/a.txt", "hello")
    assert sb.files.read("/home/user/a.txt") == "hello"
    sb.files.write("rel/b.bin", b"\x00\x01")
    assert bytes(sb.files.read("/home/user/rel/b.bin", format="bytes")) == b"\x00\x01"
    assert sb.commands.run("cat /workspace/a.txt").stdout == "hello"
    assert sb.files.exists("/home/user/a.txt")
    assert not sb.files.exists("/home/user/nope")
    assert sb.files.make_dir("/home/user/d")
    assert not sb.files.make_dir("/home/user/d")
    names = {e.name for e in sb.files.list("/home/user")}
    assert {"a.txt", "rel", "d"} <= names
    sb.files.rename("/home/user/a.txt", "/home/user/d/c.txt")
    assert sb.files.read("/home/user/d/c.txt") == "hello"
    sb.files.remove("/home/user/d")
    assert not sb.files.exists("/home/user/d")
    with pytest.raises(NotFoundException):
        sb.files.read("/home/user/missing.txt")


def test_home_user_in_shell_commands(sb: Sandbox) -> None:
    """/home/user is the workspace for shell commands too (a symlink baked into the image's
    read-only root), so commands and the files API agree on it; it cannot be retargeted."""
    r = sb.commands.run("echo hi > /home/user/a && cat /home/user/a")
    assert r.stdout == "hi\n"
    assert sb.files.read("/home/user/a") == "hi\n"
    sb.files.write("/home/user/sub/b.txt", "from files")
    assert sb.commands.run("cat /home/user/sub/b.txt").stdout == "from files"
    assert sb.commands.run("cd /home/user && pwd -P").stdout == "/workspace\n"
    for attack in ("rm /home/user", "ln -sfn /etc /home/user", "mv /home/user /tmp/x"):
        with pytest.raises(CommandExitException):
            sb.commands.run(attack)
    assert sb.commands.run("readlink /home/user").stdout == "/workspace\n"


def test_large_files_and_info(sb: Sandbox) -> None:
    data = os.urandom(12 * 1024**2)  # over the 10 MiB JSON cap: uploads have their own
    sb.files.write("/home/user/big.bin", data)  # multipart, as the SDK sends bytes
    assert bytes(sb.files.read("/home/user/big.bin", format="bytes")) == data
    sb.files.write("/home/user/deep/streamed.bin", io.BytesIO(data))  # octet-stream
    assert bytes(sb.files.read("/home/user/deep/streamed.bin", format="bytes")) == data
    info = sb.files.get_info("/home/user/big.bin")
    assert (info.name, info.path, info.size) == ("big.bin", "/home/user/big.bin", len(data))
    assert info.type is not None and info.type.value == "file"
    top = {e.path for e in sb.files.list("/home/user")}
    assert "/home/user/deep/streamed.bin" not in top
    assert "/home/user/deep/streamed.bin" in {e.path for e in sb.files.list("/home/user", depth=2)}


def test_command_timeout(sb: Sandbox) -> None:
    with pytest.raises(TimeoutException):
        sb.commands.run("sleep 5", timeout=1)
    assert sb.commands.run("echo still here").stdout == "still here\n"


def test_lifecycle_and_tenancy(sb: Sandbox, srv: ServerThread) -> None:
    assert sb.is_running()
    ids = [
        s.sandbox_id
        for s in Sandbox.list(query=SandboxQuery(metadata={"suite": "e2b"})).next_items()
    ]
    assert sb.sandbox_id in ids
    assert Sandbox.list(query=SandboxQuery(metadata={"suite": "other"})).next_items() == []
    info = sb.get_info()
    assert info.metadata == {"suite": "e2b"}
    sb.set_timeout(60)
    again = Sandbox.connect(sb.sandbox_id)
    assert again.commands.run("echo ok").stdout == "ok\n"
    # another tenant sees nothing of it
    assert Sandbox.list(api_key="key-b").next_items() == []
    with pytest.raises(NotFoundException):
        Sandbox.connect(sb.sandbox_id, api_key="key-b")
    assert Sandbox.kill(sb.sandbox_id, api_key="key-b") is False
    with pytest.raises(AuthenticationException):
        Sandbox.list(api_key="wrong").next_items()
    Sandbox.kill(sb.sandbox_id)
    assert not sb.is_running()


def test_refused(sb: Sandbox) -> None:
    from e2b import Template

    with pytest.raises(Exception, match="templates is not supported"):
        Template.get_tags("base")
    with pytest.raises(SandboxException, match="template 'no-such-template' not found"):
        Sandbox.create(template="no-such-template")


def test_metrics(sb: Sandbox) -> None:
    """One sample, now: CPU share while the sandbox burns CPU, memory and the workspace's
    disk, which grows with a file written there; a window in the past has no samples."""
    sb.commands.run("head -c 20000000 /dev/zero > /home/user/fill")
    burn = sb.commands.run("while :; do :; done", background=True)
    try:
        [m] = sb.get_metrics()
    finally:
        burn.kill()
    assert m.cpu_count == 1
    assert 5 < m.cpu_used_pct <= 100  # a busy loop, on a machine that may be busy too
    assert 0 < m.mem_used < m.mem_total
    assert m.disk_total == 1024**3  # the sandbox's default workspace size
    assert 20_000_000 <= m.disk_used < 40_000_000
    assert abs(m.timestamp.timestamp() - time.time()) < 60
    old = datetime.now(UTC) - timedelta(hours=2)
    assert sb.get_metrics(start=old, end=old + timedelta(minutes=5)) == []
    assert len(Sandbox.get_metrics(sb.sandbox_id)) == 1
    with pytest.raises(NotFoundException):
        Sandbox.get_metrics(sb.sandbox_id, api_key="key-b")


async def test_metrics_async(srv: ServerThread) -> None:
    box = await AsyncSandbox.create(timeout=60)
    try:
        [m] = await box.get_metrics()
        assert 0 < m.mem_used < m.mem_total and m.disk_total > 0
        await box.pause()
        assert await box.get_metrics() == []  # paused: nothing runs, no sample
    finally:
        await box.kill()


def test_pause_resume(sb: Sandbox) -> None:
    """A paused sandbox keeps its files and its processes (frozen); connect resumes it."""
    sb.files.write("/home/user/kept.txt", "kept")
    ticker = sb.commands.run(
        "for i in $(seq 1 100); do echo $i >> n; sleep 0.1; done", background=True
    )
    sb.pause()
    assert sb.get_info().state.value == "paused"
    paused = Sandbox.list(query=SandboxQuery(state=[SandboxState.PAUSED])).next_items()
    assert [s.sandbox_id for s in paused] == [sb.sandbox_id]
    assert sb.pause() is False  # already paused
    with pytest.raises(SandboxException, match="paused"):
        sb.commands.run("true")
    same = Sandbox.connect(sb.sandbox_id)
    assert same.get_info().state.value == "running"
    assert same.files.read("/home/user/kept.txt") == "kept"
    assert ticker.wait().exit_code == 0
    assert same.commands.run("wc -l < n").stdout == "100\n"


def test_timeout_removes_an_idle_sandbox(
    start_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = start_server(ApiConfig(keys=ApiKeys.from_mapping(KEYS), reap_interval=0.2))
    opts = {"api_url": s.url, "sandbox_url": s.url, "api_key": "key-a"}
    box = Sandbox.create(timeout=1, **opts)
    deadline = time.monotonic() + 20
    while Sandbox.list(**opts).next_items() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Sandbox.list(**opts).next_items() == []
    with pytest.raises(NotFoundException):
        Sandbox.connect(box.sandbox_id, **opts)


def test_envd_needs_the_sandbox_token(sb: Sandbox, srv: ServerThread) -> None:
    """In-sandbox calls carry no API key: the access token of another sandbox (another
    tenant's) or none at all is refused, an unknown sandbox is not found."""
    other = Sandbox.create(timeout=60, api_key="key-b")
    try:
        body = b"{}"
        for token, status in (("", 401), (other._envd_access_token, 401)):
            r = httpx.post(
                f"{srv.url}/process.Process/List",
                content=body,
                headers={
                    "Content-Type": "application/json",
                    "E2b-Sandbox-Id": sb.sandbox_id,
                    "X-Access-Token": token or "",
                },
            )
            assert r.status_code == status
            assert r.json()["code"] == "unauthenticated"
        r = httpx.get(
            f"{srv.url}/files",
            params={"path": "/home/user/a"},
            headers={"E2b-Sandbox-Id": "sb-nope", "X-Access-Token": "x"},
        )
        assert r.status_code == 404
    finally:
        other.kill()


def test_malformed_input_streams_are_refused(sb: Sandbox, srv: ServerThread) -> None:
    """stream_input's body is parsed as it arrives: a compressed, oversized, truncated or
    out-of-order message ends the call with invalid_argument, nothing is written."""
    h = sb.commands.run("cat", background=True, stdin=True)
    headers = {
        "Content-Type": "application/connect+json",
        "E2b-Sandbox-Id": sb.sandbox_id,
        "X-Access-Token": sb._envd_access_token or "",
    }

    def frame(msg: bytes, flags: int = 0, size: int | None = None) -> bytes:
        return bytes([flags]) + (len(msg) if size is None else size).to_bytes(4, "big") + msg

    data = b'{"data": {"input": {"stdin": "eA=="}}}'
    start = b'{"start": {"process": {"pid": %d}}}' % h.pid
    for body in (
        frame(start, flags=1),  # compressed
        frame(start, size=64 * 1024**2),  # declares more than a message may be
        frame(start)[:-3],  # ends inside a message
        frame(data) + frame(start),  # data before start
        frame(b"[1]"),  # not an object
    ):
        r = httpx.post(f"{srv.url}/process.Process/StreamInput", content=body, headers=headers)
        assert r.status_code == 200 and b"invalid_argument" in r.content, r.content
    sb.commands.close_stdin(h.pid)
    assert h.wait().stdout == ""


def test_tenant_ceilings(start_server: Callable[..., ServerThread]) -> None:
    """The key's ceilings hold through the E2B door: the live-sandbox quota is the SDK's
    RateLimitException, a network the key may not open its SandboxException (403)."""
    keys = ApiKeys.from_mapping(KEYS, policies={"key-a": TenantPolicy(max_sandboxes=1)})
    s = start_server(ApiConfig(keys=keys))
    opts = {"api_url": s.url, "sandbox_url": s.url, "api_key": "key-a"}
    box = Sandbox.create(timeout=60, **opts)
    try:
        with pytest.raises(RateLimitException):
            Sandbox.create(timeout=60, **opts)
    finally:
        box.kill()
    with pytest.raises(SandboxException, match="403"):
        Sandbox.create(timeout=60, allow_internet_access=True, **opts)


def test_token_outlives_a_restart(start_server: Callable[..., ServerThread]) -> None:
    """The access token is keyed by a secret kept in CORRAL_HOME: a program holding a
    Sandbox keeps working when the server restarts."""
    first = start_server(ApiConfig(keys=ApiKeys.from_mapping(KEYS)))
    opts = {"api_url": first.url, "sandbox_url": first.url, "api_key": "key-a"}
    box = Sandbox.create(timeout=60, **opts)
    try:
        token = box._envd_access_token
        first.stop()
        second = start_server(ApiConfig(keys=ApiKeys.from_mapping(KEYS)))
        r = httpx.post(
            f"{second.url}/process.Process/List",
            content=b"{}",
            headers={
                "Content-Type": "application/json",
                "E2b-Sandbox-Id": box.sandbox_id,
                "X-Access-Token": token or "",
            },
        )
        assert r.status_code == 200, r.text
    finally:
        Sandbox.kill(box.sandbox_id, api_url=second.url, api_key="key-a")


async def test_async(srv: ServerThread) -> None:
    box = await AsyncSandbox.create(timeout=60)
    try:
        r = await box.commands.run("echo async")
        assert r.stdout == "async\n"
        await box.files.write("/home/user/x.txt", "x")
        assert await box.files.read("/home/user/x.txt") == "x"
        r = await box.commands.run("cat /home/user/x.txt && echo y > /home/user/y.txt")
        assert r.stdout == "x"
        assert await box.files.read("/home/user/y.txt") == "y\n"
    finally:
        await box.kill()


async def test_async_lifecycle_and_commands(srv: ServerThread) -> None:
    """The async SDK through the rows the sync tests cover: list filters, info, set_timeout,
    connect, background/kill/list, stdin, commands.connect, timeouts, exit codes, pause."""
    box = await AsyncSandbox.create(timeout=60, metadata={"suite": "e2b-async"})
    try:
        found = AsyncSandbox.list(query=SandboxQuery(metadata={"suite": "e2b-async"}))
        assert [s.sandbox_id for s in await found.next_items()] == [box.sandbox_id]
        assert (await box.get_info()).metadata == {"suite": "e2b-async"}
        await box.set_timeout(60)
        same = await AsyncSandbox.connect(box.sandbox_id)
        seen: list[str] = []
        r = await same.commands.run("echo out; echo err >&2", on_stdout=seen.append)
        assert (r.stdout, r.stderr, seen) == ("out\n", "err\n", ["out\n"])
        with pytest.raises(CommandExitException) as exc:
            await box.commands.run("exit 5")
        assert exc.value.exit_code == 5
        with pytest.raises(TimeoutException):
            await box.commands.run("sleep 5", timeout=1)
        bg = await box.commands.run("sleep 1; echo late", background=True)
        follower = await box.commands.connect(bg.pid)
        assert any(p.pid == bg.pid for p in await box.commands.list())
        assert (await follower.wait()).stdout == "late\n"
        assert (await bg.wait()).stdout == "late\n"
        piped = await box.commands.run("cat", background=True, stdin=True)
        await box.commands.send_stdin(piped.pid, "fed\n")
        feed = box.commands.stream_input(piped.pid)
        for part in ("and ", "streamed\n"):
            await feed.send(part)
        await feed.close()
        await box.commands.close_stdin(piped.pid)
        assert (await piped.wait()).stdout == "fed\nand streamed\n"
        long = await box.commands.run("sleep 30", background=True)
        assert await box.commands.kill(long.pid)
        with pytest.raises(CommandExitException):
            await long.wait()
        await box.pause()
        assert (await box.get_info()).state.value == "paused"
        resumed = await AsyncSandbox.connect(box.sandbox_id)
        assert (await resumed.commands.run("echo back")).stdout == "back\n"
    finally:
        await box.kill()
    assert not await box.is_running()
