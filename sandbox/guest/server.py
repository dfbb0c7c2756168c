"""The guest server: accepts connections, checks the handshake, runs calls as tasks.

Every call is its own task, so calls on one connection run concurrently; a ``cancel`` frame
cancels the task (an exec's process group is then killed). Malformed input closes only the
connection that sent it; a failing tool call becomes an ``error`` frame, never a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from . import args as A
from . import files
from .browser import BrowserSession, site_packages
from .channel import CallState, Channel, FlowError
from .errors import (
    INVALID_ARGUMENT,
    LIMIT_EXCEEDED,
    PROTOCOL,
    TOOL_ERROR,
    ToolFailure,
)
from .execcore import spawner
from .execs import base_env, follow, oom_count, resolve_cwd, run_exec
from .fdio import reap_later
from .interp import HANDLERS as INTERP_HANDLERS
from .interp import Interpreters
from .paths import Workspace
from .prelude import Handover
from .procs import ProcessTable, run_pipe
from .pysession import PythonSession
from .watch import HANDLERS as WATCH_HANDLERS
from .wire import (
    CHUNK,
    HELLO_REPLY,
    HELLO_TIMEOUT,
    PROTOCOL_VERSION,
    FrameError,
    Header,
    error_header,
    hello_error,
)

MAX_CALLS = 1024
"""Concurrent calls per connection."""

Result = tuple[dict[str, Any], bytes]
Handler = Callable[["Connection", CallState, dict[str, Any], bytes], Awaitable[Result]]


def log(message: str) -> None:
    print(f"corral-guest: {message}", file=sys.stderr, flush=True)


class Guest:
    """State shared by all connections: workspace, background processes, Python session."""

    def __init__(
        self, workspace: str, *, token: str | None = None, hello_timeout: float = HELLO_TIMEOUT
    ) -> None:
        self.ws = Workspace(workspace)
        self.hello_timeout = hello_timeout
        self.prelude: dict[str, Any] | None = None
        """What the synchronous prelude served before this server started (None: no prelude)."""
        self.env = base_env(self.ws.root)
        self.token = token
        self.procs = ProcessTable()
        self.python = PythonSession(self.ws.root, self.env)
        self.interp = Interpreters(self.ws.root, self.env)
        self.browser = BrowserSession(self.ws, self.env)
        self.connections: set[Connection] = set()

    def protocol(self) -> Channel:
        return Connection(self).channel

    def close(self) -> None:
        for conn in list(self.connections):
            conn.channel.close()
        self.procs.close()
        self.python.close()
        self.interp.close()
        self.browser.close()


class Connection:
    def __init__(self, guest: Guest, adopted: Handover | None = None) -> None:
        """A new connection, or (`adopted`) the one the prelude was serving: its handshake,
        parser, unhandled frames, unsent output and running exec carry on here."""
        self.guest = guest
        on_open = None if adopted is None else (lambda: self._resume(adopted))
        self.channel = Channel(self._on_frame, self._on_close, on_open=on_open)
        self.calls: dict[int, tuple[CallState, asyncio.Task[None]]] = {}
        self.ready = False
        loop = asyncio.get_running_loop()
        self._hello_timer = loop.call_later(guest.hello_timeout, self._hello_expired)
        guest.connections.add(self)
        if adopted is not None and adopted.ready:
            self._hello_timer.cancel()
            self.ready = True
            self.channel.authenticated()

    def _resume(self, h: Handover) -> None:
        run = h.exec
        if run is not None:
            state = CallState(self.channel, h.exec_id, credit=h.credit)

            async def adopted(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
                assert run is not None
                return await follow(s, run), b""

            task = asyncio.ensure_future(self._run(state, adopted, {}, b""))
            self.calls[state.id] = (state, task)
        assert h.parser is not None
        self.channel.resume(h.parser, h.frames, h.unsent)

    # -- frames ---------------------------------------------------------------------------
    def _on_frame(self, header: Header, payload: bytes) -> None:
        try:
            if not self.ready:
                self._hello(header)
            else:
                self._dispatch(header, payload)
        except (FrameError, FlowError, KeyError, TypeError, ValueError) as exc:
            self._fatal(PROTOCOL, f"bad frame: {exc}")

    def _hello(self, header: Header) -> None:
        problem = hello_error(header, self.guest.token)
        if problem is not None:
            self._fatal(*problem)
            return
        self._hello_timer.cancel()
        self.ready = True
        self.channel.authenticated()
        self.channel.send(HELLO_REPLY)

    def _dispatch(self, header: Header, payload: bytes) -> None:
        kind = header["t"]
        call_id = header.get("id")
        if not isinstance(call_id, int) or isinstance(call_id, bool) or call_id <= 0:
            raise ValueError(f"frame {kind!r} needs a positive integer 'id'")
        if kind == "call":
            self._start_call(call_id, header, payload)
            return
        if kind not in ("data", "end", "credit", "cancel"):
            raise ValueError(f"unknown frame type {kind!r}")
        entry = self.calls.get(call_id)
        if entry is None:
            return  # the call already ended (e.g. a late credit or cancel): nothing to do
        state, task = entry
        if kind == "data":
            state.push(header, payload, stream=True)
        elif kind == "end":
            state.push(header, b"", stream=False)
        elif kind == "credit":
            state.add_credit(header.get("n"))
        else:
            task.cancel()

    def _start_call(self, call_id: int, header: Header, payload: bytes) -> None:
        if call_id in self.calls:
            raise ValueError(f"call id {call_id} is already in use")
        method, call_args = header.get("m"), header.get("a", {})
        handler = HANDLERS.get(method) if isinstance(method, str) else None
        state = CallState(self.channel, call_id)
        if handler is None or not isinstance(call_args, dict):
            self._error(call_id, INVALID_ARGUMENT, f"unknown method {method!r} or bad arguments")
            return
        if len(self.calls) >= MAX_CALLS:
            self._error(call_id, LIMIT_EXCEEDED, f"more than {MAX_CALLS} concurrent calls")
            return
        task = asyncio.ensure_future(self._run(state, handler, call_args, payload))
        self.calls[call_id] = (state, task)

    async def _run(
        self, state: CallState, handler: Handler, call_args: dict[str, Any], payload: bytes
    ) -> None:
        try:
            result, out = await handler(self, state, call_args, payload)
            self.channel.send({"t": "result", "id": state.id, "r": result}, out)
        except ToolFailure as exc:
            self._error(state.id, exc.code, exc.message)
        except asyncio.CancelledError:
            pass  # cancelled by the client or the connection went away: nobody to tell
        except (ConnectionError, FlowError):
            pass  # the connection is going down; _on_close cleans up
        except Exception as exc:  # a bug in a tool must not take the guest down
            log(f"call {state.id} failed: {exc!r}")
            self._error(state.id, TOOL_ERROR, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.calls.pop(state.id, None)
            state.fail(ConnectionResetError("call ended"))

    def _error(self, call_id: int, code: str, message: str) -> None:
        self.channel.send(error_header(call_id, code, message))

    def _fatal(self, code: str, message: str) -> None:
        """Tell the peer why, then close this connection (the guest itself carries on)."""
        self._error(0, code, message)
        self.channel.close()

    def _hello_expired(self) -> None:
        if not self.ready:
            self.channel.abort(TimeoutError("no hello"))

    def _on_close(self, exc: BaseException | None) -> None:
        self._hello_timer.cancel()
        self.guest.connections.discard(self)
        for state, task in list(self.calls.values()):
            state.fail(ConnectionResetError("connection closed"))
            task.cancel()
        self.calls.clear()


# -- tool handlers --------------------------------------------------------------------------
async def _ping(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    return {}, b""


async def _info(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    import importlib.util

    site_packages()
    return {
        "protocol": PROTOCOL_VERSION,
        "python": sys.version.split()[0],
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "workspace": c.guest.ws.root,
        "playwright": importlib.util.find_spec("playwright") is not None,
        "oom_counter": oom_count() is not None,
        "prelude": c.guest.prelude,
        "spawner": spawner(),
    }, b""


async def _exec(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    return await run_exec(s, a, p, c.guest.ws, c.guest.env), b""


async def _spawn(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    argv = A.command(a)
    cwd = resolve_cwd(c.guest.ws.root, A.opt_string(a, "cwd"))
    handle = c.guest.procs.spawn(argv, cwd=cwd, env={**c.guest.env, **A.env(a)})
    return {"handle": handle}, b""


async def _pipe(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    argv = A.command(a)
    cwd = resolve_cwd(c.guest.ws.root, A.opt_string(a, "cwd"))
    return await run_pipe(s, argv, cwd=cwd, env={**c.guest.env, **A.env(a)}), b""


async def _proc_poll(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    return c.guest.procs.get(a.get("handle")).status(), b""


async def _proc_read(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    proc = c.guest.procs.get(a.get("handle"))
    data, offset = proc.read(A.integer(a, "offset", 0))
    return {"offset": offset, "running": proc.running}, data


async def _proc_kill(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    c.guest.procs.kill(a.get("handle"), a.get("signal", 15))
    return {}, b""


async def _proc_list(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    return {}, json.dumps(c.guest.procs.list()).encode()


async def _python(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    # Output and tracebacks can be large: the result travels as JSON in the payload.
    result = await c.guest.python.run(A.string(a, "code"), A.opt_seconds(a, "timeout"))
    return {}, json.dumps(result).encode()


async def _python_restart(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    c.guest.python.restart()
    return {}, b""


async def _browser(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    # Snapshots and page text can be large: the result travels as JSON in the payload.
    action_args = a.get("args") or {}
    if not isinstance(action_args, dict):
        raise ToolFailure(INVALID_ARGUMENT, "browser 'args' must be an object")
    result = await c.guest.browser.call(A.string(a, "action"), action_args)
    return {}, json.dumps(result).encode()


async def _stat(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    return files.stat_path(c.guest.ws, A.string(a, "path")), b""


async def _list(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    entries = await asyncio.to_thread(
        files.list_dir, c.guest.ws, A.string(a, "path", "."), recursive=A.boolean(a, "recursive")
    )
    return {}, json.dumps(entries).encode()


async def _remove(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    await asyncio.to_thread(
        files.remove, c.guest.ws, A.string(a, "path"), recursive=A.boolean(a, "recursive")
    )
    return {}, b""


async def _mkdir(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    files.mkdir(c.guest.ws, A.string(a, "path"), parents=A.boolean(a, "parents", True))
    return {}, b""


async def _move(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    files.move(c.guest.ws, A.string(a, "src"), A.string(a, "dst"))
    return {}, b""


async def _sha256(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    digest = await asyncio.to_thread(files.sha256, c.guest.ws, A.string(a, "path"))
    return {"sha256": digest}, b""


async def _send_file(s: CallState, fd: int) -> int:
    size = 0
    try:
        while data := os.read(fd, CHUNK):
            size += len(data)
            await s.send_stream({"t": "data", "id": s.id, "s": "data"}, data)
    finally:
        os.close(fd)
    return size


async def _download(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    fd, _ = files.open_read(c.guest.ws, A.string(a, "path"))
    return {"size": await _send_file(s, fd)}, b""


async def _read(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    path = A.string(a, "path")
    fd, size = files.open_read(c.guest.ws, path)
    if size > files.READ_MAX:
        os.close(fd)
        raise ToolFailure(
            LIMIT_EXCEEDED,
            f"{path}: {size} bytes is more than read() returns ({files.READ_MAX}); use download()",
        )
    return {"size": await _send_file(s, fd)}, b""


async def _upload(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    tmp = files.TempFile(
        c.guest.ws,
        A.string(a, "path"),
        mode=A.integer(a, "mode", 0o644),
        parents=A.boolean(a, "parents", True),
    )
    try:
        tmp.write(p)
        while not A.boolean(a, "whole"):  # else the call's payload is the whole content
            header, chunk = await s.get()
            if header["t"] == "end":
                break
            tmp.write(chunk)
            s.consumed(len(chunk))
        tmp.commit()
    except BaseException:
        tmp.abort()
        raise
    return {"size": tmp.size}, b""


async def _tar(c: Connection, s: CallState, a: dict[str, Any], p: bytes) -> Result:
    from .tarstream import tar_stream  # tarfile is slow to import and rarely needed

    size = 0
    for chunk in tar_stream(c.guest.ws, A.string(a, "path", ".")):
        size += len(chunk)
        await s.send_stream({"t": "data", "id": s.id, "s": "data"}, chunk)
    return {"size": size}, b""


HANDLERS: dict[str, Handler] = {
    "ping": _ping,
    "info": _info,
    "exec": _exec,
    "spawn": _spawn,
    "pipe": _pipe,
    "proc_poll": _proc_poll,
    "proc_read": _proc_read,
    "proc_kill": _proc_kill,
    "proc_list": _proc_list,
    "python": _python,
    "python_restart": _python_restart,
    "browser": _browser,
    "stat": _stat,
    "list": _list,
    "remove": _remove,
    "mkdir": _mkdir,
    "move": _move,
    "sha256": _sha256,
    "read": _read,
    "download": _download,
    "upload": _upload,
    "tar": _tar,
    **INTERP_HANDLERS,  # the code interpreter's contexts (interp.py)
    **WATCH_HANDLERS,  # directory watches (watch.py)
}


def run(
    listener: socket.socket,
    where: str,
    workspace: str,
    token: str | None,
    *,
    unix: bool,
    handover: Handover | None = None,
    hello_timeout: float = HELLO_TIMEOUT,
) -> None:
    """Serve on `listener` (bound by __main__) until SIGTERM/SIGINT; `handover` is what the
    prelude leaves (an open connection, maybe a running exec)."""
    guest = Guest(workspace, token=token, hello_timeout=hello_timeout)
    asyncio.run(_serve(guest, listener, where, unix=unix, handover=handover))


async def _serve(
    guest: Guest,
    listener: socket.socket,
    where: str,
    *,
    unix: bool,
    handover: Handover | None,
) -> None:
    loop = asyncio.get_running_loop()
    server: asyncio.Server
    if unix:
        server = await loop.create_unix_server(guest.protocol, sock=listener)
    else:
        server = await loop.create_server(guest.protocol, sock=listener)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if handover is not None:
        guest.prelude = {**handover.stats, "handover": handover.reason}
        for proc in handover.reap:
            reap_later(proc)
        if handover.sock is not None:
            conn = Connection(guest, handover)
            await loop.connect_accepted_socket(lambda: conn.channel, handover.sock)
    log(f"listening on {where}, workspace {guest.ws.root}, pid {os.getpid()}")
    try:
        await stop.wait()
    finally:
        server.close()
        guest.close()
        if unix:
            with contextlib.suppress(OSError):  # gone, or no longer ours to remove
                os.unlink(where)
