"""envd's directory watches on `sandbox.watch` (the guest's inotify watch).

Two shapes, as the SDK uses them: the async SDK streams (`WatchDir`: start, then filesystem
events, keepalives when quiet); the sync SDK polls (`CreateWatcher`, `GetWatcherEvents`,
`RemoveWatcher`), for which a task here keeps reading the guest's batches into a bounded
buffer. Either way a lost event is never silent: when events were dropped (the guest's or
our buffer overflowed, or a folder could not be watched), one `write` event for the watched
folder itself (name "") marks the gap: rescan it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import secrets
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from runtime.api.quotas import StreamLease
from runtime.e2b.common import (
    E2BError,
    E2BState,
    Unsupported,
    sandbox_for,
    status_of,
    stream_sandbox,
    to_corral,
)
from runtime.e2b.connect import end_stream, envelope, read_request, timeout_of
from sandbox.api import Sandbox
from sandbox.errors import SandboxError
from sandbox.watch import WatchBatch, watch

MAX_WATCHERS = 16
"""Polled watchers per sandbox (the guest also caps its watches)."""
MAX_BUFFERED = 10_000
"""Events a polled watcher holds between two `GetWatcherEvents`; beyond: dropped, marked."""
KEEPALIVE = 30.0
TYPES = {
    "create": "EVENT_TYPE_CREATE",
    "write": "EVENT_TYPE_WRITE",
    "remove": "EVENT_TYPE_REMOVE",
    "rename": "EVENT_TYPE_RENAME",
    "chmod": "EVENT_TYPE_CHMOD",
}
GAP = {"name": "", "type": "EVENT_TYPE_WRITE"}


@dataclass
class Watcher:
    """A polled watch: what arrived since the last `GetWatcherEvents`."""

    task: asyncio.Task[None] | None = None
    events: collections.deque[dict[str, str]] = field(
        default_factory=lambda: collections.deque(maxlen=MAX_BUFFERED)
    )
    gap: bool = False
    error: BaseException | None = None
    lease: StreamLease | None = None
    """A slot of the owner's stream ceiling, held while the watch is in place."""

    def add(self, batch: WatchBatch) -> None:
        if batch.dropped or len(self.events) + len(batch.events) > MAX_BUFFERED:
            self.gap = True
        for kind, name in batch.events[: MAX_BUFFERED - len(self.events)]:
            self.events.append({"name": name, "type": TYPES[kind]})

    def drain(self) -> list[dict[str, str]]:
        out = list(self.events)
        self.events.clear()
        if self.gap:
            out.append(dict(GAP))
            self.gap = False
        return out


def _args(msg: dict[str, Any]) -> tuple[str, bool]:
    if msg.get("includeEntry"):
        raise Unsupported("include_entry on watch_dir")
    if msg.get("allowNetworkMounts"):
        raise Unsupported("allow_network_mounts on watch_dir")
    return to_corral(str(msg.get("path") or "")), bool(msg.get("recursive"))


async def _armed(sb: Sandbox, path: str, recursive: bool) -> AsyncGenerator[WatchBatch, None]:
    """The guest's batches, once the watch is in place (errors such as a path outside the
    workspace or not a folder are raised here, before anything is answered)."""
    batches = watch(sb, path, recursive=recursive)
    try:
        await anext(batches)
    except StopAsyncIteration:
        raise E2BError(404, f"{path}: the folder is gone") from None
    except BaseException:
        await batches.aclose()
        raise
    return batches


async def watch_dir_frames(
    request: Request, e2b: E2BState
) -> tuple[AsyncIterator[bytes], StreamLease | None]:
    """`WatchDir` as envd's event stream (the async SDK), and the slot of the owner's stream
    ceiling it holds (None when it failed before starting). The request is read and the
    watch armed before the response starts (a streaming response owns the request's
    receive)."""
    lease: StreamLease | None = None
    try:
        sb, lease = await stream_sandbox(request, e2b)
        path, recursive = _args(await read_request(request))
        batches = await _armed(sb, path, recursive)
    except Exception as exc:
        if lease is not None:
            lease.release()
        status, message = (400, str(exc)) if isinstance(exc, ValueError) else status_of(exc)
        return _one(end_stream(status, message)), None
    return _frames(batches, timeout_of(request)), lease


