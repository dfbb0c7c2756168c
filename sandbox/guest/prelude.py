"""The synchronous prelude: a cold guest serves its first connection's handshake and first
exec before asyncio is imported (asyncio and the tools behind it take ~50 ms to import, more
than starting the process and running the command together).

Unix transport without a token only (`__main__` decides). The prelude serves one connection
at a time with `select.poll`: the `hello`, any `ping`, and the first `exec` with its full
semantics (the rules are `execcore`'s, shared with the asyncio driver in `execs`): output
streamed as `data` frames within the call's credit, stdin fed, `credit` and `cancel` frames
honoured, the timeout enforced. It hands the whole state over to the asyncio server (as a
`Handover`) when:

- the first exec has ended (its result is written first);
- anything it does not serve arrives (another method, a second call while the exec runs, a
  frame it does not handle, a call whose arguments it would refuse): it stops *before*
  handling it, and the server carries on with the open connection, the parser with the bytes
  it holds, the parsed frames and a running exec exactly where the prelude left them;
- another connection is waiting in the listen backlog (the server accepts it);
- the connection says nothing for HELLO_TIMEOUT (then it is closed first);
- SIGTERM/SIGINT (`stop`: the guest exits without starting the server).

A connection that closes before its first exec (a probe, a refused hello) costs nothing: the
prelude accepts the next one.
"""

from __future__ import annotations

import collections
import contextlib  # loaded by subprocess anyway
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from .errors import ToolFailure
from .execcore import Process, RunningExec, base_env
from .wire import (
    HELLO_REPLY,
    HELLO_TIMEOUT,
    MAX_HEADER,
    MAX_PAYLOAD,
    WINDOW,
    FrameError,
    FrameParser,
    Header,
    encode_header,
    error_header,
    frame_cost,
    hello_error,
)

OUT_HIGH = 1 << 20
"""Stop reading the command's pipes while this much output waits for the socket."""
POLL_STEP = 0.005
"""How often a child's exit is checked where pidfds are missing (some gVisor versions)."""
_IN = select.POLLIN | select.POLLHUP | select.POLLERR


class Handover:
    """What the asyncio server takes over from the prelude."""

    def __init__(self, reason: str, stats: dict[str, Any]) -> None:
        self.reason = reason
        self.stats = stats
        self.stop = False
        self.sock: socket.socket | None = None
        """The open connection, if any; `parser`, `frames` and `unsent` belong to it."""
        self.ready = False
        """Its handshake is done."""
        self.parser: FrameParser | None = None
        self.frames: collections.deque[tuple[Header, bytes]] = collections.deque()
        """Parsed, not handled: the server handles them first, in order."""
        self.unsent = b""
        self.exec: RunningExec | None = None
        """An exec still running, with its call id and the send credit it has left."""
        self.exec_id = 0
        self.credit = WINDOW
        self.reap: list[Process] = []
        """Killed children the server must still reap."""


