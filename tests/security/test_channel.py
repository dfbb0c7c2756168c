"""The controller ↔ guest channel and the tool server, attacked from inside the sandbox.

Each test plays a tenant whose agent runs arbitrary commands as the sandbox user: it tries to
redirect the controller's channel to another sandbox, write through the controller's folder,
keep itself alive past its idle TTL, freeze or rewrite its tool server, or fill the host disk.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxSpec
from sandbox.backends.base import SandboxHandle, SandboxStatus
from sandbox.backends.docker import DockerBackend
from sandbox.errors import SandboxDied, SandboxError

pytestmark = pytest.mark.docker

SMALL = SandboxSpec(memory="128m", disk="64m", tmp_size="16m", pids=128)

PTRACE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for pid in map(int, sys.argv[1:]):
    rc = libc.ptrace(16, pid, None, None)  # PTRACE_ATTACH
    print(pid, rc, os.strerror(ctypes.get_errno()) if rc else "attached")
"""


async def server_pid(sb: Sandbox) -> int:
    info = await sb.rpc.info()
    return int(info["pid"])


async def test_agent_cannot_redirect_the_channel_to_another_sandbox(
    backend: DockerBackend,
) -> None:
    a = await Sandbox.create(SMALL, backend=backend)
    b = await Sandbox.create(SMALL, backend=backend)
    try:
        hijack = await a.exec(
            "mv /run/corral/rpc.sock /run/corral/old.sock; "
            f"ln -sf ../../{b.id}/rpc/rpc.sock /run/corral/rpc.sock; "
            f"ln -sf /run/corral/../../{b.id} /run/corral/x; ls /run/corral"
        )
        assert hijack.exit_code != 0
        assert hijack.stderr.count("Permission denied") >= 3, hijack.stderr
        # A fresh controller process (every CLI call) attaches to A and gets A.
        fresh = DockerBackend(backend.home)
        try:
            again = await Sandbox.attach(a.id, backend=fresh)
            r = await again.exec("echo $CORRAL_SANDBOX_ID")
            assert r.stdout.strip() == a.id
            await again.close()
        finally:
            await fresh.aclose()
        host_rpc = a.handle.rpc_path.parent
        assert sorted(os.listdir(host_rpc)) == ["rpc.sock"]
        # Nor can the agent speak to its own tool server as if it were the controller.
        dial = await a.exec(
            ["python3", "-c", "import socket; socket.socket(socket.AF_UNIX).connect("
             "'/run/corral/rpc.sock')"]
        )  # fmt: skip
        assert dial.exit_code != 0 and "PermissionError" in dial.stderr
    finally:
        await a.destroy()
        await b.destroy()


async def test_controller_refuses_a_channel_folder_it_does_not_own_alone(
    backend: DockerBackend, tmp_path: Path
) -> None:
    """Defence in depth: should the folder ever be writable by others or be a symlink (an old
    layout, an operator's chmod), attaching fails closed instead of following it."""
    sb = await Sandbox.create(SMALL, backend=backend)
    try:
        rpc_dir = sb.handle.rpc_path.parent
        os.chmod(rpc_dir, 0o777)
        fresh = DockerBackend(backend.home)
        try:
            with pytest.raises(SandboxError) as err:
                await Sandbox.attach(sb.id, backend=fresh)
            assert err.value.reason == "channel_untrusted"
            os.chmod(rpc_dir, 0o700)
            moved = rpc_dir.with_name("rpc-real")
            rpc_dir.rename(moved)
            rpc_dir.symlink_to(moved)
            with pytest.raises(SandboxError) as err:
                await Sandbox.attach(sb.id, backend=fresh)
            assert err.value.reason == "channel_untrusted"
            rpc_dir.unlink()
            moved.rename(rpc_dir)
        finally:
            await fresh.aclose()
    finally:
        await sb.destroy()


async def test_agent_cannot_write_the_host_folder_or_fill_the_host_disk(
    backend: DockerBackend,
) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec("dd if=/dev/zero of=/run/corral/fill bs=1M count=8")
        assert r.exit_code != 0 and "Permission denied" in r.stderr
        host = sb.handle.host_dir
        sizes = sum(p.lstat().st_size for p in host.rglob("*") if p.is_file())
        assert sizes == 0
        assert sorted(p.name for p in host.iterdir()) == ["last_used", "rpc"]
        assert (host.stat().st_mode & 0o777) == 0o700
        assert (sb.handle.rpc_path.parent.stat().st_mode & 0o777) == 0o700


