"""HTTP access lines as structured events: `http.access` with method, path, status, duration.

Replaces uvicorn's access log (plain text, no duration). One event per request, logged when the
response ends (a stream's duration is the whole stream) at `info` (`warning` for a 5xx); the
query string is left out (it may carry ids a log reader should not need).
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("corral.access")


class AccessLog:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an app that raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            client = scope.get("client")
            emit = log.warning if status >= 500 else log.info
            emit(
                "http.access",
                method=scope.get("method", ""),
                path=scope.get("path", ""),
                status=status,
                duration_ms=round((time.perf_counter() - started) * 1000, 3),
                client=f"{client[0]}:{client[1]}" if client else None,
                http_version=scope.get("http_version", ""),
            )