class _Handover(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


class Prelude:
    def __init__(
        self, listener: socket.socket, workspace: str, *, hello_timeout: float = HELLO_TIMEOUT
    ) -> None:
        self.listener = listener
        self.root = os.path.abspath(workspace)
        self.env = base_env(self.root)
        self.hello_timeout = hello_timeout
        self.stats: dict[str, Any] = {"execs": 0, "pings": 0, "asyncio_loaded": None}
        self._stopping = False

    def _on_signal(self, signum: int, frame: object) -> None:
        self._stopping = True

    def run(self) -> Handover:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_fd = signal.set_wakeup_fd(wake_w)
        sigs = (signal.SIGTERM, signal.SIGINT)
        old = {sig: signal.signal(sig, self._on_signal) for sig in sigs}
        self.listener.setblocking(False)
        try:
            while True:
                sock = self._accept(wake_r)
                if sock is None:
                    h = Handover("stop", self.stats)
                    h.stop = True
                    return h
                handover = _Session(self, sock, wake_r).serve()
                if handover is not None:
                    self.stats["handover"] = handover.reason
                    return handover
        finally:
            signal.set_wakeup_fd(old_fd)
            for sig, handler in old.items():
                signal.signal(sig, handler)
            os.close(wake_r)
            os.close(wake_w)

    def _accept(self, wake: int) -> socket.socket | None:
        poller = select.poll()
        poller.register(self.listener, select.POLLIN)
        poller.register(wake, select.POLLIN)
        while not self._stopping:
            poller.poll()
            try:
                return self.listener.accept()[0]
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                continue
        return None


class _Session:
    """One connection, until it closes (None: accept the next) or the server takes over."""

    def __init__(self, prelude: Prelude, sock: socket.socket, wake: int) -> None:
        self.p = prelude
        self.sock = sock
        self.wake = wake
        sock.setblocking(False)
        self.frames: collections.deque[tuple[Header, bytes]] = collections.deque()
        self.parser = FrameParser(self._frame)
        self.out = bytearray()
        self.ready = False
        self.hello_deadline = time.monotonic() + prelude.hello_timeout
        self.run: RunningExec | None = None
        self.call_id = 0
        self.credit = WINDOW
        self.pidfd: int | None = None
        self.reap: list[Process] = []

    def _frame(self, header: Header, payload: bytes) -> None:
        self.frames.append((header, payload))

    def _send(self, header: Header, payload: bytes = b"") -> None:
        self.out += encode_header(header, len(payload))
        self.out += payload

    def _write(self) -> None:
        try:
            while self.out:
                n = self.sock.send(self.out)
                del self.out[:n]
        except (BlockingIOError, InterruptedError):
            pass

    # -- the loop -------------------------------------------------------------------------
    def serve(self) -> Handover | None:
        try:
            while True:
                self._handle_frames()
                if self.run is not None:
                    self._pump()
                self._write()
                if not self._wait():
                    return self._closed()
        except _Handover as h:
            return self._handover(h.reason)
        except _Closed:
            return self._closed()
        finally:
            if self.pidfd is not None:
                os.close(self.pidfd)

    def _closed(self) -> Handover | None:
        """The peer went away (or broke the framing): a running exec goes as if cancelled."""
        self.sock.close()
        if self.run is None and not self.reap:
            return None
        if self.run is not None:
            self._drop_exec()
        h = Handover("connection closed", self.p.stats)
        h.reap = self.reap
        return h

    def _handover(self, reason: str) -> Handover:
        h = Handover(reason, self.p.stats)
        h.reap = self.reap
        if reason == "stop":
            h.stop = True
            if self.run is not None:
                self._drop_exec()
            self.sock.close()
            return h
        if reason == "hello timeout":
            self.sock.close()
            return h
        self._write()
        h.sock, h.ready, h.parser, h.frames, h.unsent = (
            self.sock,
            self.ready,
            self.parser,
            self.frames,
            bytes(self.out),
        )
        h.exec, h.exec_id, h.credit = self.run, self.call_id, self.credit
        return h

    def _drop_exec(self) -> None:
        run, self.run = self.run, None
        assert run is not None
        running = run.proc is not None and run.proc.returncode is None
        run.close()  # kills the group of a main process still running
        if running and run.proc is not None:
            self.reap.append(run.proc)

    # -- frames ---------------------------------------------------------------------------
    def _handle_frames(self) -> None:
        while self.frames:
            header, payload = self.frames[0]
            if not self.ready:
                problem = hello_error(header, None)
                if problem is not None:
                    self._send(error_header(0, *problem))
                    self._write()
                    self.frames.clear()
                    raise _Closed
                self.frames.popleft()
                self.ready = True
                self.parser.set_limits(max_header=MAX_HEADER, max_payload=MAX_PAYLOAD)
                self._send(HELLO_REPLY)
                continue
            if not self._handled(header, payload):
                raise _Handover(f"{header.get('t')} {header.get('m', '')}".strip())
            self.frames.popleft()

    def _handled(self, header: Header, payload: bytes) -> bool:
        kind, call_id, args = header.get("t"), header.get("id"), header.get("a", {})
        if not isinstance(call_id, int) or isinstance(call_id, bool) or call_id <= 0:
            return False
        if self.run is None:
            if kind != "call" or not isinstance(args, dict):
                return False
            if header.get("m") == "ping":
                self._send({"t": "result", "id": call_id, "r": {}})
                self.p.stats["pings"] += 1
                return True
            if header.get("m") != "exec":
                return False
            try:
                run = RunningExec(args, payload, self.p.root, self.p.env)
                run.launch()
            except ToolFailure:
                return False  # the server answers it, with its own words
            self.p.stats["asyncio_loaded"] = "asyncio" in sys.modules
            self.run, self.call_id, self.credit = run, call_id, WINDOW
            if run.proc is not None:
                try:
                    self.pidfd = os.pidfd_open(run.proc.pid)
                except OSError:
                    self.pidfd = None
            return True
        if call_id != self.call_id:
            return False
        if kind == "credit":
            n = header.get("n")
            if not isinstance(n, int) or isinstance(n, bool) or n <= 0 or n > WINDOW:
                return False  # the server closes the connection for it
            self.credit = min(self.credit + n, WINDOW)
            return True
        if kind == "cancel":
            self._drop_exec()
            raise _Handover("exec cancelled")
        return False

    # -- the exec -------------------------------------------------------------------------
    def _flush_backlog(self) -> bool:
        """Move queued output into frames while credit lasts; True if nothing is left."""
        run = self.run
        assert run is not None
        while run.backlog:
            stream, chunk = run.backlog[0]
            cost = frame_cost(len(chunk))
            if cost > self.credit:
                return False
            self.credit -= cost
            run.backlog.pop(0)
            self._send({"t": "data", "id": self.call_id, "s": stream}, chunk)
        return True

    def _blocked(self) -> bool:
        return bool(self.run is not None and self.run.backlog) or len(self.out) >= OUT_HIGH

    def _pump(self, readable: frozenset[int] = frozenset()) -> None:
        run = self.run
        assert run is not None
        proc = run.proc
        polling = proc is not None and self.pidfd is None and proc.returncode is None
        if polling and proc is not None and proc.poll() is not None:
            run.main_exited()
        if run.feed is not None and not run.feed.done:
            run.feed.write_some()
        if run.deadline is not None and not run.exited and time.monotonic() >= run.deadline:
            run.expire()
        for pipe in run.pipes:
            while not pipe.done and self._flush_backlog() and len(self.out) < OUT_HIGH:
                if not (pipe.exited or pipe.fd in readable):
                    break
                data = pipe.read()
                if data is None:
                    break
                if data:
                    run.emit(pipe.stream, data)
                if not pipe.exited:
                    break  # one read per wake-up, as the asyncio pumps do
        if not self._flush_backlog() or not run.exited or any(not p.done for p in run.pipes):
            return
        run.close()
        self._send({"t": "result", "id": self.call_id, "r": run.result()})
        self.p.stats["execs"] += 1
        self.run = None
        self._write()
        raise _Handover("first exec done")

    def _wait(self) -> bool:
        """Poll once and act on what happened; False when the connection is gone."""
        poller = select.poll()
        poller.register(self.wake, select.POLLIN)
        poller.register(self.sock, select.POLLIN | (select.POLLOUT if self.out else 0))
        poller.register(self.p.listener, select.POLLIN)
        run = self.run
        timeout: float | None = None
        if not self.ready:
            timeout = self.hello_deadline - time.monotonic()
        if run is not None:
            if not self._blocked():
                for pipe in run.pipes:
                    if not pipe.done:
                        poller.register(pipe.fd, select.POLLIN)
            if run.feed is not None and run.feed.fd is not None:
                poller.register(run.feed.fd, select.POLLOUT)
            if run.proc is not None and run.proc.returncode is None:
                if self.pidfd is not None:
                    poller.register(self.pidfd, select.POLLIN)
                else:
                    timeout = POLL_STEP if timeout is None else min(timeout, POLL_STEP)
                if run.deadline is not None and not run.timed_out:
                    left = run.deadline - time.monotonic()
                    timeout = left if timeout is None else min(timeout, left)
        ms = None if timeout is None else max(0, int(timeout * 1000) + 1)
        events = dict(poller.poll(ms))
        if self.p._stopping:
            raise _Handover("stop")
        if self.wake in events:
            with contextlib.suppress(BlockingIOError):
                os.read(self.wake, 64)
        if events.get(self.sock.fileno(), 0) & _IN and not self._receive():
            return False
        if self.p.listener.fileno() in events:
            raise _Handover("another connection")
        if not self.ready and time.monotonic() >= self.hello_deadline:
            raise _Handover("hello timeout")
        if run is not None and self.run is run:
            if self.pidfd is not None and self.pidfd in events and run.proc is not None:
                run.proc.wait()
                run.main_exited()
            self._pump(frozenset(fd for fd, ev in events.items() if ev & _IN))
        return True

    def _receive(self) -> bool:
        try:
            n = self.sock.recv_into(self.parser.get_buffer())
        except (BlockingIOError, InterruptedError):
            return True
        except OSError:
            return False
        if n == 0:
            return False
        try:
            self.parser.feed(n)
        except FrameError:
            self.frames.clear()  # as the server would: drop the connection
            return False
        return True


class _Closed(Exception):
    """The handshake was refused: the connection is closed, the next one accepted."""


__all__ = ["Handover", "Prelude"]
