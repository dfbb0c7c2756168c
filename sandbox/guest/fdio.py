"""Small asyncio helpers over raw descriptors and child processes (no thread per pipe).

A pipe is read with `add_reader` only while someone waits on it; a child's exit is noticed
through a pidfd (Linux >= 5.3), or through a waiting thread where pidfds are missing
(e.g. some gVisor versions).
"""

from __future__ import annotations

import asyncio
import os
import threading

from .execcore import Process, kill_group

__all__ = ["kill_group", "read_some", "readable", "reap_later", "set_once", "wait_exit", "writable"]

READ_SIZE = 1 << 16


async def readable(fd: int) -> None:
    """Wait until `fd` is readable (or at EOF / error)."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_reader(fd, set_once, fut)
    try:
        await fut
    finally:
        loop.remove_reader(fd)


async def read_some(fd: int) -> bytes:
    """Up to READ_SIZE bytes from the non-blocking `fd` once some are there; b"" at EOF."""
    while True:
        try:
            return os.read(fd, READ_SIZE)
        except BlockingIOError:
            await readable(fd)


async def writable(fd: int) -> None:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.add_writer(fd, set_once, fut)
    try:
        await fut
    finally:
        loop.remove_writer(fd)


def set_once(fut: asyncio.Future[None]) -> None:
    """Resolve `fut` unless it is already done (safe as a reader callback)."""
    if not fut.done():
        fut.set_result(None)


async def wait_exit(proc: Process) -> int:
    """Wait for `proc` to exit and reap it; returns its `returncode`."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        pidfd = os.pidfd_open(proc.pid)
    except OSError:
        return await _wait_in_thread(proc)
    try:
        await readable(pidfd)
    finally:
        os.close(pidfd)
    return proc.wait()


async def _wait_in_thread(proc: Process) -> int:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()

    def waiter() -> None:
        code = proc.wait()
        loop.call_soon_threadsafe(_set_code, fut, code)

    # A dedicated daemon thread: the default executor is small and these may wait for hours.
    threading.Thread(target=waiter, name=f"wait-{proc.pid}", daemon=True).start()
    return await fut


def _set_code(fut: asyncio.Future[int], code: int) -> None:
    if not fut.done():
        fut.set_result(code)


def reap_later(proc: Process) -> None:
    """Reap `proc` in the background (after a kill) so it does not stay a zombie."""
    if proc.returncode is not None:
        return
    task = asyncio.get_running_loop().create_task(wait_exit(proc))
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


_BACKGROUND: set[asyncio.Task[int]] = set()