async def test_idle_clock_is_out_of_the_agents_reach(backend: DockerBackend) -> None:
    spec = SMALL.model_copy(update={"idle_ttl": 5.0})
    sb = await Sandbox.create(spec, backend=backend)
    try:
        before = backend.last_used(sb.handle)
        await sb.spawn("while true; do touch /run/corral/last_used /run/corral/rpc.sock; done")
        r = await sb.exec("touch -d '2099-01-01' /run/corral/last_used /run/corral/rpc.sock")
        assert r.exit_code != 0
        assert backend.last_used(sb.handle) <= time.time()
        assert backend.last_used(sb.handle) - before < 60
        reaped = await backend.reap_idle(now=time.time() + 30)
        assert sb.id in reaped
    finally:
        await sb.destroy()


async def test_agent_cannot_ptrace_signal_or_read_its_tool_server(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        pid = await server_pid(sb)
        await sb.files.write("ptrace.py", PTRACE.encode())
        r = await sb.exec(["python3", "ptrace.py", str(pid), "1"])
        lines = r.stdout.splitlines()
        assert len(lines) == 2 and all("Operation not permitted" in line for line in lines), r
        for sig in ("STOP", "KILL", "TERM"):
            k = await sb.exec(f"kill -{sig} {pid} 1")
            assert k.exit_code != 0 and "Operation not permitted" in k.stderr
        peek = await sb.exec(f"cat /proc/{pid}/environ /proc/{pid}/mem /proc/{pid}/maps")
        assert peek.exit_code != 0 and peek.stdout == ""
        fds = await sb.exec(f"ls /proc/{pid}/fd")
        assert fds.exit_code != 0
        # The server is intact and still answers.
        assert (await sb.exec("echo alive")).stdout == "alive\n"
        assert await server_pid(sb) == pid


async def test_every_agent_process_is_the_sandbox_user_without_capabilities(
    backend: DockerBackend,
) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        caps = "grep -E '^(CapPrm|CapEff|CapAmb)' /proc/self/status; id -u; id -G"
        r = await sb.exec(caps)
        assert r.stdout.split().count("0000000000000000") == 3
        assert r.stdout.split()[-2:] == ["1000", "1000"]
        py = await sb.python("import os; print(os.getresuid(), os.getresgid(), os.getgroups())")
        assert py.stdout.strip() == "(1000, 1000, 1000) (1000, 1000, 1000) []"
        await sb.spawn("sleep 60")
        ps = await sb.exec("ps -eo ruid=,euid=,suid=,comm=")
        rows = [line.split() for line in ps.stdout.splitlines()]
        others = [row for row in rows if row[3] not in ("docker-init", "python3")]
        assert others and all(row[:3] == ["1000", "1000", "1000"] for row in others), rows
        # Only pid 1 (init) and the tool server keep uid 0, and the server acts as the agent.
        root = [row for row in rows if "0" in row[:3]]
        assert sorted(row[3] for row in root) == ["docker-init", "python3"]
        assert ["0", "1000", "0", "python3"] in root


async def test_cgroup_namespace_is_private(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec("readlink /proc/self/ns/cgroup; cat /proc/self/cgroup")
        assert r.stdout.split()[0] != os.readlink("/proc/self/ns/cgroup")
        assert "docker" not in r.stdout and "corral-" not in r.stdout


async def test_full_workspace_is_enospc_for_the_writer_not_death_of_the_sandbox(
    backend: DockerBackend,
) -> None:
    """The workspace is tmpfs and its pages count against the memory cgroup: filling it used to
    OOM-kill every process in the sandbox, the tool server with them."""
    spec = SandboxSpec(memory="64m", disk="96m", tmp_size="32m", pids=128)
    async with await Sandbox.create(spec, backend=backend) as sb:
        r = await sb.exec("dd if=/dev/zero of=/workspace/big bs=1M count=200; "
                          "dd if=/dev/zero of=/tmp/big bs=1M count=200")  # fmt: skip
        assert r.exit_code != 0 and r.stderr.count("No space left on device") == 2, r.stderr
        st = await sb.status()
        assert st.running and not st.oom_killed
        assert (await sb.exec("echo alive")).stdout == "alive\n"
        # Processes still get their own `memory` with both filesystems full.
        mem = await sb.python("b = bytearray(32 * 1024 * 1024); print(len(b))")
        assert mem.stdout.strip() == str(32 * 1024 * 1024)


class _DeadBackend:
    """A backend whose sandbox is gone in a known way (the seam `_connect` reports through)."""

    def __init__(self, status: SandboxStatus) -> None:
        self._status = status

    async def status(self, sandbox_id: str) -> SandboxStatus:
        return self._status


@pytest.mark.parametrize(
    ("status", "reason", "words"),
    [
        (SandboxStatus(False, False, 137, True), "oom", "out of memory"),
        (SandboxStatus(False, False, 1, False), "start_failed", "exited with code 1"),
        (SandboxStatus(False, False, 127, False), "start_failed", "have python3"),
    ],
)
async def test_reconnect_error_says_why_the_sandbox_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: SandboxStatus, reason: str, words: str
) -> None:
    from sandbox import api
    from sandbox.api import _connect

    monkeypatch.setattr(api, "CONNECT_TIMEOUT", 0.05)
    rpc = tmp_path / "rpc"
    rpc.mkdir(mode=0o700)
    handle = SandboxHandle(
        id="sb-x", container_id="c", spec=SandboxSpec(), rpc_path=rpc / "rpc.sock",
        host_dir=tmp_path, created=time.time(),
    )  # fmt: skip
    with pytest.raises(SandboxDied) as err:
        await _connect(_DeadBackend(status), handle)  # type: ignore[arg-type]
    assert err.value.reason == reason and words in str(err.value)
    if reason == "oom":
        assert "python3" not in str(err.value)


@pytest.mark.browser
async def test_browser_runs_as_the_agent_without_capabilities(backend: DockerBackend) -> None:
    """Playwright starts Node.js and Chromium itself: they go through as_agent.py, so none of
    them keeps the server's real uid 0 (from which Chromium could regain root)."""
    spec = SandboxSpec(image="corral/browser")  # Chromium needs the default /tmp and memory
    async with await Sandbox.create(spec, backend=backend) as sb:
        await sb.browser.goto("about:blank")
        ps = await sb.exec("ps -eo ruid=,euid=,suid=,comm=")
        rows = [line.split() for line in ps.stdout.splitlines()]
        browser = [row for row in rows if row[3].startswith(("node", "chrom"))]
        assert {row[3][:4] for row in browser} == {"node", "chro"}, rows
        assert all(row[:3] == ["1000"] * 3 for row in browser), rows
        caps = await sb.exec(
            "for p in $(pgrep -f 'chromium|node'); do grep CapPrm /proc/$p/status; done"
        )
        assert caps.stdout and set(caps.stdout.split()) == {"CapPrm:", "0000000000000000"}


async def test_sandboxes_of_an_older_channel_layout_are_removed_not_adopted(
    backend: DockerBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sandbox created by a controller of the old layout had a world-writable socket folder:
    a new controller must not keep talking to it."""
    from sandbox.backends import docker as docker_backend

    monkeypatch.setattr(docker_backend, "LAYOUT", "1")
    old = await Sandbox.create(SMALL, backend=backend)
    await old.close()
    monkeypatch.undo()
    fresh = DockerBackend(backend.home)
    try:
        report = await fresh.reconcile()
        assert old.id in report.removed and old.id not in report.adopted
        assert not old.handle.host_dir.exists()
    finally:
        await fresh.aclose()


async def test_agent_cannot_use_dropexec_to_regain_root(backend: DockerBackend) -> None:
    """The guest starts commands through its `dropexec` helper (fast, vfork-able); the helper
    is no way back to root for the agent: it only ever lowers ids, and needs none to do so."""
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        helper = "/opt/corral/corral_guest/dropexec"
        assert (await sb.exec(f"test -x {helper}")).exit_code == 0
        r = await sb.exec([helper, "0", "0", "/", "/bin/sh", "sh", "-c", "id -u"])
        assert r.exit_code == 125 and "cannot become 0:0" in r.stderr and r.stdout == ""
        same = await sb.exec([helper, "1000", "1000", "/", "/usr/bin/id", "id", "-u"])
        assert same.stdout.strip() == "1000"
        missing = await sb.exec(["no-such-program"])
        assert missing.exit_code == 127 and "no-such-program: No such file" in missing.stderr
