"""envd over `E2B_SANDBOX_URL`: the Process and Filesystem Connect-RPC services and the plain
`/files` upload/download, each call mapped onto the public `sandbox.Sandbox` API.

Commands run as the sandbox's one non-root user, E2B's `user` (another `user=` is refused in
common.sandbox_for); `/home/user` is the
workspace (paths are translated both ways). Commands with stdin run through `Sandbox.pipe`
(stderr arrives at the end); `commands.connect` follows a running command from then on.
A PTY is the engine's TTY exec (runtime/e2b/pty.py). Streamed input (`stream_input`) is
delivered message by message as it arrives.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email.message
import posixpath
import stat as statmod
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from runtime.api.downloads import file_response
from runtime.api.quotas import LeasedStreamingResponse, StreamLease
from runtime.e2b import homes, watch
from runtime.e2b.common import (
    WORKSPACE,
    Command,
    E2BError,
    E2BState,
    Unsupported,
    sandbox_for,
    status_of,
    stream_sandbox,
    to_corral,
    to_e2b,
)
from runtime.e2b.connect import (
    END_STREAM,
    STREAM_MEDIA,
    b64,
    end_stream,
    envelope,
    read_request,
    request_messages,
    timeout_of,
)
from runtime.e2b.pty import pty_frames, size_of
from runtime.e2b.routes import ConnectRoute, E2BRoute
from runtime.errors import NotFound
from sandbox.api import Sandbox
from sandbox.errors import SandboxError
from sandbox.pty import Pty
from sandbox.types import FileInfo

STREAM_QUEUE = 64


def router(e2b: E2BState) -> APIRouter:
    r = APIRouter(route_class=ConnectRoute, tags=["e2b"], include_in_schema=False)

    # -- process ------------------------------------------------------------------------
    async def start(request: Request) -> Response:
        lease: StreamLease | None = None
        try:
            sb, lease = await stream_sandbox(request, e2b)
            msg = await read_request(request)
            proc = msg.get("process") or {}
            cmd = str(proc.get("cmd") or "")
            if not cmd:
                raise E2BError(400, "process.cmd is required")
            args = [str(a) for a in proc.get("args") or []]
            envs = {str(k): str(v) for k, v in (proc.get("envs") or {}).items()}
            cwd, pwd = await homes.start_in(e2b, sb, str(proc.get("cwd") or "") or None)
            command = Command(e2b.next_pid(), cmd, args, envs, to_e2b(cwd), msg.get("tag"), pwd)
            if msg.get("pty") is not None:
                rows, cols = size_of(msg["pty"])
                command.pty = await Pty.start(
                    sb,
                    [cmd, *args],
                    cwd=cwd,
                    env={**sb.env, **command.env()},
                    rows=rows,
                    cols=cols,
                )
        except Exception as exc:
            if lease is not None:
                lease.release()
            status, message = status_of(exc) if not isinstance(exc, ValueError) else (400, str(exc))
            return _stream_response(_one(end_stream(status, message)))
        if command.pty is not None:
            frames = pty_frames(e2b, sb, command, command.pty, timeout_of(request))
        elif msg.get("stdin"):
            frames = _run_piped(e2b, sb, command, cwd, timeout_of(request))
        else:
            frames = _run(e2b, sb, command, cwd, timeout_of(request))
        return _leased(_published(command, frames), lease)

    r.add_api_route("/process.Process/Start", start, methods=["POST"])

    async def list_(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        procs = e2b.commands.get(sb.id, {}).values()
        return {
            "processes": [
                {
                    "pid": c.pid,
                    "tag": c.tag,
                    "config": {"cmd": c.cmd, "args": c.args, "envs": c.envs, "cwd": c.cwd},
                }
                for c in procs
            ]
        }

    r.add_api_route("/process.Process/List", list_, methods=["POST"])

    async def send_signal(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        selector = msg.get("process") or {}
        procs = e2b.commands.get(sb.id, {})
        found = [
            c
            for c in procs.values()
            if ("pid" in selector and c.pid == int(selector["pid"]))
            or ("tag" in selector and c.tag == selector["tag"])
        ]
        if not found:
            raise E2BError(404, f"process {selector} not found")
        for c in found:
            if c.pty is not None:
                await c.pty.kill(sb)
            elif c.pipe is not None:
                c.stopped.set()
            elif c.task is not None:
                c.task.cancel()
        return {}

    r.add_api_route("/process.Process/SendSignal", send_signal, methods=["POST"])

    async def send_input(request: Request) -> dict[str, Any]:
        command = await _selected(request)
        await _deliver(command, (await read_request(request)).get("input") or {})
        return {}

    async def stream_input(request: Request) -> Response:
        """Client-streamed input (`stream_input`): a `start` naming the process, then `data`
        messages, each delivered as it arrives (the whole stream is capped like any body)."""
        try:
            sb = await sandbox_for(request, e2b)
            command: Command | None = None
            async for msg in request_messages(request):
                if "start" in msg:
                    selector = (msg.get("start") or {}).get("process") or {}
                    command = _find(e2b, sb, selector)
                elif "data" in msg:
                    if command is None:
                        raise E2BError(400, "stream_input: data before start")
                    await _deliver(command, (msg.get("data") or {}).get("input") or {})
        except Exception as exc:
            status, message = (400, str(exc)) if isinstance(exc, ValueError) else status_of(exc)
            return _stream_response(_one(end_stream(status, message)))
        return _stream_response(_one(envelope({}) + end_stream()))

    r.add_api_route("/process.Process/StreamInput", stream_input, methods=["POST"])

    async def close_stdin(request: Request) -> dict[str, Any]:
        command = await _selected(request)
        if command.pipe is None:
            raise E2BError(400, f"process {command.pid} was not started with stdin=True")
        command.pipe.close_stdin()
        return {}

    async def _selected(request: Request) -> Command:
        sb = await sandbox_for(request, e2b)
        return _find(e2b, sb, (await read_request(request)).get("process") or {})

    async def connect(request: Request) -> Response:
        """Follow a running command from another handle: its output from now on, and its end."""
        lease: StreamLease | None = None
        try:
            sb, lease = await stream_sandbox(request, e2b)
            command = _find(e2b, sb, (await read_request(request)).get("process") or {})
        except Exception as exc:
            if lease is not None:
                lease.release()
            status, message = (400, str(exc)) if isinstance(exc, ValueError) else status_of(exc)
            return _stream_response(_one(end_stream(status, message)))
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        command.listeners.append(queue)
        return _leased(_follow(command, queue), lease)

    async def update(request: Request) -> dict[str, Any]:
        """Resize a PTY (the only update envd has)."""
        command = await _selected(request)
        pty = (await read_request(request)).get("pty")
        if pty is None:
            return {}
        if command.pty is None:
            raise E2BError(400, f"process {command.pid} was not started with a PTY")
        await command.pty.resize(*size_of(pty))
        return {}

    r.add_api_route("/process.Process/Update", update, methods=["POST"])
    r.add_api_route("/process.Process/Connect", connect, methods=["POST"])
    r.add_api_route("/process.Process/SendInput", send_input, methods=["POST"])
    r.add_api_route("/process.Process/CloseStdin", close_stdin, methods=["POST"])

    # -- filesystem ---------------------------------------------------------------------
    async def stat(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        path = to_corral(str(msg.get("path") or ""))
        return {"entry": _entry(await sb.files.stat(path), path)}

    async def make_dir(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        path = to_corral(str(msg.get("path") or ""))
        with contextlib.suppress(SandboxError):
            await sb.files.stat(path)
            raise E2BError(409, f"{to_e2b(path)} already exists")
        await sb.files.mkdir(path, parents=True)
        return {"entry": _entry(await sb.files.stat(path), path)}

    async def move(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        src = to_corral(str(msg.get("source") or ""))
        dst = to_corral(str(msg.get("destination") or ""))
        await sb.files.move(src, dst)
        return {"entry": _entry(await sb.files.stat(dst), dst)}

    async def list_dir(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        path = to_corral(str(msg.get("path") or ""))
        depth = max(1, int(msg.get("depth") or 1))
        infos = await sb.files.list(path, recursive=depth > 1)
        base = _abs(path)
        entries = []
        for info in infos:
            full = _abs(info.path)
            rel = posixpath.relpath(full, base)
            if rel == "." or rel.startswith("..") or rel.count("/") >= depth:
                continue
            entries.append(_entry(info, full))
        return {"entries": entries}

    async def remove(request: Request) -> dict[str, Any]:
        sb = await sandbox_for(request, e2b)
        msg = await read_request(request)
        await sb.files.remove(to_corral(str(msg.get("path") or "")), recursive=True)
        return {}

    for name, handler in (
        ("Stat", stat),
        ("MakeDir", make_dir),
        ("Move", move),
        ("ListDir", list_dir),
        ("Remove", remove),
    ):
        r.add_api_route(f"/filesystem.Filesystem/{name}", handler, methods=["POST"])

    async def watch_dir(request: Request) -> Response:
        frames, lease = await watch.watch_dir_frames(request, e2b)
        return _stream_response(frames) if lease is None else _leased(frames, lease)

    async def create_watcher(request: Request) -> dict[str, Any]:
        return await watch.create_watcher(request, e2b)

    async def get_watcher_events(request: Request) -> dict[str, Any]:
        return await watch.get_watcher_events(request, e2b)

    async def remove_watcher(request: Request) -> dict[str, Any]:
        return await watch.remove_watcher(request, e2b)

    watching: tuple[tuple[str, Any], ...] = (
        ("WatchDir", watch_dir),
        ("CreateWatcher", create_watcher),
        ("GetWatcherEvents", get_watcher_events),
        ("RemoveWatcher", remove_watcher),
    )
    for name, endpoint in watching:
        r.add_api_route(f"/filesystem.Filesystem/{name}", endpoint, methods=["POST"])

    for service in ("process.Process", "filesystem.Filesystem"):  # methods newer than ours
        r.add_api_route(
            f"/{service}/{{method}}", _refuse(e2b, f"envd method {service}"), methods=["POST"]
        )

    # -- plain HTTP ---------------------------------------------------------------------
    files = APIRouter(route_class=E2BRoute, include_in_schema=False)

    async def download(request: Request, path: str) -> Response:
        return await file_response(await sandbox_for(request, e2b), to_corral(path))

    async def upload(request: Request) -> Response:
        sb = await sandbox_for(request, e2b)
        ctype = request.headers.get("content-type", "")
        written: list[dict[str, str]] = []
        if ctype.startswith("multipart/form-data"):
            default = request.query_params.get("path")
            for filename, data in _multipart(ctype, await request.body()):
                name = default or filename
                if not name:
                    raise E2BError(400, "a file part without a path")
                target = to_corral(name)
                await sb.files.write(target, data)
                written.append(
                    {"name": posixpath.basename(target), "type": "file", "path": to_e2b(target)}
                )
        else:
            if request.headers.get("content-encoding"):
                raise Unsupported("compressed uploads (gzip)")
            query_path = request.query_params.get("path")
            if not query_path:
                raise E2BError(400, "path is required")
            target = to_corral(query_path)

            async def chunks() -> AsyncIterator[bytes]:
                async for chunk in request.stream():
                    if chunk:
                        yield chunk

            await sb.files.upload(target, chunks())
            written.append(
                {"name": posixpath.basename(target), "type": "file", "path": to_e2b(target)}
            )
        return JSONResponse(written)

    async def health(request: Request) -> Response:
        """envd's liveness: 502 (the SDK's "not running") once the sandbox is gone."""
        try:
            await sandbox_for(request, e2b)
        except NotFound:
            return Response(status_code=502)
        return Response(status_code=204)

    files.add_api_route("/files", download, methods=["GET"])
    files.add_api_route("/files", upload, methods=["POST"])
    files.add_api_route("/health", health, methods=["GET"])
    r.include_router(files)
    return r


def _multipart(ctype: str, body: bytes) -> list[tuple[str, bytes]]:
    """(filename, content) of each part of a `multipart/form-data` body."""
    params = email.message.Message()
    params["content-type"] = ctype
    boundary = params.get_param("boundary")
    if not isinstance(boundary, str) or not boundary:
        raise E2BError(400, "multipart body without a boundary")
    delimiter = b"--" + boundary.encode()
    parts: list[tuple[str, bytes]] = []
    for chunk in body.split(delimiter)[1:]:
        if chunk.startswith(b"--"):
            break
        head, sep, content = chunk.partition(b"\r\n\r\n")
        if not sep:
            raise E2BError(400, "malformed multipart body")
        headers = email.message.Message()
        for line in head.decode("utf-8", "replace").strip().splitlines():
            key, _, value = line.partition(":")
            headers[key.strip()] = value.strip()
        filename = headers.get_param("filename", header="content-disposition")
        parts.append((filename if isinstance(filename, str) else "", content.removesuffix(b"\r\n")))
    return parts


def _refuse(e2b: E2BState, feature: str) -> Any:
    async def refuse(request: Request) -> Response:
        await sandbox_for(request, e2b)
        if request.headers.get("content-type", "").startswith(STREAM_MEDIA):
            return _stream_response(_one(end_stream(501, _message(feature))))
        raise Unsupported(feature)

    return refuse


def _message(feature: str) -> str:
    return Unsupported(feature).message


async def _published(command: Command, frames: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The command's own stream, copied (after its start event) to `commands.connect`."""
    first = True
    try:
        async for frame in frames:
            if not first:
                command.publish(frame)
            first = False
            yield frame
    finally:
        command.publish(None)


