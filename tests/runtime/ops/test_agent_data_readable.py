"""Agent data the sandbox user cannot read is a validation error naming it (issue 14): from
`corral agents validate`, and from `corral run` before any sandbox starts. The sandbox user
really cannot read such a file (checked in a real sandbox), so the error is not hypothetical."""

from __future__ import annotations

import os
from pathlib import Path

import docker
import pytest

from runtime.agents.readable import unreadable
from sandbox.api import Sandbox
from sandbox.backends.docker import DockerBackend, agent_uid
from sandbox.spec import DataMount, SandboxSpec
from tests.runtime.test_cli_frictions import corral, write_agent

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="makes files owned by other users")


def _agent(tmp_path: Path, data: list[str]) -> Path:
    return write_agent(tmp_path, [{"text": "ok"}], name="reader", tools=["exec"], data=data)


@needs_root
def test_validate_names_the_unreadable_file(tmp_path: Path, corral_home: Path) -> None:
    uid = agent_uid()
    public = tmp_path / "public.csv"
    public.write_text("a,b\n")
    public.chmod(0o644)
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    agent = _agent(tmp_path, ["public.csv", "secret.csv"])

    res = corral(corral_home, "agents", "validate", str(agent))
    assert res.returncode == 1
    (line,) = res.stderr.splitlines()
    assert line.startswith(f"{agent}: data[1]: {secret} is not readable by the sandbox user")
    assert f"(uid {uid})" in line and "mode 0600" in line

    secret.chmod(0o604)  # others may read: fine
    ok = corral(corral_home, "agents", "validate", str(agent))
    assert ok.returncode == 0, ok.stderr
    os.chown(secret, uid, uid)
    secret.chmod(0o400)  # the sandbox user owns it: fine
    assert corral(corral_home, "agents", "validate", str(agent)).returncode == 0
    secret.chmod(0o044)  # owner bits rule for the owner, even when others may read
    assert "data[1]" in corral(corral_home, "agents", "validate", str(agent)).stderr


@needs_root
def test_a_folder_is_checked_down_to_its_files(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    hidden = folder / "deep" / "b.txt"
    hidden.write_text("b")
    for p in (folder, folder / "deep"):
        p.chmod(0o755)
    (folder / "a.txt").chmod(0o644)
    hidden.chmod(0o640)
    os.chown(hidden, 0, 0)
    assert f"{hidden} is not readable" in (unreadable(folder) or "")
    hidden.chmod(0o644)
    assert unreadable(folder) is None
    (folder / "deep").chmod(0o744)  # readable but not searchable
    assert f"{folder / 'deep'} is not readable" in (unreadable(folder) or "")
    assert "r-x" in (unreadable(folder) or "")


@needs_root
@pytest.mark.docker
def test_run_fails_before_any_sandbox_starts(tmp_path: Path, corral_home: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    agent = _agent(tmp_path, ["secret.csv"])
    res = corral(corral_home, "run", "--agent", str(agent), "-o", str(tmp_path / "o"), "x")
    assert res.returncode == 2  # a spec error is a usage error for `corral run`
    assert "data[0]" in res.stderr and "not readable by the sandbox user" in res.stderr
    engine = docker.from_env()
    made = engine.containers.list(all=True, filters={"label": f"corral.home={corral_home}"})
    engine.close()
    assert made == []


@needs_root
@pytest.mark.docker
async def test_the_sandbox_user_really_cannot_read_it(tmp_path: Path, corral_home: Path) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("x\n")
    os.chown(secret, 0, 0)
    secret.chmod(0o600)
    backend = DockerBackend(corral_home)
    spec = SandboxSpec(
        memory="256m", data=(DataMount(source=secret, target="/workspace/data/secret.csv"),)
    )
    try:
        async with await Sandbox.create(spec, backend=backend) as sb:
            r = await sb.exec("cat /workspace/data/secret.csv")
        assert r.exit_code != 0 and "Permission denied" in r.stderr
    finally:
        await backend.aclose()


@needs_root
def test_links_are_not_followed_and_fifos_do_not_block(tmp_path: Path) -> None:
    folder = tmp_path / "corpus"
    folder.mkdir()
    folder.chmod(0o755)
    secret = tmp_path / "secret"
    secret.write_text("s")
    secret.chmod(0o600)
    (folder / "link").symlink_to(secret)  # resolves inside the sandbox, not on the host
    os.mkfifo(folder / "pipe", 0o644)  # opening it would block; it is only looked at
    assert unreadable(folder) is None
    (folder / "pipe").chmod(0o600)
    assert f"{folder / 'pipe'} is not readable" in (unreadable(folder) or "")
