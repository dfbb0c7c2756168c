"""Strict, race-free path resolution inside the workspace.

Every path is split into names and walked from a directory descriptor of the workspace root
with ``openat(..., O_NOFOLLOW | O_DIRECTORY)`` one component at a time, so no symlink and no
rename racing with us can lead outside. Policy (documented in docs/rpc.md):

- relative paths are relative to the workspace; absolute paths must be under it;
- any ``..`` component is refused, even one that would stay inside;
- symbolic links are never followed, wherever they point: a link in the middle of a path or
  as the file to read is refused (PathNotAllowed). Operations on the name itself (stat, list,
  remove, move, overwrite by write) act on the link, never on its target.
"""

from __future__ import annotations

import errno
import os
import stat

from .errors import (
    INVALID_ARGUMENT,
    NOT_A_DIRECTORY,
    PATH_NOT_ALLOWED,
    ToolFailure,
    from_os_error,
)

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Workspace:
    """The workspace root, held open as a descriptor for the guest's lifetime."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self._prefixes = {tuple(_names(self.root)[1]), tuple(_names(os.path.realpath(root))[1])}
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)

    def close(self) -> None:
        os.close(self.root_fd)

    def names(self, path: object) -> list[str]:
        """The components of `path` below the root ([] is the root itself)."""
        if not isinstance(path, str) or not path:
            raise ToolFailure(INVALID_ARGUMENT, "path must be a non-empty string")
        if "\0" in path:
            raise ToolFailure(INVALID_ARGUMENT, "path contains a NUL byte")
        absolute, names = _names(path)
        if ".." in names:
            raise ToolFailure(PATH_NOT_ALLOWED, f"{path}: '..' is not allowed")
        if absolute:
            for prefix in self._prefixes:
                if names[: len(prefix)] == list(prefix):
                    return names[len(prefix) :]
            raise ToolFailure(PATH_NOT_ALLOWED, f"{path}: outside the workspace {self.root}")
        return names

    def relative(self, names: list[str]) -> str:
        return "/".join(names) or "."

    def open_dir(self, names: list[str], path: str) -> int:
        """A descriptor of the directory `names` (caller closes it)."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root_fd)
        for name in names:
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                err = self.walk_error(exc, fd, name, path)
                os.close(fd)
                raise err from None
            os.close(fd)
            fd = nfd
        return fd

    def open_parent(self, path: str) -> tuple[int, str]:
        """(descriptor of the parent directory, final name) of a path that is not the root."""
        names = self.names(path)
        if not names:
            raise ToolFailure(INVALID_ARGUMENT, f"{path}: not allowed on the workspace root")
        return self.open_dir(names[:-1], path), names[-1]

    def make_dirs(self, names: list[str], path: str, *, exist_ok: bool = True) -> int:
        """Create the directories `names` as needed (mkdir -p); return the last one's fd."""
        fd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.root_fd)
        for i, name in enumerate(names):
            last = i == len(names) - 1
            try:
                os.mkdir(name, 0o755, dir_fd=fd)
            except FileExistsError:
                if last and not exist_ok:
                    os.close(fd)
                    raise ToolFailure("exists", f"{path}: already exists") from None
            except OSError as exc:
                os.close(fd)
                raise from_os_error(exc, path) from None
            try:
                nfd = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                err = self.walk_error(exc, fd, name, path)
                os.close(fd)
                raise err from None
            os.close(fd)
            fd = nfd
        return fd

    def walk_error(self, exc: OSError, dir_fd: int, name: str, path: str) -> ToolFailure:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            try:
                st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            except OSError:
                return from_os_error(exc, path)
            if stat.S_ISLNK(st.st_mode):
                return ToolFailure(
                    PATH_NOT_ALLOWED, f"{path}: '{name}' is a symbolic link (not followed)"
                )
            if exc.errno == errno.ENOTDIR:
                return ToolFailure(NOT_A_DIRECTORY, f"{path}: '{name}' is not a directory")
        return from_os_error(exc, path)


def _names(path: str) -> tuple[bool, list[str]]:
    return path.startswith("/"), [n for n in path.split("/") if n not in ("", ".")]
