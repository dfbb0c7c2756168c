"""A tar stream of a workspace folder, produced piece by piece (never whole in memory).

Symbolic links are stored as links, never followed; sockets, FIFOs and devices are skipped.
Member names are relative to the folder. A file that shrinks while it is read is padded with
zeros to the size its header announced (tar needs it); one that grows is cut at that size.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterator

from .paths import DIR_FLAGS, Workspace

_PIECE = 1 << 20
_BLOCK = tarfile.BLOCKSIZE


def tar_stream(ws: Workspace, path: str) -> Iterator[bytes]:
    """Chunks (about 1 MiB each) of a POSIX/PAX tar archive of the folder `path`."""
    names = ws.names(path)
    fd = ws.open_dir(names, path)
    try:
        pending = bytearray()
        for piece in _members(fd, ""):
            pending += piece
            if len(pending) >= _PIECE:
                yield bytes(pending)
                pending.clear()
        pending += bytes(2 * _BLOCK)  # end-of-archive marker
        yield bytes(pending)
    finally:
        os.close(fd)


def _info(arcname: str, st: os.stat_result) -> tarfile.TarInfo:
    ti = tarfile.TarInfo(arcname)
    ti.mode = stat.S_IMODE(st.st_mode)
    ti.mtime = int(st.st_mtime)
    ti.uid, ti.gid = st.st_uid, st.st_gid
    return ti


def _header(ti: tarfile.TarInfo) -> bytes:
    return ti.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _members(fd: int, prefix: str) -> Iterator[bytes]:
    for name in sorted(os.listdir(fd)):
        try:
            st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        arcname = prefix + name
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # replaced by something else meanwhile: never follow
            try:
                ti = _info(arcname, st)
                ti.type = tarfile.DIRTYPE
                yield _header(ti)
                yield from _members(sub, arcname + "/")
            finally:
                os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            ti = _info(arcname, st)
            ti.type = tarfile.SYMTYPE
            try:
                ti.linkname = os.readlink(name, dir_fd=fd)
            except OSError:
                continue
            yield _header(ti)
        elif stat.S_ISREG(st.st_mode):
            yield from _file(fd, name, arcname)


def _file(dir_fd: int, name: str, arcname: str) -> Iterator[bytes]:
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except OSError:
        return  # vanished or became a link/FIFO: skip
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return
        ti = _info(arcname, st)
        ti.size = st.st_size
        yield _header(ti)
        left = st.st_size
        while left > 0:
            data = os.read(fd, min(left, _PIECE))
            if not data:
                yield bytes(left)
                break
            left -= len(data)
            yield data
        if st.st_size % _BLOCK:
            yield bytes(_BLOCK - st.st_size % _BLOCK)
    finally:
        os.close(fd)
