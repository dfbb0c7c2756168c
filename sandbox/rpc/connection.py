"""The host end of one guest connection: connect (with fast retry), handshake, multiplexing.

Calls are numbered; frames for a call land in its `CallState` queue. When the connection
drops, every pending call fails with `ConnectionLost` (or the `ProtocolError` the guest gave
as its reason for closing).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.errors import ConnectionLost, ProtocolError, RpcError
from sandbox.guest.channel import CallState, Channel, FlowError
from sandbox.guest.wire import PROTOCOL_VERSION, Header
from sandbox.rpc.decode import error_from

FIRST_RETRY = 0.0005
MAX_RETRY = 0.01
_SOCKET_BUFFER = 1 << 20


class Connection:
    def __init__(self, address: str) -> None:
        self.address = address
        self.channel = Channel(self._on_frame, self._on_close)
        self.calls: dict[int, CallState] = {}
        self._ids = itertools.count(1)
        self._hello: asyncio.Future[Header] = asyncio.get_running_loop().create_future()
        self._refusal: RpcError | None = None
        self._closed = asyncio.get_running_loop().create_future()

    @property
    def closed(self) -> bool:
        return self.channel.closed

    # -- connecting -----------------------------------------------------------------------
    @classmethod
    async def open(
        cls,
        address: str,
        connect: Callable[[Callable[[], Channel]], Any],
        *,
        timeout: float,
        token: str | None = None,
    ) -> Connection:
        """Retry `connect` (0.5 ms doubling up to 10 ms) until the guest accepts, then hello."""
        conn = cls(address)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = FIRST_RETRY
        while True:
            try:
                await connect(lambda: conn.channel)
                break
            except (FileNotFoundError, ConnectionRefusedError) as exc:
                if loop.time() + delay > deadline:
                    raise ConnectionLost(
                        f"guest at {address} did not accept connections within {timeout}s ({exc})"
                    ) from exc
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_RETRY)
            except OSError as exc:
                raise ConnectionLost(f"cannot connect to the guest at {address}: {exc}") from exc
        conn._tune_socket()
        try:
            async with asyncio.timeout(max(deadline - loop.time(), 0.001)):
                await conn._handshake(token)
        except TimeoutError:
            conn.channel.close()
            raise ConnectionLost(f"guest at {address} did not answer the handshake") from None
        except BaseException:
            conn.channel.close()
            raise
        return conn

    def _tune_socket(self) -> None:
        # Bigger kernel buffers mean fewer wake-ups per MiB on bulk file transfers.
        transport = self.channel.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKET_BUFFER)

    async def _handshake(self, token: str | None) -> None:
        hello: Header = {"t": "hello", "v": PROTOCOL_VERSION}
        if token is not None:
            hello["token"] = token
        self.channel.send(hello)
        reply = await self._hello
        if reply.get("v") != PROTOCOL_VERSION:
            raise ProtocolError(
                f"protocol version mismatch: this client speaks {PROTOCOL_VERSION}, "
                f"the guest at {self.address} speaks {reply.get('v')!r}"
            )
        self.channel.authenticated()

    # -- calls ----------------------------------------------------------------------------
    def start(
        self, method: str, args: dict[str, Any], payload: bytes | memoryview = b""
    ) -> CallState:
        if self.channel.closed:
            raise self._lost()
        call_id = next(self._ids)
        state = CallState(self.channel, call_id)
        self.calls[call_id] = state
        self.channel.send({"t": "call", "id": call_id, "m": method, "a": args}, payload)
        return state

    async def receive(self, state: CallState) -> tuple[Header, bytes]:
        """The next ``data`` or ``result`` frame of a call; an ``error`` frame raises."""
        header, payload = await state.get()
        if header["t"] == "error":
            self.calls.pop(state.id, None)
            raise error_from(header)
        if header["t"] == "result":
            self.calls.pop(state.id, None)
            if not isinstance(header.get("r"), dict):
                raise ProtocolError("guest sent a result without an 'r' object")
        return header, payload

    def finish(self, state: CallState) -> None:
        """Forget a call; if the guest may still be working on it, tell it to stop."""
        if self.calls.pop(state.id, None) is not None and not self.channel.closed:
            self.channel.send({"t": "cancel", "id": state.id})

    async def aclose(self) -> None:
        self.channel.close()
        await asyncio.shield(self._closed)

    # -- frames from the guest ------------------------------------------------------------
    def _on_frame(self, header: Header, payload: bytes) -> None:
        kind, call_id = header["t"], header.get("id")
        try:
            if kind == "hello":
                if not self._hello.done():
                    self._hello.set_result(header)
                return
            if kind == "error" and call_id == 0:
                self._refusal = error_from(header)  # the guest closes right after
                if not self._hello.done():
                    self._hello.set_exception(self._refusal)
                return
            state = self.calls.get(call_id) if isinstance(call_id, int) else None
            if state is None:
                return  # a call we gave up on (cancelled, timed out)
            if kind == "data":
                state.push(header, payload, stream=True)
            elif kind in ("result", "error"):
                state.push(header, payload, stream=False)
            elif kind == "credit":
                state.add_credit(header.get("n"))
            else:
                raise ProtocolError(f"unexpected frame type {kind!r} from the guest")
        except (FlowError, ProtocolError) as exc:
            self._refusal = ProtocolError(f"guest broke the protocol: {exc}")
            self.channel.abort(exc)

    def _lost(self) -> RpcError:
        if self._refusal is not None:
            return type(self._refusal)(self._refusal.message, reason=self._refusal.reason)
        return ConnectionLost(f"connection to the guest at {self.address} was lost")

    def _on_close(self, exc: BaseException | None) -> None:
        if not self._hello.done():
            self._hello.set_exception(self._lost())
            self._hello.exception()  # retrieved here so an unawaited hello does not warn
        for state in self.calls.values():
            state.fail(self._lost())
        self.calls.clear()
        if not self._closed.done():
            self._closed.set_result(None)


async def unix_connect(path: str | Path, factory: Callable[[], Channel]) -> None:
    await asyncio.get_running_loop().create_unix_connection(factory, str(path))


async def tcp_connect(host: str, port: int, factory: Callable[[], Channel]) -> None:
    await asyncio.get_running_loop().create_connection(factory, host, port)
