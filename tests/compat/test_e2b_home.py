"""E2B's home with the real `e2b` SDK: commands and PTYs start in `/home/user` with
`PWD=/home/user`, so `pwd` prints what it prints on E2B, when the image has corral/base's
`/home/user -> /workspace` link; an image whose `/home/user` is anything else (here a link to
the guest-writable /tmp) keeps `/workspace`, and nothing runs elsewhere than asked."""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from e2b import PtySize, Sandbox

from runtime.api.auth import ApiKeys
from runtime.api.config import ApiConfig
from tests.compat.e2b_support import e2b_sandboxes, serve_e2b, start_server
from tests.runtime.api.conftest import ServerThread

__all__ = ["start_server"]

pytestmark = pytest.mark.docker

ELSEWHERE = b"""FROM corral/base
USER root
RUN rm /home/user && ln -s /tmp /home/user
USER 1000
"""


@pytest.fixture(scope="module")
def elsewhere_image() -> Iterator[str]:
    """corral/base whose /home/user leads to /tmp, not the workspace."""
    client = docker.from_env()
    tag = f"corral-test/home-elsewhere:{uuid.uuid4().hex[:12]}"
    client.images.build(fileobj=io.BytesIO(ELSEWHERE), tag=tag, rm=True, pull=False)
    yield tag
    client.images.remove(tag, force=True)
    client.close()


@pytest.fixture
def srv(
    start_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    elsewhere_image: str,
) -> ServerThread:
    monkeypatch.setenv("CORRAL_E2B_TEMPLATES", f"elsewhere={elsewhere_image}")
    return serve_e2b(
        start_server, monkeypatch, ApiConfig(keys=ApiKeys.from_mapping({"key-a": "a"}))
    )


@pytest.fixture
def boxes(srv: ServerThread) -> Iterator[list[Sandbox]]:
    yield from e2b_sandboxes()


def test_commands_start_in_home_user(boxes: list[Sandbox]) -> None:
    sb = Sandbox.create(timeout=120)
    boxes.append(sb)
    assert (
        sb.commands.run("pwd; echo $PWD; pwd -P").stdout == "/home/user\n/home/user\n/workspace\n"
    )
    sb.files.make_dir("/home/user/sub")
    assert sb.commands.run("pwd", cwd="/home/user/sub").stdout == "/home/user/sub\n"
    assert sb.commands.run("pwd", cwd="sub").stdout == "/home/user/sub\n"
    assert sb.commands.run("pwd", cwd="/workspace/sub").stdout == "/workspace/sub\n"
    assert sb.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
    # The caller's own PWD is the caller's (the shell keeps it only if it is the directory).
    assert sb.commands.run("pwd", envs={"PWD": "/etc"}).stdout == "/workspace\n"
    assert sb.commands.list() == []  # and the listed cwd is E2B's
    h = sb.commands.run("sleep 30", background=True)
    assert [p.cwd for p in sb.commands.list()] == ["/home/user"]
    sb.commands.kill(h.pid)


def test_a_pty_starts_in_home_user(boxes: list[Sandbox]) -> None:
    sb = Sandbox.create(timeout=120)
    boxes.append(sb)
    h = sb.pty.create(PtySize(rows=24, cols=80))
    sb.pty.send_stdin(h.pid, b"echo at-$(pwd)-; exit\n")
    seen = b""
    for _, _, pty in h:
        seen += pty or b""
    assert b"at-/home/user-" in seen


def test_an_image_whose_home_user_leads_elsewhere_keeps_the_workspace(
    boxes: list[Sandbox],
) -> None:
    sb = Sandbox.create("elsewhere", timeout=120)
    boxes.append(sb)
    assert sb.commands.run("readlink /home/user").stdout == "/tmp\n"
    assert sb.commands.run("pwd; echo $PWD").stdout == "/workspace\n/workspace\n"
    sb.commands.run("touch here")
    assert sb.files.exists("/home/user/here")  # the files API's home is still the workspace
    assert sb.commands.run("test ! -e /tmp/here").exit_code == 0
    h = sb.pty.create(PtySize(rows=24, cols=80))
    sb.pty.send_stdin(h.pid, b"echo at-$(pwd)-; exit\n")
    seen = b""
    for _, _, pty in h:
        seen += pty or b""
    assert b"at-/workspace-" in seen
