"""One framed connection plus per-call flow control, used by both ends of the RPC.

`Channel` is an `asyncio.BufferedProtocol`: the kernel writes straight into the parser's
buffers, and `send()` writes a frame with socket backpressure (`drain()`).

`CallState` is one call's two streams: frames received for it wait in a queue whose size the
sender cannot grow past `WINDOW` (it must hold credit, returned by `consumed()`), and
`send_stream()` waits for the peer's credit. So a slow consumer stalls only its own call and
neither side buffers more than a window per call.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Iterable
from typing import Any

from .wire import (
    MAX_HEADER,
    MAX_PAYLOAD,
    WINDOW,
    FrameError,
    FrameParser,
    Header,
    encode_header,
    frame_cost,
)

_SMALL = 64 << 10  # below this a frame is joined into one write


class Channel(asyncio.BufferedProtocol):
    """A framed connection. `on_frame` runs for each frame; `on_close` once at the end."""

    def __init__(
        self,
        on_frame: Callable[[Header, bytes], None],
        on_close: Callable[[BaseException | None], None],
        *,
        on_open: Callable[[], None] | None = None,
    ) -> None:
        self._on_frame = on_frame
        self._on_close = on_close
        self._on_open = on_open
        self.parser = FrameParser(self._deliver)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []

    def _deliver(self, header: Header, payload: bytes) -> None:
        if not self.closed:  # frames behind a fatal one in the same read are ignored
            self._on_frame(header, payload)

    # -- asyncio.BufferedProtocol --------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=4 * (1 << 20), low=1 << 20)
        if self._on_open is not None:
            self._on_open()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.parser.get_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        try:
            self.parser.feed(nbytes)
        except FrameError as exc:
            self.abort(exc)

    def eof_received(self) -> bool:
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers(None)

    def resume(
        self, parser: FrameParser, frames: Iterable[tuple[Header, bytes]], unsent: bytes
    ) -> None:
        """Carry on a connection another reader started (the guest's synchronous prelude):
        write the bytes it had queued, take over its parser (and the bytes it holds), then
        deliver the frames it parsed but did not handle. Call once connected."""
        assert self.transport is not None
        if unsent:
            self.transport.write(unsent)
        parser.set_handler(self._deliver)
        self.parser = parser
        for header, payload in frames:
            self._deliver(header, payload)

    # -- sending --------------------------------------------------------------------------
    def authenticated(self) -> None:
        """Lift the pre-handshake frame caps."""
        self.parser.set_limits(max_header=MAX_HEADER, max_payload=MAX_PAYLOAD)

    def send(self, header: Header, payload: bytes | bytearray | memoryview = b"") -> None:
        """Queue one frame (never blocks; pair with `drain()` for backpressure)."""
        if self.closed or self.transport is None:
            return
        head = encode_header(header, len(payload))
        if len(payload) < _SMALL:
            self.transport.write(head + payload if payload else head)
        else:
            self.transport.write(head)
            self.transport.write(payload)

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("connection closed")
        if not self._paused:
            return
        fut = asyncio.get_running_loop().create_future()
        self._drain_waiters.append(fut)
        await fut

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self._finish(None)

    def abort(self, exc: BaseException) -> None:
        """Drop the connection at once (malformed input)."""
        if self.transport is not None and not self.closed:
            self.transport.abort()
        self._finish(exc)

    def _finish(self, exc: BaseException | None) -> None:
        if self.closed:
            return
        self.closed = True
        self._wake_drainers(exc or ConnectionResetError("connection closed"))
        self._on_close(exc)

    def _wake_drainers(self, exc: BaseException | None) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for fut in waiters:
            if not fut.done():
                if exc is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(exc)


class FlowError(Exception):
    """The peer sent more stream data than the credit it was given."""


Item = tuple[Header, bytes]


class CallState:
    """Queues and credit of one call on a `Channel`."""

    def __init__(self, channel: Channel, call_id: int, *, credit: int = WINDOW) -> None:
        self.channel = channel
        self.id = call_id
        self._items: collections.deque[Item] = collections.deque()
        self._waiter: asyncio.Future[None] | None = None
        self._failure: BaseException | None = None
        self._send_credit = credit
        self._credit_waiters: list[asyncio.Future[None]] = []
        """Senders waiting for credit (an exec's stdout and stderr pumps may both wait)."""
        self._unacked = 0  # received stream bytes (costs) not yet given back
        self._consumed = 0  # consumed but not yet announced to the peer

    # -- receiving ------------------------------------------------------------------------
    def push(self, header: Header, payload: bytes, *, stream: bool) -> None:
        """Called by the frame dispatcher. Raises FlowError if the peer ignored credit."""
        if stream:
            self._unacked += frame_cost(len(payload))
            if self._unacked > WINDOW:
                raise FlowError(f"call {self.id}: peer exceeded the flow-control window")
        self._items.append((header, payload))
        self._wake()

    async def get(self) -> Item:
        while not self._items:
            if self._failure is not None:
                raise self._failure
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._items.popleft()

    def consumed(self, payload_len: int) -> None:
        """Give back the credit of one received stream frame once it has been used."""
        cost = frame_cost(payload_len)
        self._unacked -= cost
        self._consumed += cost
        if self._consumed >= WINDOW // 4:
            n, self._consumed = self._consumed, 0
            self.channel.send({"t": "credit", "id": self.id, "n": n})

    def fail(self, exc: BaseException) -> None:
        """End the call: pending and future `get()`/`send_stream()` raise `exc`."""
        if self._failure is None:
            self._failure = exc
        self._wake()
        self._wake_senders()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # -- sending --------------------------------------------------------------------------
    def add_credit(self, n: Any) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n <= 0 or n > WINDOW:
            raise FlowError(f"call {self.id}: invalid credit {n!r}")
        self._send_credit = min(self._send_credit + n, WINDOW)
        self._wake_senders()

    def _wake_senders(self) -> None:
        waiters, self._credit_waiters = self._credit_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    async def send_stream(self, header: Header, payload: bytes | bytearray | memoryview) -> None:
        """Send one stream frame once the peer has room for it."""
        cost = frame_cost(len(payload))
        while self._send_credit < cost:
            if self._failure is not None:
                raise self._failure
            fut = asyncio.get_running_loop().create_future()
            self._credit_waiters.append(fut)
            try:
                await fut
            finally:
                if fut in self._credit_waiters:
                    self._credit_waiters.remove(fut)
        if self._failure is not None:
            raise self._failure
        self._send_credit -= cost
        self.channel.send(header, payload)
        await self.channel.drain()


__all__ = ["CallState", "Channel", "FlowError"]
