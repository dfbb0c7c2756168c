"""Artifacts: files a run writes under its output folder, copied out while the run goes on.

After every tool call (and at the end) the collector lists the output folder in the sandbox;
new or changed regular files are streamed out (never loaded whole), hashed on the way,
recorded in the store and announced as `artifact.created` events. Caps on count and bytes
protect the host's disk.

Everything in the output folder is chosen by the agent, so it is hostile input:

- No host file is named after the agent. A copy is streamed into
  `$CORRAL_HOME/artifacts/.staging/<random>.part`, then renamed to
  `$CORRAL_HOME/artifacts/<interaction>/<random>`; the agent's path is only a string in the
  store. So a long name, a name that looks like a staging file or a file that later becomes a
  folder cannot clash with anything on the host.
- Steps keep the store and the disk in agreement: bytes land under their final name before the
  record that points to them, an old copy is removed only after its record points elsewhere,
  and a failed or cancelled copy leaves no file behind (a killed process's staging files,
  named after its pid, are swept by the next controller: `sweep_staging`).
- Symbolic links are never followed (the guest opens with `O_NOFOLLOW`; links are listed as
  links); names the host cannot keep (not UTF-8, control characters, `..`, too long), special
  files and files over a cap are reported once each as `artifact.skipped` events with a
  `reason` (see `SkipReason`), never silently dropped and never fatal.
- The host's own failures are fatal to the run, with a clear code: a full disk is
  `StorageFull` (`storage_full`), any other host I/O error `StorageError`.

`export_artifacts` writes a run's artifacts into a folder of the caller's (`corral run --out`,
`corral runs artifacts --download`): it walks that folder by descriptors without following
symbolic links, writes through a uniquely named temporary file, never deletes anything, and
reports each file it could not write instead of stopping.

Errors::

    CorralError
    └── StorageError    the controller could not write its own files (code `storage_error`)
        └── StorageFull  ENOSPC / EDQUOT (code `storage_full`)
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import mimetypes
import os
import re
import secrets
import stat
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import structlog

from runtime.errors import StorageError, StorageFull
from runtime.store.base import ArtifactRecord, EventRecord, Store
from runtime.views import artifact_view
from sandbox.api import Sandbox
from sandbox.errors import ToolError
from sandbox.types import FileInfo

log = structlog.get_logger("corral.artifacts")
Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
"""Where artifact events go (the run's Recorder, so they stay in order with its steps)."""

SkipReason = Literal[
    "symlink", "invalid_name", "unreadable", "count_cap", "size_cap", "too_many_skipped"
]
STAGING = ".staging"
"""Folder under the artifacts root for copies in flight (interaction ids never start with .)."""
MAX_PATH_BYTES = 1024
"""Longest artifact path kept (the store's column); longer ones are skipped as invalid_name."""
NAME_MAX = 255
MAX_SKIP_REPORTS = 100
"""`artifact.skipped` events per run; after that one `too_many_skipped` event says so."""
FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class ArtifactLimits:
    max_files: int = 1000
    max_bytes: int = 2 * 1024**3


def safe_relpath(path: str) -> PurePosixPath:
    """A relative path with no `..`, no absolute part and no empty names — or ValueError."""
    p = PurePosixPath(path)
    if p.is_absolute() or not p.parts or any(part in ("..", "", ".") for part in p.parts):
        raise ValueError(f"unsafe artifact path: {printable(path)}")
    return p


def name_problem(path: str) -> str | None:
    """Why the host cannot keep an artifact at `path` (None: it can)."""
    try:
        canonical = str(safe_relpath(path)) == path  # no `a//b`, `./a` or `a/`
    except ValueError:
        canonical = False
    if not canonical:
        return "not a plain relative path"
    try:
        raw = path.encode("utf-8")
    except UnicodeEncodeError:
        return "the name is not valid UTF-8"
    if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in path):
        return "the name contains control characters"
    if len(raw) > MAX_PATH_BYTES:
        return f"the path is longer than {MAX_PATH_BYTES} bytes"
    if any(len(part.encode()) > NAME_MAX for part in path.split("/")):
        return f"a name is longer than {NAME_MAX} bytes"
    return None


def printable(name: str, limit: int = 300) -> str:
    """`name` as one safe line: undecodable bytes and control characters escaped."""
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    out = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)
    return out if len(out) <= limit else out[: limit - 1] + "…"


def skipped_from_events(events: Iterable[EventRecord]) -> list[dict[str, Any]]:
    """The `artifact.skipped` reports of a run (path, reason, message), oldest first."""
    return [
        {k: ev.payload.get(k) for k in ("path", "reason", "message")}
        for ev in events
        if ev.event_type == "artifact.skipped"
    ]


