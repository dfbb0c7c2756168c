"""`corral sandbox …` against the real engine (and a real pseudo-terminal for `shell`)."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from runtime.cli.main import app

pytestmark = pytest.mark.docker
runner = CliRunner()


def corral(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["sandbox", *args], catch_exceptions=False)
    return res.exit_code, res.output


def test_create_exec_cp_ls_rm(tmp_path: Path) -> None:
    code, out = corral("create", "--memory", "256m", "--json")
    assert code == 0, out
    sid = json.loads(out)["id"]
    try:
        code, out = corral("list", "--json")
        assert [r["id"] for r in json.loads(out)] == [sid]
        code, out = corral("exec", sid, "--", "sh", "-c", "echo out; echo err >&2; exit 5")
        assert code == 5 and "out" in out
        src = tmp_path / "in.bin"
        src.write_bytes(os.urandom(3 * 1024 * 1024))
        assert corral("cp", str(src), f"{sid}:data/in.bin")[0] == 0
        code, out = corral("ls", sid, "data")
        assert code == 0 and "in.bin" in out and str(3 * 1024 * 1024) in out
        back = tmp_path / "back.bin"
        assert corral("cp", f"{sid}:data/in.bin", str(back))[0] == 0
        assert back.read_bytes() == src.read_bytes()
        code, out = corral("exec", sid, "--timeout", "1", "sleep 30")
        assert code == 124 and "timed out" in out
    finally:
        code, out = corral("rm", sid)
    assert code == 0 and sid in out
    assert json.loads(corral("list", "--json")[1]) == []


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    code, out = corral("exec", "sb-000000000000", "--", "true")
    assert code != 0 and "not found" in out and "Traceback" not in out
    code, out = corral("create", "--memory", "lots")
    assert code == 2 and "memory" in out
    code, out = corral("cp", str(tmp_path / "nope"), "sb-000000000000:x")
    assert code != 0 and "Traceback" not in out


def test_shell_is_an_interactive_tty(corral_home: Path) -> None:
    code, out = corral("create", "--memory", "256m")
    assert code == 0, out
    sid = out.strip()
    pid, fd = pty.fork()
    if pid == 0:  # child: the real CLI on a real terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "runtime.cli", "sandbox", "shell", sid],
            {**os.environ, "CORRAL_HOME": str(corral_home)},
        )
    try:
        buf = b""

        def read_until(marker: bytes, limit: float = 30) -> bytes:
            nonlocal buf
            end = time.monotonic() + limit
            while marker not in buf and time.monotonic() < end:
                r, _, _ = select.select([fd], [], [], 0.2)
                if r:
                    try:
                        buf += os.read(fd, 4096)
                    except OSError:
                        break
            return buf

        read_until(b"$ ")  # the shell's prompt: it is ready for input
        os.write(fd, b"tty && id -u && echo $((6*7))\n")
        out_bytes = read_until(b"42")
        assert b"/dev/pts/" in out_bytes and b"1000" in out_bytes and b"42" in out_bytes
        os.write(fd, b"exit 3\n")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 3
    finally:
        subprocess.run(
            [sys.executable, "-m", "runtime.cli", "sandbox", "rm", sid],
            env={**os.environ, "CORRAL_HOME": str(corral_home)},
            capture_output=True,
        )
        os.close(fd)