async def _follow(command: Command, queue: asyncio.Queue[bytes | None]) -> AsyncIterator[bytes]:
    ended = False
    try:
        yield envelope({"event": {"start": {"pid": command.pid}}})
        while (frame := await queue.get()) is not None:
            ended = frame[0] == END_STREAM
            yield frame
        if not ended:
            yield end_stream()
    finally:
        with contextlib.suppress(ValueError):
            command.listeners.remove(queue)


async def _one(frame: bytes) -> AsyncIterator[bytes]:
    yield frame


def _stream_response(frames: AsyncIterator[bytes]) -> StreamingResponse:
    return StreamingResponse(frames, media_type=STREAM_MEDIA)


def _leased(frames: AsyncIterator[bytes], lease: StreamLease) -> StreamingResponse:
    """A stream holding a slot of its owner's stream ceiling until it ends."""
    return LeasedStreamingResponse(frames, lease, media_type=STREAM_MEDIA)


async def _run(
    e2b: E2BState, sb: Sandbox, command: Command, cwd: str, timeout: float | None
) -> AsyncIterator[bytes]:
    """One command as envd's event stream: start, data..., end, end of stream."""
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(STREAM_QUEUE)

    async def on_output(stream: str, data: bytes) -> None:
        await queue.put((stream, data))

    async def run() -> Any:
        try:
            return await sb.exec(
                [command.cmd, *command.args],
                cwd=cwd,
                env=command.env() or None,
                timeout=timeout,
                on_output=on_output,
            )
        finally:
            await queue.put(None)

    procs = e2b.commands.setdefault(sb.id, {})
    task = asyncio.create_task(run())
    command.task = task
    procs[command.pid] = command
    try:
        yield envelope({"event": {"start": {"pid": command.pid}}})
        while (item := await queue.get()) is not None:
            stream, data = item
            yield envelope({"event": {"data": {stream: b64(data)}}})
        try:
            result = await task
        except asyncio.CancelledError:
            end = {"exitCode": -1, "exited": False, "status": "signal: killed"}
            yield envelope({"event": {"end": end}})
            yield end_stream()
            return
        except SandboxError as exc:
            status, message = status_of(exc)
            yield end_stream(status, message)
            return
        end = {
            "exitCode": result.exit_code,
            "exited": result.signal is None,
            "status": f"exit status {result.exit_code}"
            if result.signal is None
            else f"signal: {result.signal}",
        }
        if result.timed_out:  # the request's deadline: Connect's deadline_exceeded, which
            # the SDK raises as TimeoutException (an end event would be exit code 124)
            yield end_stream(504, "command timed out")
            return
        yield envelope({"event": {"end": end}})
        yield end_stream()
    finally:
        procs.pop(command.pid, None)
        if not task.done():  # the client went away: stop the command
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, SandboxError):
                await task