class ArtifactCollector:
    def __init__(
        self,
        *,
        store: Store,
        emit: Emit,
        interaction_id: str,
        sandbox: Sandbox,
        output_dir: str,
        dest_root: Path,
        limits: ArtifactLimits = ArtifactLimits(),
        restored: Mapping[str, ArtifactRecord] | None = None,
    ) -> None:
        """`restored`: the recorded artifacts (by relative path) that a takeover put back in
        the output folder, or that an adopted sandbox still holds: copied again (this node
        then holds the run's copies) but announced only if their content changed."""
        self.store = store
        self.emit = emit
        self.interaction_id = interaction_id
        self.sandbox = sandbox
        self.output_dir = output_dir.rstrip("/")
        self.dest = dest_root / interaction_id
        self.staging = dest_root / STAGING
        self.limits = limits
        self._seen: dict[str, tuple[int, float]] = {}
        self._kept: dict[str, ArtifactRecord] = {}
        self._bytes = 0
        self._reported: dict[str, str] = {}
        self._reports = 0
        self._restored = dict(restored or {})

    async def scan(self) -> list[ArtifactRecord]:
        """Copy what is new or changed since the last scan; return what was recorded."""
        try:
            infos = await self.sandbox.files.list(self.output_dir, recursive=True)
        except ToolError:
            return []  # the folder does not exist (yet)
        return await self._collect(infos)

    async def _collect(self, infos: Sequence[FileInfo]) -> list[ArtifactRecord]:
        prefix = self._prefix()
        found: list[ArtifactRecord] = []
        for info in infos:
            if info.is_dir:
                continue
            if not info.path.startswith(prefix):
                await self._skip(info.path, "invalid_name", "listed outside the output folder")
                continue
            rel = info.path[len(prefix) :]
            problem = name_problem(rel)
            if problem is not None:
                await self._skip(rel, "invalid_name", problem)
                continue
            if info.is_symlink:
                await self._skip(rel, "symlink", "a symbolic link (not followed)")
                continue
            key = (info.size, info.mtime)
            if self._seen.get(rel) == key:
                continue
            if rel not in self._kept and len(self._kept) >= self.limits.max_files:
                await self._skip(rel, "count_cap", f"over the {self.limits.max_files}-file cap")
                continue
            old = self._kept[rel].size if rel in self._kept else 0
            if self._bytes - old + info.size > self.limits.max_bytes:
                await self._skip(rel, "size_cap", f"over the {self.limits.max_bytes}-byte cap")
                continue
            rec = await self._copy(rel, info.path, self.limits.max_bytes - self._bytes + old)
            if rec is None:
                continue
            self._seen[rel] = key
            self._bytes += rec.size - old
            found.append(rec)
        listed = {i.path[len(prefix) :] for i in infos if i.path.startswith(prefix)}
        for gone in self._seen.keys() - listed:
            del self._seen[gone]  # re-created later with the same size and time: copied again
        return found

    def _prefix(self) -> str:
        # FileInfo paths are relative to the workspace; the output folder is absolute.
        out = self.output_dir
        ws = self.sandbox.spec.workdir.rstrip("/")
        rel = out[len(ws) + 1 :] if out.startswith(ws + "/") else out.lstrip("/")
        return rel + "/" if rel else ""

    async def _copy(self, rel: str, sandbox_path: str, room: int) -> ArtifactRecord | None:
        """Stream one file out; None if it was skipped (reported). Host failures raise."""
        await asyncio.to_thread(self._make_dirs)
        blob = self.dest / secrets.token_hex(16)
        staged = _Staged(self.staging / f"{os.getpid()}-{secrets.token_hex(12)}.part", rel)
        digest = hashlib.sha256()
        chunks = self.sandbox.files.download(sandbox_path)
        try:
            await staged.open()
            try:
                async for chunk in chunks:
                    digest.update(chunk)
                    if staged.size + len(chunk) > room:
                        await self._skip(rel, "size_cap", "grew over the byte cap while copied")
                        return None
                    await staged.write(chunk)
            except ToolError as exc:
                await self._skip(rel, "unreadable", f"could not be read: {exc}")
                return None
            finally:
                with contextlib.suppress(Exception):
                    await chunks.aclose()  # type: ignore[attr-defined]
            await staged.commit(blob)
        finally:
            await staged.discard()
        rec = ArtifactRecord(
            interaction_id=self.interaction_id,
            path=rel,
            size=staged.size,
            sha256=digest.hexdigest(),
            media_type=mimetypes.guess_type(rel)[0] or "application/octet-stream",
            stored_path=str(blob),
        )
        # The store writes on its own thread and commits even if we are cancelled meanwhile:
        # wait for the outcome, so the disk follows what the store says.
        write = asyncio.ensure_future(self.store.add_artifact(rec))
        try:
            await asyncio.shield(write)
        except BaseException:
            if not write.done():
                with contextlib.suppress(BaseException):
                    await asyncio.wait({write})
            if write.done() and not write.cancelled() and write.exception() is None:
                self._keep(rec)
            else:
                _unlink(blob)  # no record points to it
            raise
        self._keep(rec)
        before = self._restored.pop(rel, None)
        if before is not None:
            self._drop_superseded(before, rec)
            if before.sha256 == rec.sha256:
                return rec  # the version already announced, put back by a takeover: not news
        await self.emit("artifact.created", {"artifact": artifact_view(rec)})
        return rec

    def _keep(self, rec: ArtifactRecord) -> None:
        previous = self._kept.get(rec.path)
        self._kept[rec.path] = rec
        self._reported.pop(rec.path, None)
        if previous is not None and previous.stored_path != rec.stored_path:
            _unlink(Path(previous.stored_path))  # its record now points to the new copy

    def _drop_superseded(self, before: ArtifactRecord, now: ArtifactRecord) -> None:
        """Remove the copy `before` pointed to if this node wrote it (an adopted sandbox's run,
        collected here before a restart): no row points to it any more. Another node's copy is
        that node's (its folder, maybe on another machine) and is left alone."""
        old = Path(before.stored_path)
        if (
            old != Path(now.stored_path)
            and old.parent == self.dest
            and _BLOB_NAME.fullmatch(old.name) is not None
        ):
            _unlink(old)

    def _make_dirs(self) -> None:
        for d in (self.dest, self.staging):
            try:
                d.mkdir(parents=True, exist_ok=True, mode=0o700)
            except OSError as exc:
                raise _storage_error(exc, "the artifact folder") from None

    async def _skip(self, rel: str, reason: SkipReason, message: str) -> None:
        """Report a file not kept: once per path and reason, at most MAX_SKIP_REPORTS."""
        if self._reported.get(rel) == reason:
            return
        self._reported[rel] = reason
        self._reports += 1
        if self._reports > MAX_SKIP_REPORTS + 1:
            return
        shown = printable(rel)
        payload: dict[str, Any] = {
            "path": shown,
            "reason": reason,
            "message": f"{shown}: {message}",
        }
        if self._reports == MAX_SKIP_REPORTS + 1:
            payload = {
                "path": "",
                "reason": "too_many_skipped",
                "message": f"more than {MAX_SKIP_REPORTS} files skipped; not listed one by one",
            }
        log.info("artifact.skipped", interaction=self.interaction_id, **payload)
        await self.emit("artifact.skipped", payload)


