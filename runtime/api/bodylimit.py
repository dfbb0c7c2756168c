"""Request-body caps, enforced while the body streams in (never after reading it whole).

A declared `Content-Length` over the cap is refused before any byte is read; a chunked body is
counted as it arrives: past the cap the app is told the client disconnected (so it stops
reading) and the answer is a 413. File uploads
(`PUT .../files/...`) get their own, larger cap.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.api.errors import error_body

JSON_LIMIT = 10 * 1024**2
UPLOAD_LIMIT = 1024**3


class BodyLimit:
    def __init__(
        self, app: ASGIApp, *, json_limit: int = JSON_LIMIT, upload_limit: int = UPLOAD_LIMIT
    ) -> None:
        self.app = app
        self.json_limit = json_limit
        self.upload_limit = upload_limit

    def limit_for(self, scope: Scope) -> int:
        method, path = scope.get("method"), scope.get("path", "")
        # File uploads: the sandboxes API (PUT .../files/...) and the E2B door (POST /files).
        upload = (method == "PUT" and "/files/" in path) or (method == "POST" and path == "/files")
        return self.upload_limit if upload else self.json_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope)
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await _too_large(send, limit)
            return
        seen = 0
        overflow = False
        started = False

        async def counted() -> Message:
            nonlocal seen, overflow
            if overflow:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    # Tell the app the client left (it stops reading); we answer 413 below.
                    overflow = True
                    return {"type": "http.disconnect"}
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if overflow:
                return  # the app's answer to a truncated body is replaced by the 413
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, guarded)
        except Exception:
            if not overflow:
                raise
        if overflow and not started:
            await _too_large(send, limit)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps(
        error_body(413, "payload_too_large", f"request body is larger than {limit} bytes")
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