async def _run_piped(
    e2b: E2BState, sb: Sandbox, command: Command, cwd: str, timeout: float | None
) -> AsyncIterator[bytes]:
    """A command with stdin (`Sandbox.pipe`): stdout streamed, stderr at the end."""
    procs = e2b.commands.setdefault(sb.id, {})
    try:
        pipe = await sb.pipe([command.cmd, *command.args], cwd=cwd, env=command.env() or None)
    except SandboxError as exc:
        yield end_stream(*status_of(exc))
        return
    command.pipe = pipe
    procs[command.pid] = command
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    try:
        yield envelope({"event": {"start": {"pid": command.pid}}})
        while True:
            left = None if deadline is None else max(0.0, deadline - loop.time())
            reading = asyncio.ensure_future(pipe.read())
            stopping = asyncio.ensure_future(command.stopped.wait())
            done, _ = await asyncio.wait(
                {reading, stopping}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            stopping.cancel()
            if reading not in done:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError, SandboxError, ConnectionError):
                    await reading
                if command.stopped.is_set():
                    killed = {"exitCode": -1, "exited": False, "status": "signal: killed"}
                    yield envelope({"event": {"end": killed}})
                    yield end_stream()
                else:
                    yield end_stream(504, "command timed out")
                return
            data = reading.result()
            if not data:
                break
            yield envelope({"event": {"data": {"stdout": b64(data)}}})
        result = pipe.result or {}
        if result.get("stderr"):
            stderr = str(result["stderr"]).encode()
            yield envelope({"event": {"data": {"stderr": b64(stderr)}}})
        code = int(result.get("exit_code", -1))
        end: dict[str, Any] = {"exitCode": code, "exited": result.get("signal") is None}
        end["status"] = f"exit status {code}"
        yield envelope({"event": {"end": end}})
        yield end_stream()
    except SandboxError as exc:
        yield end_stream(*status_of(exc))
    finally:
        procs.pop(command.pid, None)
        await pipe.aclose()


