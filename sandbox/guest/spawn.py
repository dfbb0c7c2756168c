"""Start an agent's command as the agent, with vfork.

The tool server's real and saved uid are 0 (privs.py), so a child must change its ids before
it runs the agent's command. CPython refuses vfork for a child that changes ids itself and
forks the whole server instead (about a millisecond per exec here). Two ways keep vfork:
- `_agentspawn` (agentspawn.c, a stable-ABI extension built when the guest is staged): vfork,
  drop the ids, exec the command. One exec, as cheap as an unprivileged spawn.
- posix_spawn of the static `dropexec` helper, which drops the ids and execs the command: a
  second exec, about 0.4 ms more. Used when the extension could not be built or loaded.
The command is looked up here, as the agent, so a missing or non-executable program raises
FileNotFoundError or PermissionError exactly as Popen does.
"""

from __future__ import annotations

import errno
import os
import signal
from collections.abc import Mapping
from typing import IO, Any


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
    program: str | None = None,
    cwd: str,
    env: Mapping[str, str],
    stdin: bool,
    merge: bool,
) -> SpawnedChild:
    path, uid, gid = helper
    if program is None:
        program = find_program(argv[0], env)
    out_r, out_w = os.pipe()
    err_r, err_w = (out_r, out_w) if merge else os.pipe()
    in_r, in_w = os.pipe() if stdin else (-1, -1)
    ours = [out_r, *([] if merge else [err_r]), *([in_w] if stdin else [])]
    theirs = [out_w, *([] if merge else [err_w]), *([in_r] if stdin else [])]
    native = native_spawner()
    try:
        if native is not None and min(theirs) > 2:  # dup2 onto 0-2 in order stays correct
            pid = native.spawn(
                os.fsencode(program),
                [os.fsencode(a) for a in argv],
                [os.fsencode(f"{k}={v}") for k, v in env.items()],
                os.fsencode(cwd),
                uid,
                gid,
                in_r,
                out_w,
                err_w,
            )
        else:
            pid = _spawn_helper(path, uid, gid, program, argv, cwd, env, in_r, out_w, err_w)
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


def _spawn_helper(
    path: str,
    uid: int,
    gid: int,
    program: str,
    argv: list[str],
    cwd: str,
    env: Mapping[str, str],
    in_r: int,
    out_w: int,
    err_w: int,
) -> int:
    actions: list[tuple[int, ...] | tuple[int, int, str, int, int]] = [
        (os.POSIX_SPAWN_DUP2, in_r, 0) if in_r >= 0 else (os.POSIX_SPAWN_OPEN, 0, os.devnull,
                                                     os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, out_w, 1),
        (os.POSIX_SPAWN_DUP2, err_w, 2),
    ]  # fmt: skip
    return os.posix_spawn(
        path,
        [path, str(uid), str(gid), cwd, program, *argv],
        dict(env),
        file_actions=actions,
        setsid=True,
        # What Popen's restore_signals does: Python ignores these, and an ignored signal
        # stays ignored across exec (`yes | head` would see EPIPE instead of dying).
        setsigdef=(signal.SIGPIPE, signal.SIGXFSZ),
    )


_UNSET: Any = object()
_native_module: Any = _UNSET


def native_spawner() -> Any:
    """The `_agentspawn` extension, or None where it was not built or does not load."""
    global _native_module
    if _native_module is _UNSET:
        try:
            from . import _agentspawn  # type: ignore[attr-defined]
        except ImportError:
            _agentspawn = None
        _native_module = _agentspawn
    return _native_module
