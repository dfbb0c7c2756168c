"""A stdio MCP server inside the sandbox, as the SDK's transport streams.

The server runs through `Sandbox.pipe` (its stdin and stdout are one RPC call's streams), so
it sees the sandbox's files and network policy and dies with the run. Its stdout is hostile
input to the controller: a line longer than `MAX_LINE` ends the connection rather than
growing a buffer without bound, and a line that is not JSON-RPC is handed to the session as
an error value, as the SDK's own stdio client does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import anyio
from mcp import types
from mcp.client._transport import TransportStreams
from mcp.shared.message import SessionMessage

from sandbox.api import Sandbox

MAX_LINE = 16 * 1024 * 1024

__all__ = ["MAX_LINE", "TransportStreams", "sandbox_stdio"]


@contextlib.asynccontextmanager
async def sandbox_stdio(
    sandbox: Sandbox,
    argv: list[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> AsyncIterator[TransportStreams]:
    pipe = await sandbox.pipe(argv, cwd=cwd, env=env)
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)

    async def reader() -> None:
        buf = b""
        async with read_writer:
            try:
                while chunk := await pipe.read():
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        if line.strip():
                            await read_writer.send(_parse(line))
                    if len(buf) > MAX_LINE:
                        await read_writer.send(
                            ValueError(f"MCP server wrote a line over {MAX_LINE} bytes")
                        )
                        return
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except Exception as exc:  # the sandbox refused the command, or went away
                with contextlib.suppress(anyio.ClosedResourceError, anyio.BrokenResourceError):
                    await read_writer.send(exc)

    async def writer() -> None:
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                    await pipe.write(data.encode() + b"\n")
        except Exception:  # the process or the sandbox is gone: end the session's reads
            await read_writer.aclose()

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            tg.start_soon(writer)
            try:
                yield read_stream, write_stream
            finally:
                tg.cancel_scope.cancel()
    finally:
        with anyio.CancelScope(shield=True):
            pipe.close_stdin()
            await pipe.aclose()
            for stream in (read_stream, write_stream, read_writer, write_reader):
                await stream.aclose()


def _parse(line: bytes) -> SessionMessage | Exception:
    try:
        return SessionMessage(types.jsonrpc_message_adapter.validate_json(line, by_name=False))
    except ValueError as exc:
        return exc
