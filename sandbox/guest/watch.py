"""Directory watches (`watch`): filesystem events under a workspace folder, streamed.

RPC method (registered by server.py from `HANDLERS`):

    watch {path, recursive} -> data frames until the call is cancelled (or the folder goes)

The first data frame is an empty batch, sent once the watch is armed. Each one is a JSON batch ``{"events": [[kind, name], ...], "dropped": n}``: `kind`
is ``create | write | remove | rename | chmod`` (fsnotify's words: a move gives ``rename``
for the old name and ``create`` for the new one), `name` the path relative to the watched
folder. ``dropped`` counts events lost since the previous batch: the kernel's queue
overflowed, more than `MAX_PENDING` waited unsent (the caller reads slower than the sandbox
writes), or a folder could not be watched (more than `MAX_WATCHES`). A consumer seeing it
should rescan instead of trusting the list.

Confinement: the folder is opened with the workspace's race-free walk (no `..`, no symlink
followed), and every watch is added through `/proc/self/fd/N` of a descriptor opened that way,
so a symlink or a rename racing the walk never leads a watch outside the workspace. Symlinks
are never descended (a symlink loop is just an entry). Work per event is bounded: at most
`MAX_WATCHES` watched folders, `MAX_SCAN` entries looked at per recursive walk and
`MAX_PENDING` queued events per call, `MAX_CALLS` watches per guest.

inotify through ctypes (libc); where inotify is missing (ctypes or the syscall unavailable,
e.g. some gVisor builds) a polling fallback diffs snapshots every `POLL_INTERVAL` seconds,
walking at most `MAX_POLL_ENTRIES` entries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import stat
import struct
from typing import Any

from . import args as A
from .channel import CallState
from .errors import LIMIT_EXCEEDED, NOT_A_DIRECTORY, ToolFailure, from_os_error
from .paths import Workspace

Result = tuple[dict[str, Any], bytes]

MAX_WATCHES = 1024
MAX_SCAN = 100_000
"""Entries one recursive walk looks at (a folder of a million files must not stall the guest)."""
MAX_PENDING = 4096
MAX_CALLS = 64
"""Watches at once in one guest: a backstop (the E2B door holds 16 polled watchers per
sandbox; watches it has just stopped may still be winding down here)."""
BATCH_MAX = 512
POLL_INTERVAL = 0.5
MAX_POLL_ENTRIES = 20_000

IN_MODIFY = 0x002
IN_ATTRIB = 0x004
IN_MOVED_FROM = 0x040
IN_MOVED_TO = 0x080
IN_CREATE = 0x100
IN_DELETE = 0x200
IN_DELETE_SELF = 0x400
IN_MOVE_SELF = 0x800
IN_Q_OVERFLOW = 0x4000
IN_IGNORED = 0x8000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_ISDIR = 0x40000000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
MASK = (
    IN_MODIFY
    | IN_ATTRIB
    | IN_MOVED_FROM
    | IN_MOVED_TO
    | IN_CREATE
    | IN_DELETE
    | IN_DELETE_SELF
    | IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")

_active = 0


class Batcher:
    """Events waiting to be sent, bounded: beyond `MAX_PENDING` they are counted, not kept."""

    def __init__(self) -> None:
        self.events: list[list[str]] = []
        self.dropped = 0
        self.ready = asyncio.Event()

    def add(self, kind: str, name: str) -> None:
        if len(self.events) >= MAX_PENDING:
            self.dropped += 1
        else:
            self.events.append([kind, name])
        self.ready.set()

    def lose(self, n: int = 1) -> None:
        self.dropped += n
        self.ready.set()

    def take(self) -> bytes:
        batch, self.events = self.events[:BATCH_MAX], self.events[BATCH_MAX:]
        out = {"events": batch, "dropped": self.dropped}
        self.dropped = 0
        if not self.events:
            self.ready.clear()
        return json.dumps(out, separators=(",", ":")).encode()


class Inotify:
    """One inotify instance with a watch per folder (relative names kept per watch)."""

    def __init__(self, ws: Workspace, names: list[str], recursive: bool, out: Batcher) -> None:
        import ctypes  # only here: a guest that never watches never loads it

        self._libc = ctypes.CDLL(None, use_errno=True)
        self._get_errno = ctypes.get_errno
        fd = self._libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(self._get_errno(), "inotify_init1")
        self.fd: int = fd
        self.ws = ws
        self.base = names
        self.recursive = recursive
        self.out = out
        self.dirs: dict[int, list[str]] = {}  # wd -> names below the watched folder
        self.gone = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)

    def add_tree(self, rel: list[str]) -> None:
        """Watch the folder `rel` (below the watched one) and, if recursive, its subfolders,
        walking with descriptors only (nothing followed)."""
        stack = [rel]
        scanned = 0
        while stack:
            names = stack.pop()
            if len(self.dirs) >= MAX_WATCHES:
                self.out.lose()
                return
            try:
                fd = self.ws.open_dir(self.base + names, "/".join(names) or ".")
            except ToolFailure:
                continue  # gone or swapped for a symlink meanwhile: nothing to watch
            try:
                wd = self._libc.inotify_add_watch(
                    self.fd, f"/proc/self/fd/{fd}".encode(), MASK | IN_ONLYDIR
                )
                if wd < 0:
                    self.out.lose()  # e.g. the per-user watch limit: say events are missing
                    continue
                self.dirs[wd] = names
                if self.recursive:
                    with os.scandir(fd) as it:
                        for entry in it:
                            scanned += 1
                            if scanned > MAX_SCAN:  # the guest's loop waits on this walk
                                self.out.lose()
                                return
                            if entry.is_dir(follow_symlinks=False):
                                stack.append([*names, entry.name])
            except OSError:
                continue
            finally:
                os.close(fd)

    def feed(self, data: bytes) -> None:
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _cookie, size = _EVENT.unpack_from(data, pos)
            raw = data[pos + _EVENT.size : pos + _EVENT.size + size].rstrip(b"\0")
            pos += _EVENT.size + size
            if mask & IN_Q_OVERFLOW:
                self.out.lose()
                continue
            if mask & IN_IGNORED:
                self.dirs.pop(wd, None)
                continue
            where = self.dirs.get(wd)
            if where is None:
                continue
            if mask & (IN_DELETE_SELF | IN_MOVE_SELF):
                if not where:  # the watched folder itself is gone
                    self.gone = True
                continue
            name = os.fsdecode(raw)
            rel = "/".join([*where, name])
            kind = _kind(mask)
            if kind is not None:
                self.out.add(kind, rel)
            if self.recursive and mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
                self.add_tree([*where, name])


def _kind(mask: int) -> str | None:
    if mask & (IN_CREATE | IN_MOVED_TO):
        return "create"
    if mask & IN_DELETE:
        return "remove"
    if mask & IN_MOVED_FROM:
        return "rename"
    if mask & IN_MODIFY:
        return "write"
    if mask & IN_ATTRIB:
        return "chmod"
    return None


async def _armed(s: CallState) -> None:
    """The first, empty batch: the watch is in place, events from now on are seen."""
    await s.send_stream({"t": "data", "id": s.id, "s": "data"}, Batcher().take())


async def _inotify(watcher: Inotify, s: CallState) -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    loop.add_reader(watcher.fd, wake.set)
    await _armed(s)
    sender = asyncio.ensure_future(_send(watcher.out, s))
    try:
        while not watcher.gone and not sender.done():
            await wake.wait()
            wake.clear()
            while True:
                try:
                    data = os.read(watcher.fd, 1 << 16)
                except BlockingIOError:
                    break
                watcher.feed(data)
    finally:
        loop.remove_reader(watcher.fd)
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender
    if watcher.out.events or watcher.out.dropped:
        await s.send_stream({"t": "data", "id": s.id, "s": "data"}, watcher.out.take())


async def _send(out: Batcher, s: CallState) -> None:
    """Send batches as the caller's credit allows; events arriving meanwhile pile up in
    `out` (bounded), never in the channel."""
    while True:
        await out.ready.wait()
        await s.send_stream({"t": "data", "id": s.id, "s": "data"}, out.take())


async def _poll(ws: Workspace, names: list[str], recursive: bool, s: CallState) -> None:
    """The fallback without inotify: snapshot diffs."""
    out = Batcher()
    sender = asyncio.ensure_future(_send(out, s))
    try:
        before = await asyncio.to_thread(_snapshot, ws, names, recursive, out)
        await _armed(s)
        while before is not None and not sender.done():
            await asyncio.sleep(POLL_INTERVAL)
            after = await asyncio.to_thread(_snapshot, ws, names, recursive, out)
            if after is None:
                return  # the watched folder is gone
            for rel, sig in after.items():
                old = before.get(rel)
                if old is None:
                    out.add("create", rel)
                elif old[1] != sig[1]:
                    out.add("chmod", rel)
                elif old != sig:
                    out.add("write", rel)
            for rel in before.keys() - after.keys():
                out.add("remove", rel)
            before = after
    finally:
        sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


def _snapshot(
    ws: Workspace, base: list[str], recursive: bool, out: Batcher
) -> dict[str, tuple[int, int, int]] | None:
    """{relative name: (mtime_ns, mode, size)} of the folder, walked without following."""
    seen: dict[str, tuple[int, int, int]] = {}
    stack: list[list[str]] = [[]]
    try:
        top = ws.open_dir(base, "/".join(base) or ".")
    except ToolFailure:
        return None
    os.close(top)
    while stack:
        names = stack.pop()
        try:
            fd = ws.open_dir(base + names, "/".join(names) or ".")
        except ToolFailure:
            continue
        try:
            with os.scandir(fd) as it:
                for entry in it:
                    if len(seen) >= MAX_POLL_ENTRIES:
                        out.lose()
                        return seen
                    st = entry.stat(follow_symlinks=False)
                    rel = "/".join([*names, entry.name])
                    seen[rel] = (st.st_mtime_ns, st.st_mode, st.st_size)
                    if recursive and stat.S_ISDIR(st.st_mode):
                        stack.append([*names, entry.name])
        except OSError:
            continue
        finally:
            os.close(fd)
    return seen


async def _watch(c: Any, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    global _active
    ws: Workspace = c.guest.ws
    path = A.string(a, "path")
    recursive = A.boolean(a, "recursive")
    names = ws.names(path)
    fd = ws.open_dir(names, path)  # refuses symlinks, non-folders and paths outside
    os.close(fd)
    if _active >= MAX_CALLS:
        raise ToolFailure(LIMIT_EXCEEDED, f"more than {MAX_CALLS} directory watches")
    _active += 1
    try:
        try:
            watcher = Inotify(ws, names, recursive, Batcher())
        except (OSError, AttributeError, ImportError):
            await _poll(ws, names, recursive, s)
            return {"gone": True}, b""
        try:
            watcher.add_tree([])
            if not watcher.dirs:
                raise ToolFailure(NOT_A_DIRECTORY, f"{path}: cannot be watched")
            await _inotify(watcher, s)
        finally:
            watcher.close()
    except OSError as exc:
        raise from_os_error(exc, path) from None
    finally:
        _active -= 1
    return {"gone": True}, b""


HANDLERS = {"watch": _watch}

__all__ = ["HANDLERS"]
