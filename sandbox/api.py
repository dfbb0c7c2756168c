"""`Sandbox`: the one obvious entry point of the sandbox package.

    async with await Sandbox.create(SandboxSpec(image="corral/base")) as sb:
        r = await sb.exec("echo hi")
        await sb.files.write("/workspace/a.txt", b"...")

A Sandbox is a handle (from a backend) plus an RPC connection to the guest inside it.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from sandbox.backends.base import Backend, SandboxHandle, SandboxStatus
from sandbox.browser import Browser
from sandbox.errors import ConnectionLost, SandboxDied, SandboxError
from sandbox.interp import Interpreter
from sandbox.rpc import RpcClient
from sandbox.rpc.client import ProcessPipe
from sandbox.spec import SandboxSpec
from sandbox.types import ExecResult, FileInfo, PythonResult

if TYPE_CHECKING:
    from sandbox.backends.docker import DockerBackend
    from sandbox.egress import Refusal

T = TypeVar("T")
OutputCallback = Callable[[str, bytes], Awaitable[None] | None]
CONNECT_TIMEOUT = 30.0


class Files:
    """File operations inside the sandbox; every path resolves strictly inside the workspace."""

    def __init__(self, sandbox: Sandbox) -> None:
        self._sb = sandbox

    async def read(self, path: str) -> bytes:
        return await self._sb._call(self._sb.rpc.read(path))

    async def write(self, path: str, data: bytes | str, *, mode: int = 0o644) -> None:
        payload = data.encode() if isinstance(data, str) else data
        await self._sb._call(self._sb.rpc.write(path, payload, mode=mode))

    async def list(self, path: str = ".", *, recursive: bool = False) -> list[FileInfo]:
        return await self._sb._call(self._sb.rpc.list(path, recursive=recursive))

    async def stat(self, path: str) -> FileInfo:
        return await self._sb._call(self._sb.rpc.stat(path))

    async def remove(self, path: str, *, recursive: bool = False) -> None:
        await self._sb._call(self._sb.rpc.remove(path, recursive=recursive))

    async def mkdir(self, path: str, *, parents: bool = True) -> None:
        await self._sb._call(self._sb.rpc.mkdir(path, parents=parents))

    async def move(self, src: str, dst: str) -> None:
        await self._sb._call(self._sb.rpc.move(src, dst))

    async def upload(self, path: str, chunks: AsyncIterable[bytes], *, mode: int = 0o644) -> None:
        await self._sb._call(self._sb.rpc.upload(path, chunks, mode=mode))

    def download(self, path: str) -> AsyncIterator[bytes]:
        self._sb._touch()
        return self._sb.rpc.download(path)

    def tar(self, path: str = ".") -> AsyncIterator[bytes]:
        self._sb._touch()
        return self._sb.rpc.tar(path)


class Sandbox:
    def __init__(
        self,
        handle: SandboxHandle,
        backend: Backend,
        rpc: RpcClient,
        *,
        owns_backend: bool = False,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.handle = handle
        self.backend = backend
        self.rpc = rpc
        self.files = Files(self)
        self.browser = Browser(self)
        """The sandbox's headless Chromium (image corral/browser); see sandbox/browser.py."""
        self.interpreter = Interpreter(rpc, self._call, self._touch)
        """Named Python contexts with streamed output and rich results; see sandbox/interp.py."""
        self.env: dict[str, str] = dict(env or {})
        """Per-run environment applied to every exec (how pooled sandboxes get run env)."""
        self._owns_backend = owns_backend
        self._closed = False
        self._last_touch = 0.0

    @property
    def id(self) -> str:
        return self.handle.id

    @property
    def spec(self) -> SandboxSpec:
        return self.handle.spec

    # -- construction ---------------------------------------------------------------------
    @classmethod
    async def create(
        cls,
        spec: SandboxSpec | None = None,
        *,
        backend: Backend | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Sandbox:
        """Provision a new sandbox and connect to it. Without `backend`, a DockerBackend
        for `$CORRAL_HOME` is created and owned (closed with the sandbox)."""
        spec = spec or SandboxSpec()
        owns = backend is None
        be: Backend = backend or _default_backend()
        try:
            handle = await be.create(spec, labels=labels)
        except BaseException:
            if owns:
                await be.aclose()
            raise
        try:
            rpc = await _connect(be, handle)
        except BaseException:
            await be.destroy(handle.id)
            if owns:
                await be.aclose()
            raise
        sb = cls(handle, be, rpc, owns_backend=owns)
        sb._touch()  # the idle clock starts now, not when the container was asked for
        return sb

    @classmethod
    async def attach(cls, sandbox_id: str, *, backend: Backend | None = None) -> Sandbox:
        """Connect to an existing sandbox (e.g. one a previous process created)."""
        owns = backend is None
        be: Backend = backend or _default_backend()
        try:
            handle = await be.get(sandbox_id)
            rpc = await _connect(be, handle)
        except BaseException:
            if owns:
                await be.aclose()
            raise
        return cls(handle, be, rpc, owns_backend=owns)

    async def __aenter__(self) -> Sandbox:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.destroy()

    # -- tools ----------------------------------------------------------------------------
    async def exec(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bytes | None = None,
        timeout: float | None = None,
        output_limit: int | None = None,
        on_output: OutputCallback | None = None,
    ) -> ExecResult:
        merged = {**self.env, **(env or {})}
        return await self._call(
            self.rpc.exec(
                command,
                cwd=cwd,
                env=merged or None,
                stdin=stdin,
                timeout=timeout,
                output_limit=output_limit if output_limit is not None else self.spec.output_limit,
                on_output=on_output,
            )
        )

    async def python(self, code: str, *, timeout: float | None = None) -> PythonResult:
        return await self._call(self.rpc.python(code, timeout=timeout))

    async def python_restart(self) -> None:
        await self._call(self.rpc.python_restart())

    async def spawn(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> str:
        merged = {**self.env, **(env or {})}
        return await self._call(self.rpc.spawn(command, cwd=cwd, env=merged or None))

    async def pipe(
        self,
        command: str | list[str],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ProcessPipe:
        """Start a process with its stdin and stdout as a byte stream (`ProcessPipe`: `write`,
        `close_stdin`, `read` until ``b""``, `aclose` kills it). For line protocols such as an
        MCP server over stdio; unlike `spawn`, it dies with the pipe."""
        merged = {**self.env, **(env or {})}
        return await self._call(self.rpc.pipe(command, cwd=cwd, env=merged or None))

    async def network_refusals(self, offset: int = 0) -> tuple[list[Refusal], int]:
        """Requests the egress proxy refused for this sandbox (`network: allowlist`), read
        from byte `offset` of the proxy's log; returns them and the offset to pass next time."""
        reader = getattr(self.backend, "network_refusals", None)
        if reader is None:
            return [], offset
        refusals: list[Refusal]
        refusals, new_offset = await reader(self.id, offset)
        return refusals, new_offset

    # -- lifecycle ------------------------------------------------------------------------
    async def status(self) -> SandboxStatus:
        return await self.backend.status(self.id)

    async def pause(self) -> None:
        await self.backend.pause(self.id)

    async def resume(self) -> None:
        await self.backend.resume(self.id)

    async def close(self) -> None:
        """Disconnect but keep the sandbox running (for follow-ups)."""
        if self._closed:
            return
        self._closed = True
        await self.rpc.aclose()
        if self._owns_backend:
            await self.backend.aclose()

    async def destroy(self) -> None:
        """Disconnect and remove the sandbox with everything in it."""
        if not self._closed:
            self._closed = True
            try:
                await self.rpc.aclose()
            finally:
                await self.backend.destroy(self.id)
                if self._owns_backend:
                    await self.backend.aclose()

    # -- internals ------------------------------------------------------------------------
    def _touch(self) -> None:
        now = time.monotonic()
        if now - self._last_touch > 1.0:  # the idle clock needs seconds, not every call
            self._last_touch = now
            touch = getattr(self.backend, "touch", None)
            if touch is not None:
                touch(self.handle)

    async def _call(self, aw: Awaitable[T]) -> T:
        if self._closed:
            raise SandboxError(f"sandbox {self.id} is closed", reason="closed")
        self._touch()
        try:
            return await aw
        except ConnectionLost as exc:
            raise await self._death(exc) from exc

    async def _death(self, exc: ConnectionLost) -> SandboxError:
        """The guest went away: say why (OOM, exit, removal) instead of a socket error."""
        try:
            st = await self.backend.status(self.id)
        except SandboxError:
            return SandboxDied(f"sandbox {self.id} is gone (removed)", reason="removed")
        if st.running:
            return exc
        reason = "oom" if st.oom_killed else "exited"
        return SandboxDied(f"sandbox {self.id} died: {st.reason()}", reason=reason)


async def _connect(backend: Backend, handle: SandboxHandle) -> RpcClient:
    try:
        _check_channel(handle.rpc_path)
        return await RpcClient.connect(handle.rpc_path, timeout=CONNECT_TIMEOUT)
    except (ConnectionLost, TimeoutError, OSError, SandboxError) as exc:
        try:
            st = await backend.status(handle.id)
        except SandboxError:
            raise SandboxDied(
                f"sandbox {handle.id} vanished while starting", reason="removed"
            ) from exc
        if st.oom_killed:
            raise SandboxDied(f"sandbox {handle.id} died: {st.reason()}", reason="oom") from exc
        if not st.running:
            hint = f" (does image {handle.spec.image} have python3?)" if st.exit_code == 127 else ""
            raise SandboxDied(
                f"sandbox {handle.id} is not running: {st.reason()}{hint}",
                reason="start_failed",
            ) from exc
        raise


def _check_channel(socket_path: Path) -> None:
    """Refuse a socket whose folder anyone but this process could have changed.

    The folder is created 0700 by the controller and only the guest's root-started server
    writes in it; a symlink, another owner or group/other write bits mean it is not ours, and
    a socket there could lead to another sandbox.
    """
    try:
        st = os.lstat(socket_path.parent)
    except FileNotFoundError:
        return  # not created yet / already removed: connecting reports that
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise SandboxError(
            f"refusing the channel at {socket_path}: its folder is not the controller's alone",
            reason="channel_untrusted",
        )


def _default_backend() -> DockerBackend:
    from sandbox.backends.docker import DockerBackend
    from sandbox.home import default_home

    return DockerBackend(default_home())
