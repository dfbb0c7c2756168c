"""A file from a sandbox as a streamed HTTP response (the sandboxes API and the E2B door)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse

from sandbox.api import Sandbox

UNTRUSTED_CONTENT = {"X-Content-Type-Options": "nosniff", "Content-Security-Policy": "sandbox"}
"""Headers for bytes an agent wrote: never sniffed into something runnable, and opened
directly they run no script in Corral's origin (the console's, whose key is in its storage)."""


async def file_response(sb: Sandbox, path: str) -> StreamingResponse:
    """Stream `path` (a workspace path) without loading it whole. The first chunk is read
    before answering, so a missing file raises here (a 404) instead of cutting a stream."""
    it = sb.files.download(path).__aiter__()
    first = await anext(it, b"")

    async def body() -> AsyncIterator[bytes]:
        if first:
            yield first
        async for chunk in it:
            yield chunk

    return StreamingResponse(
        body(), media_type="application/octet-stream", headers=UNTRUSTED_CONTENT
    )
