"""The `exec` tool: run a command in its own session and stream its output.

- A string runs through ``/bin/sh -c``; a list is the argv. Each exec is a new session (and so
  a new process group); a timeout or a cancelled call SIGKILLs the whole group.
- stdout/stderr go out as they are produced, each stream in order. At most `output_limit`
  bytes (stdout + stderr together) are forwarded; then a truncation marker is sent on the
  stream that overflowed and the pipes keep being drained (so the command never blocks on a
  full pipe) but nothing more is forwarded.
- The call ends when the command's main process exits: what it wrote is still read, but
  processes it left running in the background keep running and their later output is dropped
  (use `spawn` for background work).
- Exit: ``exit_code`` is the process's code; killed by signal N: ``exit_code = 128 + N`` and
  ``signal = N``; timed out: ``exit_code = 124``, ``signal = 9``, ``timed_out = True``.
- ``oom_killed`` compares the cgroup's ``oom_kill`` counter before and after (cgroup v1
  ``memory.oom_control`` or v2 ``memory.events``): any OOM kill in the container during the
  exec counts, also one of a concurrent exec.

The rules themselves live in `execcore` (shared with the synchronous prelude); this module is
only the asyncio driver of a `RunningExec`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from .execcore import DEFAULT_OUTPUT_LIMIT as DEFAULT_OUTPUT_LIMIT
from .execcore import Pipe, RunningExec, StdinFeed
from .execcore import base_env as base_env
from .execcore import oom_count as oom_count
from .execcore import resolve_cwd as resolve_cwd
from .execcore import start as start
from .fdio import reap_later, set_once, wait_exit, writable
from .paths import Workspace


class StreamSink(Protocol):
    id: int

    async def send_stream(self, header: dict[str, Any], payload: bytes) -> None: ...


async def _flush(sink: StreamSink, run: RunningExec) -> None:
    while run.backlog:
        stream, chunk = run.backlog.pop(0)
        await sink.send_stream({"t": "data", "id": sink.id, "s": stream}, chunk)


class _Pump:
    """Reads one pipe, waking on readability, until `Pipe.read` says it is done."""

    def __init__(self, pipe: Pipe, run: RunningExec, sink: StreamSink) -> None:
        self.pipe = pipe
        self.run_ = run
        self.sink = sink
        self._wake: asyncio.Future[None] | None = None

    def main_exited(self) -> None:
        self.pipe.exited = True
        if self._wake is not None:
            set_once(self._wake)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.pipe.done:
            data = self.pipe.read()
            if data is None:
                self._wake = loop.create_future()
                loop.add_reader(self.pipe.fd, set_once, self._wake)
                try:
                    await self._wake
                finally:
                    loop.remove_reader(self.pipe.fd)
                    self._wake = None
                continue
            # Each pump sends its own chunks, in order (never through the shared backlog,
            # where the other stream's pump could overtake them while waiting for credit).
            header = {"t": "data", "id": self.sink.id, "s": self.pipe.stream}
            for chunk in self.run_.out.take(data):
                await self.sink.send_stream(header, chunk)


async def _feed(feed: StdinFeed) -> None:
    try:
        while not feed.write_some():
            assert feed.fd is not None
            await writable(feed.fd)
    finally:
        feed.close()


async def run_exec(
    sink: StreamSink, a: dict[str, Any], stdin: bytes, ws: Workspace, env0: Mapping[str, str]
) -> dict[str, Any]:
    run = RunningExec(a, stdin, ws.root, env0)
    run.launch()
    return await follow(sink, run)


async def follow(sink: StreamSink, run: RunningExec) -> dict[str, Any]:
    """Drive a launched exec to its result: stream its output, feed its stdin, enforce its
    deadline. `run` may already be part-way (handed over by the prelude)."""
    await _flush(sink, run)  # a launch failure's message, or what the prelude had queued
    proc = run.proc
    if proc is None:
        return run.result()
    pumps = [_Pump(p, run, sink) for p in run.pipes if not p.done]
    tasks = [asyncio.ensure_future(p.run()) for p in pumps]
    feeder = None
    if run.feed is not None and not run.feed.done:
        feeder = asyncio.ensure_future(_feed(run.feed))
    loop = asyncio.get_running_loop()
    timer = None
    if run.deadline is not None and not run.exited:
        timer = loop.call_at(run.deadline, run.expire)  # loop.time() is time.monotonic()
    try:
        await wait_exit(proc)
        run.main_exited()
        for p in pumps:
            p.main_exited()
        await asyncio.gather(*tasks)
    finally:
        if timer is not None:
            timer.cancel()
        cancelled = proc.returncode is None
        for t in [*tasks, feeder]:
            if t is not None and not t.done():
                t.cancel()
        run.close()  # cancelled: takes the whole group down
        if cancelled:
            reap_later(proc)
    return run.result()


__all__ = [
    "DEFAULT_OUTPUT_LIMIT",
    "StreamSink",
    "base_env",
    "follow",
    "oom_count",
    "resolve_cwd",
    "run_exec",
    "start",
]