class _Staged:
    """A staging file in the controller's own folder: written, then renamed or removed."""

    def __init__(self, path: Path, rel: str) -> None:
        self.path = path
        self.rel = rel
        self.fd = -1
        self.size = 0
        self._pending: asyncio.Future[None] | None = None

    async def open(self) -> None:
        try:
            self.fd = os.open(self.path, _NEW_FILE_FLAGS, 0o600)
        except OSError as exc:
            raise _storage_error(exc, printable(self.rel)) from None

    async def write(self, chunk: bytes) -> None:
        self._pending = asyncio.ensure_future(asyncio.to_thread(_write_all, self.fd, chunk))
        try:
            await asyncio.shield(self._pending)
        except OSError as exc:
            raise _storage_error(exc, printable(self.rel)) from None
        self.size += len(chunk)

    async def commit(self, blob: Path) -> None:
        fd, self.fd = self.fd, -1
        try:
            os.close(fd)
            os.rename(self.path, blob)
        except OSError as exc:
            raise _storage_error(exc, printable(self.rel)) from None

    async def discard(self) -> None:
        """Close and remove whatever is left (after a failure or a cancellation)."""
        if self._pending is not None and not self._pending.done():
            # A write still runs on its thread: let it end before its descriptor is closed.
            with contextlib.suppress(BaseException):
                await asyncio.wait({self._pending})
        if self._pending is not None and self._pending.done() and not self._pending.cancelled():
            self._pending.exception()  # retrieved: no "never retrieved" warning
        if self.fd >= 0:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = -1
        _unlink(self.path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


_BLOB_NAME = re.compile(r"[0-9a-f]{32}")
"""How a collector names its copies (`secrets.token_hex(16)`)."""


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def host_error(exc: OSError) -> StorageError:
    """An OSError on the controller's own files, as the run error it becomes."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in FULL_ERRNOS:
        return StorageFull(f"no space left on the controller's disk{where}")
    return StorageError(f"the controller could not write its files: {exc.strerror or exc}{where}")


def _storage_error(exc: OSError, what: str) -> StorageError:
    if exc.errno in FULL_ERRNOS:
        return StorageFull(f"no space left on the controller's disk while storing {what}")
    return StorageError(f"could not store {what}: {exc.strerror or exc}")


def sweep_staging(dest_root: Path) -> int:
    """Remove staging files left by processes that died mid-copy; returns how many.

    Names start with the writer's pid: a live writer's files are left alone."""
    removed = 0
    try:
        names = os.listdir(dest_root / STAGING)
    except OSError:
        return 0
    for name in names:
        pid, sep, _ = name.partition("-")
        if not sep or not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(dest_root / STAGING / name)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, another user's
    return True


# -- exporting into a caller's folder ---------------------------------------------------------


@dataclass
class ExportReport:
    written: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    """(printable path, why it was not written)."""
    superseded: list[tuple[str, str]] = field(default_factory=list)
    """(printable path, the newer artifact that needs its name): a file that later became a
    folder, or the reverse. Reported, but not a failure: the newer one was written."""


async def export_artifacts(records: Sequence[ArtifactRecord], out_dir: Path) -> ExportReport:
    """Copy every artifact it can into `out_dir` (see the module docstring)."""
    return await asyncio.to_thread(_export, list(records), out_dir)


def _export(records: list[ArtifactRecord], out_dir: Path) -> ExportReport:
    report = ExportReport()
    if not records:
        return report
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        root = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        for rec in records:
            report.failed.append((printable(rec.path), f"{out_dir}: {exc.strerror or exc}"))
        return report
    try:
        # Newest first: where an older file and a newer one need the same name (a file that
        # later became a folder), the newer one is written and the older one reported.
        newest_first = sorted(records, key=lambda r: (r.created, r.path), reverse=True)
        for i, rec in enumerate(newest_first):
            newer = next((n.path for n in newest_first[:i] if _clash(n.path, rec.path)), None)
            if newer is not None:
                report.superseded.append((printable(rec.path), printable(newer)))
                continue
            why = _export_one(root, rec)
            if why is None:
                report.written.append(rec.path)
            else:
                report.failed.append((printable(rec.path), why))
    finally:
        os.close(root)
    report.written.sort()
    report.failed.sort()
    report.superseded.sort()
    return report


def _clash(a: str, b: str) -> bool:
    """Whether one path needs the other as a folder (`x` and `x/y`)."""
    return a.startswith(b + "/") or b.startswith(a + "/")


def _export_one(root: int, rec: ArtifactRecord) -> str | None:
    problem = name_problem(rec.path)
    if problem is not None:
        return problem
    parts = rec.path.split("/")
    try:
        src = os.open(rec.stored_path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        return f"its stored copy cannot be read ({exc.strerror})"
    try:
        try:
            parent = _open_dirs(root, parts[:-1])
        except _Conflict as exc:
            return str(exc)
        try:
            return _write_into(parent, parts[-1], src)
        finally:
            os.close(parent)
    finally:
        os.close(src)


class _Conflict(Exception):
    pass


def _open_dirs(root: int, names: list[str]) -> int:
    fd = os.dup(root)
    walked: list[str] = []
    for name in names:
        walked.append(name)
        try:
            os.mkdir(name, 0o755, dir_fd=fd)
        except FileExistsError:
            pass
        except OSError as exc:
            os.close(fd)
            raise _Conflict(f"{printable('/'.join(walked))}: {exc.strerror}") from None
        try:
            nfd = os.open(name, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            where = printable("/".join(walked))
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                raise _Conflict(
                    f"{where} is a file or a symbolic link in the destination, not a folder"
                ) from None
            raise _Conflict(f"{where}: {exc.strerror}") from None
        os.close(fd)
        fd = nfd
    return fd


def _write_into(parent: int, name: str, src: int) -> str | None:
    try:
        st = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        pass
    except OSError as exc:
        return exc.strerror
    else:
        if stat.S_ISDIR(st.st_mode):
            return "a folder of that name is in the destination"
    tmp = f".corral-{secrets.token_hex(8)}.part"
    try:
        dst = os.open(tmp, _NEW_FILE_FLAGS, 0o644, dir_fd=parent)
    except OSError as exc:
        return _dest_error(exc)
    try:
        try:
            while True:
                n = os.sendfile(dst, src, None, 1 << 24)
                if n == 0:
                    break
        finally:
            os.close(dst)
        os.rename(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)  # replaces a link, never follows
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=parent)
        return _dest_error(exc)
    return None


def _dest_error(exc: OSError) -> str:
    if exc.errno in FULL_ERRNOS:
        return "no space left in the destination"
    return exc.strerror or str(exc)
