"""Start an agent's command through `dropexec` with posix_spawn, which vforks.

The tool server's real and saved uid are 0 (privs.py), so a child must change its ids before
it runs the agent's command. CPython refuses vfork for a child that changes ids itself and
forks the whole server instead (about a millisecond per exec here); posix_spawn of the static
`dropexec` helper, which changes them after exec, keeps vfork. The command is looked up here,
as the agent, so a missing or non-executable program raises FileNotFoundError or
PermissionError exactly as Popen does.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Mapping
from typing import IO


class SpawnedChild:
    """What the exec tools use of a `subprocess.Popen`, for a child started by posix_spawn."""

    def __init__(
        self, pid: int, stdin: IO[bytes] | None, stdout: IO[bytes], stderr: IO[bytes] | None
    ) -> None:
        self.pid = pid
        self.stdin = stdin
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        code = self.returncode
        if code is None:
            _, status = os.waitpid(self.pid, 0)
            code = self.returncode = os.waitstatus_to_exitcode(status)
        return code


def find_program(name: str, env: Mapping[str, str]) -> str:
    """`name` resolved like execvp does (PATH from `env`), checked executable by us."""
    candidates = [name] if "/" in name else [
        os.path.join(d or ".", name) for d in env.get("PATH", os.defpath).split(":")
    ]  # fmt: skip
    denied = False
    for path in candidates:
        if os.path.isfile(path):
            if os.access(path, os.X_OK, effective_ids=True):
                return path
            denied = True
    if denied:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), name)


def spawn_dropped(
    helper: tuple[str, int, int],
    argv: list[str],
    *,
    cwd: str,
    env: Mapping[str, str],
    stdin: bool,
    merge: bool,
) -> SpawnedChild:
    path, uid, gid = helper
    program = find_program(argv[0], env)
    out_r, out_w = os.pipe()
    err_r, err_w = (out_r, out_w) if merge else os.pipe()
    in_r, in_w = os.pipe() if stdin else (-1, -1)
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_DUP2, in_r, 0) if stdin else (os.POSIX_SPAWN_OPEN, 0, os.devnull,
                                                     os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]  # fmt: skip
    ours = [out_r, *([] if merge else [err_r]), *([in_w] if stdin else [])]
    theirs = [out_w, *([] if merge else [err_w]), *([in_r] if stdin else [])]
    try:
        pid = os.posix_spawn(
            path,
            [path, str(uid), str(gid), cwd, program, *argv],
            dict(env),
            file_actions=actions,
            setsid=True,
        )
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in theirs:
            os.close(fd)
    return SpawnedChild(
        pid,
        os.fdopen(in_w, "wb", buffering=0) if stdin else None,
        os.fdopen(out_r, "rb", buffering=0),
        None if merge else os.fdopen(err_r, "rb", buffering=0),
    )
