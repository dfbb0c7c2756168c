"""The proxy itself, against a fake owner (httpx.MockTransport): the target is always the
registered owner whatever the path or headers say, bodies stream both ways, the internal
header is set by the forwarder (a client's copy is dropped), and a silent owner is refused
before anything is sent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from runtime.errors import NodeUnavailable
from runtime.fleet.forward import FORWARDED_BY, Forwarder

OWNER = "http://10.0.0.7:8000"


def scope(path: bytes, headers: list[tuple[bytes, bytes]], method: str = "PUT") -> dict[str, Any]:
    return {
        "type": "http",
        "method": method,
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"stream=true",
        "headers": headers,
    }


async def test_target_is_the_registered_owner_and_bodies_stream() -> None:
    seen: list[httpx.Request] = []

    async def owner(request: httpx.Request) -> httpx.Response:
        body = b"".join([chunk async for chunk in request.stream])  # type: ignore[union-attr]
        seen.append(request)

        async def answer() -> AsyncIterator[bytes]:  # a stream, as a real owner's answer is
            yield body[::-1]

        return httpx.Response(201, content=answer(), headers={"x-owner": "yes"})

    chunks = [b"abc", b"def", b""]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    fwd = Forwarder("node_me", transport=httpx.MockTransport(owner))
    headers = [
        (b"host", b"evil.example"),
        (b"x-forwarded-host", b"evil.example"),
        (FORWARDED_BY.encode(), b"node_forged"),
        (b"x-goog-api-key", b"k"),
    ]
    try:
        await fwd.forward(
            scope(b"//evil.example/v1beta/sandboxes/sb-1/files/a", headers),
            receive,
            send,
            owner="node_owner",
            url=OWNER,
            heartbeat_at=datetime.now(UTC),
        )
    finally:
        await fwd.aclose()
    req = seen[0]
    assert (req.url.host, req.url.port) == ("10.0.0.7", 8000)
    assert req.url.path == "/evil.example/v1beta/sandboxes/sb-1/files/a"
    assert req.url.query == b"stream=true"
    assert req.headers["host"] == "10.0.0.7:8000"
    assert req.headers.get_list(FORWARDED_BY) == ["node_me"]  # the client's copy dropped
    assert req.headers["x-goog-api-key"] == "k"  # the owner authenticates again
    assert sent[0]["status"] == 201 and (b"x-owner", b"yes") in sent[0]["headers"]
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"fedcba"


async def test_a_silent_owner_is_refused_before_anything_is_sent() -> None:
    calls: list[httpx.Request] = []

    def owner(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200)

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    sent: list[dict[str, Any]] = []

    async def send(msg: dict[str, Any]) -> None:
        sent.append(msg)

    fwd = Forwarder("node_me", transport=httpx.MockTransport(owner))
    old = datetime.now(UTC) - timedelta(minutes=5)
    try:
        with pytest.raises(NodeUnavailable, match="node_gone"):
            await fwd.forward(
                scope(b"/v1beta/sandboxes/sb-1", [], "GET"),
                receive,
                send,
                owner="node_gone",
                url=OWNER,
                heartbeat_at=old,
            )
        with pytest.raises(NodeUnavailable, match="node_unregistered"):
            await fwd.forward(
                scope(b"/v1beta/sandboxes/sb-1", [], "GET"),
                receive,
                send,
                owner="node_unregistered",
                url=None,
                heartbeat_at=None,
            )
    finally:
        await fwd.aclose()
    assert calls == [] and sent == []
