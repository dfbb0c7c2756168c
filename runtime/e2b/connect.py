"""Connect-RPC with the JSON codec, as envd's clients speak it.

Unary: `POST /<service>/<Method>`, `Content-Type: application/json`, the message as the body;
errors are `{"code": "<connect code>", "message": ...}` with the code's HTTP status.
Server streaming: `application/connect+json`; request and response messages are envelopes
(1 flag byte + 4-byte big-endian length + JSON); the last envelope has flag 0x02 and carries
`{"error": {...}}` or `{}`.
"""

from __future__ import annotations

import base64
import json
import struct
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

END_STREAM = 0x02
STREAM_MEDIA = "application/connect+json"
MAX_MESSAGE = 4 * 1024**2

CODE_BY_STATUS = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    409: "already_exists",
    413: "resource_exhausted",
    429: "resource_exhausted",
    501: "unimplemented",
    503: "unavailable",
    504: "deadline_exceeded",
}
STATUS_BY_CODE = {
    "invalid_argument": 400,
    "unauthenticated": 401,
    "permission_denied": 403,
    "not_found": 404,
    "already_exists": 409,
    "resource_exhausted": 429,
    "unimplemented": 501,
    "unavailable": 503,
    "deadline_exceeded": 504,
    "internal": 500,
}


def code_for(status: int) -> str:
    return CODE_BY_STATUS.get(status, "internal" if status >= 500 else "failed_precondition")


def envelope(message: dict[str, Any], flags: int = 0) -> bytes:
    data = json.dumps(message, separators=(",", ":")).encode()
    return struct.pack(">BI", flags, len(data)) + data


def end_stream(status: int | None = None, message: str = "") -> bytes:
    if status is None:
        return envelope({}, END_STREAM)
    return envelope({"error": {"code": code_for(status), "message": message}}, END_STREAM)


async def read_request(request: Request) -> dict[str, Any]:
    """The request message, enveloped (streaming) or plain (unary)."""
    body = await request.body()
    if request.headers.get("content-type", "").startswith(STREAM_MEDIA):
        if len(body) < 5:
            return {}
        flags, size = struct.unpack(">BI", body[:5])
        if flags & 0x01:
            raise ValueError("compressed messages are not supported")
        body = body[5 : 5 + size]
    if not body:
        return {}
    if len(body) > MAX_MESSAGE:
        raise ValueError("message too large")
    msg = json.loads(body)
    if not isinstance(msg, dict):
        raise ValueError("message must be a JSON object")
    return msg


async def request_messages(request: Request) -> AsyncIterator[dict[str, Any]]:
    """The messages of a client-streamed request (`StreamInput`), as they arrive: at most one
    message (`MAX_MESSAGE`) plus one network chunk is held at a time."""
    buf = b""
    async for chunk in request.stream():
        buf += chunk
        while len(buf) >= 5:
            flags, size = struct.unpack(">BI", buf[:5])
            if flags & 0x01:
                raise ValueError("compressed messages are not supported")
            if size > MAX_MESSAGE:
                raise ValueError("message too large")
            if len(buf) < 5 + size:
                break
            body, buf = buf[5 : 5 + size], buf[5 + size :]
            if flags & END_STREAM:
                return
            msg = json.loads(body) if body else {}
            if not isinstance(msg, dict):
                raise ValueError("message must be a JSON object")
            yield msg
    if buf:
        raise ValueError("the request ended inside a message")


def unary_error(status: int, message: str) -> Response:
    code = code_for(status)
    return JSONResponse(
        {"code": code, "message": message}, status_code=STATUS_BY_CODE.get(code, status)
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def timeout_of(request: Request) -> float | None:
    """`Connect-Timeout-Ms` in seconds (None when absent)."""
    raw = request.headers.get("connect-timeout-ms")
    if not raw or not raw.isdigit():
        return None
    return int(raw) / 1000
