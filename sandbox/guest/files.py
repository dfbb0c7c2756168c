"""File tools on the workspace (blocking; the server runs the slow ones in a thread).

Every function takes the `Workspace` and the path as the caller wrote it, resolves it with
`Workspace` (no `..`, no symlink following) and works on descriptors from there.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import Any

from .errors import (
    INVALID_ARGUMENT,
    IS_A_DIRECTORY,
    LIMIT_EXCEEDED,
    ToolFailure,
    from_os_error,
)
from .paths import DIR_FLAGS, Workspace

READ_MAX = 64 << 20
"""`read` refuses bigger files (use `download`)."""
LIST_MAX = 50_000
"""`list` refuses to return more entries than this."""
TEMP_PREFIX = ".corral-tmp-"


def file_info(rel: str, st: os.stat_result) -> dict[str, Any]:
    return {
        "path": rel,
        "size": st.st_size,
        "is_dir": stat.S_ISDIR(st.st_mode),
        "mode": stat.S_IMODE(st.st_mode),
        "mtime": st.st_mtime,
        "is_symlink": stat.S_ISLNK(st.st_mode),
    }


def stat_path(ws: Workspace, path: str) -> dict[str, Any]:
    names = ws.names(path)
    if not names:
        return file_info(".", os.fstat(ws.root_fd))
    dfd = ws.open_dir(names[:-1], path)
    try:
        st = os.stat(names[-1], dir_fd=dfd, follow_symlinks=False)
    except OSError as exc:
        raise from_os_error(exc, path) from None
    finally:
        os.close(dfd)
    return file_info(ws.relative(names), st)


def list_dir(ws: Workspace, path: str, *, recursive: bool) -> list[dict[str, Any]]:
    names = ws.names(path)
    fd = ws.open_dir(names, path)
    out: list[dict[str, Any]] = []
    try:
        _walk(fd, names, recursive, out)
    finally:
        os.close(fd)
    return out


def _walk(fd: int, names: list[str], recursive: bool, out: list[dict[str, Any]]) -> None:
    for name in sorted(os.listdir(fd)):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue  # removed while we listed
        if len(out) >= LIST_MAX:
            raise ToolFailure(LIMIT_EXCEEDED, f"more than {LIST_MAX} entries; list a subfolder")
        rel = "/".join([*names, name])
        out.append(file_info(rel, st))
        if recursive and stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # swapped for a non-directory meanwhile: skip, never follow
            try:
                _walk(sub, [*names, name], recursive, out)
            finally:
                os.close(sub)


def open_read(ws: Workspace, path: str) -> tuple[int, int]:
    """(descriptor, size) of a regular file, opened without following symlinks."""
    dfd, name = ws.open_parent(path)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
    except OSError as exc:
        raise ws.walk_error(exc, dfd, name, path) from None
    finally:
        os.close(dfd)
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        if stat.S_ISDIR(st.st_mode):
            raise ToolFailure(IS_A_DIRECTORY, f"{path}: is a directory")
        raise ToolFailure(INVALID_ARGUMENT, f"{path}: not a regular file")
    os.set_blocking(fd, True)
    return fd, st.st_size


def sha256(ws: Workspace, path: str) -> str:
    fd, _ = open_read(ws, path)
    import hashlib

    h = hashlib.sha256()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while n := os.readv(fd, [buf]):
            h.update(view[:n])
    finally:
        os.close(fd)
    return h.hexdigest()


class TempFile:
    """A temp file beside the destination, renamed over it by `commit()` (atomic write)."""

    def __init__(self, ws: Workspace, path: str, *, mode: int, parents: bool) -> None:
        if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
            raise ToolFailure(INVALID_ARGUMENT, f"invalid mode {mode!r}")
        names = ws.names(path)
        if not names:
            raise ToolFailure(IS_A_DIRECTORY, f"{path}: is the workspace root")
        self.path = path
        self.mode = mode
        self.name = names[-1]
        if parents:
            self.dir_fd = ws.make_dirs(names[:-1], path)
        else:
            self.dir_fd = ws.open_dir(names[:-1], path)
        try:
            st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            pass
        except OSError as exc:
            os.close(self.dir_fd)
            raise from_os_error(exc, path) from None
        else:
            if stat.S_ISDIR(st.st_mode):
                os.close(self.dir_fd)
                raise ToolFailure(IS_A_DIRECTORY, f"{path}: is a directory")
        self.tmp = TEMP_PREFIX + os.urandom(8).hex()
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            self.fd = os.open(self.tmp, flags, 0o600, dir_fd=self.dir_fd)
        except OSError as exc:
            os.close(self.dir_fd)
            raise from_os_error(exc, path) from None
        self.size = 0

    def write(self, data: bytes) -> None:
        view = memoryview(data)
        try:
            while view:
                n = os.write(self.fd, view)
                view = view[n:]
                self.size += n
        except OSError as exc:
            raise from_os_error(exc, self.path) from None

    def commit(self) -> None:
        try:
            os.fchmod(self.fd, self.mode)
            os.close(self.fd)
            self.fd = -1
            os.rename(self.tmp, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        except OSError as exc:
            self.abort()
            raise from_os_error(exc, self.path) from None
        os.close(self.dir_fd)
        self.dir_fd = -1

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if self.dir_fd >= 0:
            with contextlib.suppress(OSError):
                os.unlink(self.tmp, dir_fd=self.dir_fd)
            os.close(self.dir_fd)
            self.dir_fd = -1


def remove(ws: Workspace, path: str, *, recursive: bool) -> None:
    dfd, name = ws.open_parent(path)
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
        if not stat.S_ISDIR(st.st_mode):
            os.unlink(name, dir_fd=dfd)
        elif recursive:
            import shutil  # slow to import, rarely needed

            shutil.rmtree(name, dir_fd=dfd)
        else:
            try:
                os.rmdir(name, dir_fd=dfd)
            except OSError as exc:
                if exc.errno == errno.ENOTEMPTY:
                    raise ToolFailure(
                        INVALID_ARGUMENT, f"{path}: directory not empty (use recursive=True)"
                    ) from None
                raise
    except OSError as exc:
        raise from_os_error(exc, path) from None
    finally:
        os.close(dfd)


def mkdir(ws: Workspace, path: str, *, parents: bool) -> None:
    names = ws.names(path)
    if not names:
        return
    if parents:
        os.close(ws.make_dirs(names, path))
        return
    dfd = ws.open_dir(names[:-1], path)
    try:
        os.mkdir(names[-1], 0o755, dir_fd=dfd)
    except OSError as exc:
        raise from_os_error(exc, path) from None
    finally:
        os.close(dfd)


def move(ws: Workspace, src: str, dst: str) -> None:
    sfd, sname = ws.open_parent(src)
    try:
        dfd, dname = ws.open_parent(dst)
    except BaseException:
        os.close(sfd)
        raise
    try:
        os.rename(sname, dname, src_dir_fd=sfd, dst_dir_fd=dfd)
    except OSError as exc:
        raise from_os_error(exc, f"{src} -> {dst}") from None
    finally:
        os.close(sfd)
        os.close(dfd)