def _find(e2b: E2BState, sb: Sandbox, selector: dict[str, Any]) -> Command:
    """The running command a `ProcessSelector` (pid or tag) names."""
    for c in e2b.commands.get(sb.id, {}).values():
        if ("pid" in selector and c.pid == int(selector["pid"])) or (
            "tag" in selector and c.tag == selector["tag"]
        ):
            return c
    raise E2BError(404, f"process {selector} not found")


async def _deliver(command: Command, data: dict[str, Any]) -> None:
    """One `ProcessInput` (stdin or pty bytes) to the command it is for."""
    if "pty" in data:
        if command.pty is None:
            raise E2BError(400, f"process {command.pid} was not started with a PTY")
        await command.pty.write(base64.b64decode(str(data.get("pty") or "")))
        return
    if command.pty is not None:
        raise E2BError(400, f"process {command.pid} has a PTY: send its input as pty")
    if command.pipe is None:
        raise E2BError(400, f"process {command.pid} was not started with stdin=True")
    await command.pipe.write(base64.b64decode(str(data.get("stdin") or "")))


def _abs(path: str) -> str:
    """A Corral file path (relative to the workspace or absolute) as an absolute path."""
    if path.startswith("/"):
        return posixpath.normpath(path)
    return posixpath.normpath(posixpath.join(WORKSPACE, path))


def _entry(info: FileInfo, path: str) -> dict[str, Any]:
    full = _abs(path)
    kind = "FILE_TYPE_DIRECTORY" if info.is_dir else "FILE_TYPE_FILE"
    if info.is_symlink:
        kind = "FILE_TYPE_SYMLINK"
    return {
        "name": posixpath.basename(full) or "/",
        "type": kind,
        "path": to_e2b(full),
        "size": info.size,
        "mode": info.mode,
        "permissions": statmod.filemode(
            info.mode | (statmod.S_IFDIR if info.is_dir else statmod.S_IFREG)
        ),
        "owner": "user",
        "group": "user",
        "modifiedTime": datetime.fromtimestamp(info.mtime, UTC).isoformat().replace("+00:00", "Z"),
        "isSymlink": info.is_symlink,
    }