async def _one(frame: bytes) -> AsyncIterator[bytes]:
    yield frame


async def _frames(
    batches: AsyncGenerator[WatchBatch, None], timeout: float | None
) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    pending: asyncio.Task[WatchBatch] | None = None
    try:
        yield envelope({"start": {}})
        while True:
            left = KEEPALIVE if deadline is None else min(KEEPALIVE, deadline - loop.time())
            if left <= 0:
                yield end_stream(504, "watch timed out")
                return
            if pending is None:
                pending = asyncio.ensure_future(anext(batches))
            done, _ = await asyncio.wait({pending}, timeout=left)
            if not done:
                yield envelope({"keepalive": {}})
                continue
            try:
                batch = pending.result()
            except StopAsyncIteration:
                yield end_stream()  # the watched folder went away
                return
            finally:
                if pending.done():
                    pending = None
            for kind, name in batch.events:
                yield envelope({"filesystem": {"name": name, "type": TYPES[kind]}})
            if batch.dropped:
                yield envelope({"filesystem": GAP})
    except SandboxError as exc:
        yield end_stream(*status_of(exc))
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        await batches.aclose()


async def create_watcher(request: Request, e2b: E2BState) -> dict[str, Any]:
    """A polled watch (the sync SDK's watch_dir): it holds a slot of the owner's stream
    ceiling, as the async SDK's stream does, until removed or its watch ends."""
    sb, lease = await stream_sandbox(request, e2b)
    try:
        path, recursive = _args(await read_request(request))
        mine = e2b.watchers.setdefault(sb.id, {})
        if len(mine) >= MAX_WATCHERS:
            raise E2BError(429, f"at most {MAX_WATCHERS} directory watchers per sandbox")
        batches = await _armed(sb, path, recursive)
    except BaseException:
        lease.release()
        raise
    watcher = Watcher(lease=lease)

    async def pump() -> None:
        try:
            async for batch in batches:
                watcher.add(batch)
        except Exception as exc:
            watcher.error = exc
        finally:
            lease.release()
            await batches.aclose()

    watcher.task = asyncio.create_task(pump())
    watcher_id = "w-" + secrets.token_hex(8)
    mine[watcher_id] = watcher
    return {"watcherId": watcher_id}


def _watcher(e2b: E2BState, sb: Sandbox, msg: dict[str, Any]) -> tuple[str, Watcher]:
    watcher_id = str(msg.get("watcherId") or "")
    found = e2b.watchers.get(sb.id, {}).get(watcher_id)
    if found is None:
        raise E2BError(404, f"watcher {watcher_id!r} not found")
    return watcher_id, found


async def get_watcher_events(request: Request, e2b: E2BState) -> dict[str, Any]:
    sb = await sandbox_for(request, e2b)
    _, watcher = _watcher(e2b, sb, await read_request(request))
    events = watcher.drain()
    if not events and watcher.error is not None:
        raise watcher.error
    return {"events": events}


async def remove_watcher(request: Request, e2b: E2BState) -> dict[str, Any]:
    sb = await sandbox_for(request, e2b)
    watcher_id, watcher = _watcher(e2b, sb, await read_request(request))
    e2b.watchers.get(sb.id, {}).pop(watcher_id, None)
    await stop(watcher)
    return {}


async def stop(watcher: Watcher) -> None:
    if watcher.task is not None:
        watcher.task.cancel()
        with contextlib.suppress(BaseException):
            await watcher.task
    if watcher.lease is not None:
        watcher.lease.release()


async def forget(e2b: E2BState, sandbox_id: str) -> None:
    """A killed sandbox's watchers."""
    for watcher in e2b.watchers.pop(sandbox_id, {}).values():
        await stop(watcher)
