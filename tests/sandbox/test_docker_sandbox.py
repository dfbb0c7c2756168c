"""The sandbox core against the real Docker Engine and the real corral/base image."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sandbox import Sandbox, SandboxSpec
from sandbox.backends.docker import DockerBackend, container_memory
from sandbox.errors import ImageNotFound, PathNotAllowed, RuntimeUnavailable, SandboxDied
from sandbox.pool import WarmPool
from sandbox.spec import DataMount

pytestmark = pytest.mark.docker

SMALL = SandboxSpec(memory="256m", pids=128, disk="256m")


async def test_design_example_works_as_written(corral_home: Path) -> None:
    async with await Sandbox.create(SandboxSpec(image="corral/base", network="none")) as sb:
        r = await sb.exec("echo hi")
        assert (r.exit_code, r.stdout) == (0, "hi\n")
        assert r.duration >= 0
        await sb.files.write("/workspace/a.txt", b"...")
        assert await sb.files.read("/workspace/a.txt") == b"..."
        sandbox_id = sb.id
    be = DockerBackend(corral_home)
    assert await be.list() == []
    assert not (corral_home / "sandboxes" / sandbox_id).exists()
    await be.aclose()


async def test_streaming_order_and_exit_codes(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        chunks: list[tuple[str, bytes]] = []
        script = "for i in 1 2 3; do echo out$i; echo err$i >&2; sleep 0.05; done; exit 7"
        r = await sb.exec(script, on_output=lambda s, d: chunks.append((s, d)))
        assert r.exit_code == 7
        out = b"".join(d for s, d in chunks if s == "stdout")
        err = b"".join(d for s, d in chunks if s == "stderr")
        assert out == b"out1\nout2\nout3\n" and err == b"err1\nerr2\nerr3\n"
        assert len(chunks) >= 3  # delivered as produced, not in one piece at the end
        assert r.stdout == "out1\nout2\nout3\n"
        r2 = await sb.exec(["sh", "-c", "exit 3"])
        assert r2.exit_code == 3


async def test_timeout_kills_grandchildren(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec("sh -c 'sleep 300 & sleep 301 & wait' ; echo never", timeout=1.0)
        assert r.timed_out
        await asyncio.sleep(0.3)
        ps = await sb.exec("ps -eo args")
        assert "sleep 300" not in ps.stdout and "sleep 301" not in ps.stdout


async def test_output_cap_marks_truncation(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec("head -c 5000000 /dev/zero | tr '\\0' x", output_limit=100_000)
        assert r.truncated and r.exit_code == 0
        assert len(r.stdout) <= 100_000 + 200


async def test_binary_and_100mb_round_trip(backend: DockerBackend) -> None:
    async with await Sandbox.create(SandboxSpec(memory="512m", disk="512m"), backend=backend) as sb:
        blob = bytes(range(256)) * 16
        await sb.files.write("bin/b.dat", blob)
        assert await sb.files.read("bin/b.dat") == blob
        big = os.urandom(1024 * 1024) * 100
        want = hashlib.sha256(big).hexdigest()

        async def chunks():
            for i in range(0, len(big), 1 << 20):
                yield big[i : i + (1 << 20)]

        await sb.files.upload("big.bin", chunks())
        r = await sb.exec("sha256sum big.bin")
        assert r.stdout.split()[0] == want
        h = hashlib.sha256()
        async for c in sb.files.download("big.bin"):
            h.update(c)
        assert h.hexdigest() == want


async def test_paths_outside_workspace_refused(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        with pytest.raises(PathNotAllowed):
            await sb.files.read("/etc/passwd")
        with pytest.raises(PathNotAllowed):
            await sb.files.read("../etc/passwd")
        await sb.exec("ln -s /etc esc && ln -s /etc/passwd pw")
        with pytest.raises(PathNotAllowed):
            await sb.files.read("esc/passwd")
        with pytest.raises(PathNotAllowed):
            await sb.files.read("pw")
        with pytest.raises(PathNotAllowed):
            await sb.files.write("esc/evil", b"x")


async def test_hardening_facts_from_inside(backend: DockerBackend) -> None:
    async with await Sandbox.create(SMALL, backend=backend) as sb:
        r = await sb.exec("id -u; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
        lines = r.stdout.split()
        assert lines[0] != "0" and lines[0] == "1000"
        assert "0000000000000000" in r.stdout and "NoNewPrivs:\t1" in r.stdout.replace(" ", "\t")
        ro = await sb.exec("touch /usr/x /etc/x")
        assert ro.exit_code != 0 and "Read-only file system" in ro.stderr
        assert (await sb.exec("touch /tmp/x /workspace/x")).exit_code == 0
        net = await sb.exec("cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '")
        assert net.stdout.split() == ["lo"]
        curl = await sb.exec("curl -s -m 3 http://1.1.1.1/ || echo unreachable")
        assert "unreachable" in curl.stdout
        assert (await sb.exec("test -S /var/run/docker.sock")).exit_code != 0
        init = await sb.exec("cat /proc/1/comm")
        assert init.stdout.strip() in ("docker-init", "tini")
        lim = await sb.exec("ulimit -n; ulimit -c")
        assert lim.stdout.split() == ["4096", "0"]
        host_config = backend.client.api.inspect_container(sb.handle.container_id)["HostConfig"]
        # no swap; the tmpfs workspace and /tmp get room of their own on top of `memory`
        assert host_config["MemorySwap"] == host_config["Memory"] == container_memory(SMALL)
        assert host_config["CgroupnsMode"] == "private"
        assert host_config["IpcMode"] == "private" and host_config["PidsLimit"] == SMALL.pids
        kinds = ("ipc", "pid", "net", "cgroup")
        ns = await sb.exec(" ".join(["readlink", *(f"/proc/self/ns/{n}" for n in kinds)]))
        for inside, kind in zip(ns.stdout.split(), kinds, strict=True):
            assert inside != os.readlink(f"/proc/self/ns/{kind}"), kind


async def test_fork_bomb_contained(backend: DockerBackend) -> None:
    spec = SandboxSpec(pids=64, memory="256m")
    sb = await Sandbox.create(spec, backend=backend)
    try:
        r = await sb.exec("b(){ b | b & }; b; sleep 30", timeout=3)
        # The pids limit stops it: forks fail inside (the reason is in stderr), or the
        # timeout kills the whole group.
        assert r.timed_out or "fork" in r.stderr.lower(), r
        stats = backend.client.api.stats(sb.handle.container_id, stream=False)
        assert stats["pids_stats"].get("current", 0) <= 64
        assert subprocess.run(["true"], check=False).returncode == 0  # the host still forks
    finally:
        await sb.destroy()  # and the bomb goes with the sandbox
    assert await backend.list() == []


async def test_memory_bomb_reports_oom(backend: DockerBackend) -> None:
    spec = SandboxSpec(memory="128m")
    async with await Sandbox.create(spec, backend=backend) as sb:
        hog = 'python3 -c "x=[]\nwhile True: x.append(bytearray(8<<20))"'
        try:
            r = await sb.exec(hog, timeout=60)
        except SandboxDied as exc:  # the kernel may pick the guest itself
            assert exc.reason == "oom"
            return
        assert r.oom_killed, r
        assert r.exit_code != 0
        assert (await sb.exec("echo alive")).stdout == "alive\n"


async def test_concurrent_sandboxes_are_isolated(backend: DockerBackend) -> None:
    a, b = await asyncio.gather(
        Sandbox.create(SMALL, backend=backend), Sandbox.create(SMALL, backend=backend)
    )
    try:
        await a.files.write("secret.txt", b"a-only")
        assert (await b.exec("ls /workspace")).stdout.strip() == ""
        pa = await a.exec("sleep 30 & echo $!")
        procs = await b.exec("ps -eo pid,args")
        assert "sleep 30" not in procs.stdout
        assert pa.exit_code == 0
        ns = "readlink /proc/self/ns/ipc /proc/self/ns/pid /proc/self/ns/mnt"
        na, nb = (await a.exec(ns)).stdout.split(), (await b.exec(ns)).stdout.split()
        assert all(x != y for x, y in zip(na, nb, strict=True))  # private namespaces each
    finally:
        await asyncio.gather(a.destroy(), b.destroy())


async def test_missing_image_is_a_clear_error(backend: DockerBackend) -> None:
    with pytest.raises(ImageNotFound, match="corral images build"):
        await Sandbox.create(SandboxSpec(image="corral/does-not-exist"), backend=backend)
    assert await backend.list() == []


async def test_runsc_fails_closed_when_missing(backend: DockerBackend) -> None:
    info = backend.client.info()
    if "runsc" in (info.get("Runtimes") or {}):
        pytest.skip("runsc is installed here")
    with pytest.raises(RuntimeUnavailable, match="refusing to fall back"):
        await Sandbox.create(SandboxSpec(runtime="runsc"), backend=backend)


async def test_data_mount_is_read_only(backend: DockerBackend, tmp_path: Path) -> None:
    (tmp_path / "in.csv").write_text("a,b\n1,2\n")
    tmp_path.chmod(0o755)  # the sandbox user (uid 1000) must be able to read host data
    spec = SMALL.model_copy(
        update={"data": (DataMount(source=tmp_path, target="/workspace/data/d"),)}
    )
    async with await Sandbox.create(spec, backend=backend) as sb:
        assert (await sb.files.read("data/d/in.csv")) == b"a,b\n1,2\n"
        r = await sb.exec("echo x > /workspace/data/d/in.csv")
        assert r.exit_code != 0


async def test_pause_resume_and_dead_sandbox_reason(backend: DockerBackend) -> None:
    sb = await Sandbox.create(SMALL, backend=backend)
    try:
        await sb.pause()
        assert (await sb.status()).paused
        await sb.resume()
        assert (await sb.exec("echo back")).stdout == "back\n"
        backend.client.api.kill(sb.handle.container_id)
        with pytest.raises(SandboxDied):
            await sb.exec("echo gone")
    finally:
        await sb.destroy()


async def test_pool_acquire_and_refill(backend: DockerBackend, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("data!")
    pool = WarmPool(backend)
    try:
        pool.add(SMALL, 2)
        await pool.wait_ready(SMALL, 2)
        spec = SMALL.model_copy(
            update={
                "env": {"RUN": "r1"},
                "data": (DataMount(source=tmp_path, target="/workspace/data/x"),),
            }
        )
        sb = await pool.acquire(spec)
        assert (await sb.exec("echo $RUN")).stdout == "r1\n"
        # A pooled guest is past its start-up prelude (the full server ran that exec), so no
        # import waits for the acquirer.
        prelude = (await sb.rpc.info())["prelude"]
        assert prelude["execs"] == 0 and prelude["handover"]
        assert await sb.files.read("data/x/f.txt") == b"data!"
        await pool.wait_ready(SMALL, 2)  # refilled in the background
        await sb.destroy()
    finally:
        await pool.aclose()
    assert [h.id for h in await backend.list()] == []


def test_reconcile_after_sigkill(corral_home: Path) -> None:
    """A controller killed with SIGKILL leaves sandboxes; the next one adopts or removes them."""
    script = textwrap.dedent(
        """
        import asyncio, os, sys
        from sandbox import Sandbox, SandboxSpec
        from sandbox.backends.docker import DockerBackend
        from sandbox.pool import WarmPool
        async def main():
            be = DockerBackend(sys.argv[1])
            kept = await Sandbox.create(SandboxSpec(memory="128m"), backend=be)
            pool = WarmPool(be); spec = SandboxSpec(memory="128m", pids=100)
            pool.add(spec, 1); await pool.wait_ready(spec)
            print("KEPT", kept.id, flush=True)
            await asyncio.sleep(600)
        asyncio.run(main())
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(corral_home)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    kept_id = ""
    for line in proc.stdout:  # structlog may print too; find our line
        if line.startswith("KEPT "):
            kept_id = line.split()[1]
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()

    async def check() -> None:
        be = DockerBackend(corral_home)
        try:
            assert len(await be.list()) == 2
            rep = await be.reconcile(adopt=True)
            assert rep.adopted == [kept_id] and len(rep.removed) == 1
            sb = await Sandbox.attach(kept_id, backend=be)
            assert (await sb.exec("echo adopted")).stdout == "adopted\n"
            await sb.destroy()
            rep2 = await be.reconcile(adopt=False)
            assert rep2.adopted == [] and await be.list() == []
        finally:
            await be.aclose()

    asyncio.run(check())


async def test_idle_ttl_reaping(backend: DockerBackend) -> None:
    sb = await Sandbox.create(SMALL.model_copy(update={"idle_ttl": 60}), backend=backend)
    await sb.close()
    assert await backend.reap_idle() == []
    assert await backend.reap_idle(now=time.time() + 120) == [sb.id]
    assert await backend.list() == []
