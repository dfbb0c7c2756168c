"""Can the sandbox user read an agent's data? Checked when a spec is loaded, before any sandbox
starts, so an unreadable file is the operator's one-line error rather than the agent's puzzle.

Data is bind-mounted read-only, so only the source itself and what is below it matter (the
engine, not the sandbox user, walks the path to it). Inside the sandbox the agent is uid N,
gid N, with no supplementary groups (sandbox/backends/docker.py `agent_uid`): a file is readable
when its mode grants read to that uid, that gid, or others; a folder also needs search (x).
POSIX ACLs are not consulted (they can only grant more). Symbolic links are not followed: they
resolve inside the sandbox, where the mount is all the agent sees.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from sandbox.backends.docker import agent_uid

MAX_ENTRIES = 10_000
"""Entries checked below one data folder; a larger tree is checked this far (its first
unreadable entry is almost always found early: a whole subtree shares its owner)."""


def unreadable(source: Path, uid: int | None = None) -> str | None:
    """Why the sandbox user cannot read `source` (or something below it), or None."""
    uid = agent_uid() if uid is None else uid
    budget = [MAX_ENTRIES]
    return _check(source, uid, budget)


def _check(path: Path, uid: int, budget: list[int]) -> str | None:
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"{path}: cannot inspect it: {exc.strerror or exc}"
    if stat.S_ISLNK(st.st_mode):
        return None
    is_dir = stat.S_ISDIR(st.st_mode)
    if not _grants(st, uid, want_exec=is_dir):
        need = "read and search (r-x)" if is_dir else "read"
        return (
            f"{path} is not readable by the sandbox user (uid {uid}): mode "
            f"{stat.S_IMODE(st.st_mode):04o}, owner uid {st.st_uid} gid {st.st_gid}; give others "
            f"{need} (chmod o+r{'x' if is_dir else ''}) or make uid {uid} its owner"
        )
    if not is_dir:
        return None
    try:
        with os.scandir(path) as entries:
            children = sorted(e.name for e in entries)
    except OSError as exc:
        return f"{path}: cannot list it: {exc.strerror or exc}"
    for name in children:
        budget[0] -= 1
        if budget[0] < 0:
            return None
        if (why := _check(path / name, uid, budget)) is not None:
            return why
    return None


def _grants(st: os.stat_result, uid: int, *, want_exec: bool) -> bool:
    mode = st.st_mode
    if st.st_uid == uid:
        r, x = stat.S_IRUSR, stat.S_IXUSR
    elif st.st_gid == uid:  # the agent's gid equals its uid
        r, x = stat.S_IRGRP, stat.S_IXGRP
    else:
        r, x = stat.S_IROTH, stat.S_IXOTH
    return bool(mode & r) and (not want_exec or bool(mode & x))
