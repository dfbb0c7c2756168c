"""Flow control on one call: every sender waiting for credit wakes when credit comes."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox.guest.channel import CallState
from sandbox.guest.wire import WINDOW, frame_cost


class _Sink:
    """Stands in for the Channel a CallState sends through."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        self.sent.append(header)

    async def drain(self) -> None:
        return None


async def test_two_senders_waiting_for_credit_both_proceed() -> None:
    sink = _Sink()
    state = CallState(sink, 1, credit=0)  # type: ignore[arg-type]
    out = asyncio.ensure_future(state.send_stream({"t": "data", "s": "stdout"}, b"a" * 10))
    err = asyncio.ensure_future(state.send_stream({"t": "data", "s": "stderr"}, b"b" * 10))
    await asyncio.sleep(0)
    assert not out.done() and not err.done()
    state.add_credit(2 * frame_cost(10))
    await asyncio.wait_for(asyncio.gather(out, err), timeout=10)
    assert sorted(h["s"] for h in sink.sent) == ["stderr", "stdout"]


async def test_a_failed_call_wakes_every_waiting_sender() -> None:
    state = CallState(_Sink(), 2, credit=0)  # type: ignore[arg-type]
    senders = [
        asyncio.ensure_future(state.send_stream({"t": "data"}, b"x" * (WINDOW // 2)))
        for _ in range(3)
    ]
    await asyncio.sleep(0)
    state.fail(ConnectionResetError("gone"))
    results = await asyncio.wait_for(asyncio.gather(*senders, return_exceptions=True), 10)
    assert all(isinstance(r, ConnectionResetError) for r in results)
