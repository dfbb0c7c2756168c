"""`/v1beta/interactions/{id}/artifacts`: the files a run produced, listed and downloaded.

Downloads stream from the controller's disk with aiofiles (never loaded whole), honour one
HTTP byte range (206 / 416), and name the file with RFC 6266 `filename*` so any name is safe
in the header. Paths are checked twice: the store's relative path must be clean, and the file
must resolve inside the interaction's artifact folder.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

import aiofiles
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from runtime.api.deps import StateDep, TenantDep
from runtime.api.downloads import UNTRUSTED_CONTENT
from runtime.api.errors import BadRequest, RangeNotSatisfiable
from runtime.artifacts import safe_relpath
from runtime.errors import NotFound
from runtime.views import artifact_view

router = APIRouter(prefix="/v1beta/interactions/{interaction_id}/artifacts", tags=["artifacts"])
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@router.get("")
async def list_artifacts(interaction_id: str, state: StateDep, tenant: TenantDep) -> dict[str, Any]:
    await state.ctl.store.get_interaction(tenant, interaction_id)
    recs = await state.ctl.store.list_artifacts(interaction_id)
    return {"artifacts": [artifact_view(r) for r in recs]}


@router.get("/{path:path}", response_model=None)
async def download_artifact(
    interaction_id: str, path: str, state: StateDep, tenant: TenantDep, request: Request
) -> StreamingResponse:
    """The file's bytes; `Range: bytes=a-b` (one range) answers 206 with that slice."""
    await state.ctl.store.get_interaction(tenant, interaction_id)
    try:
        rel = safe_relpath(path)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc
    rec = await state.ctl.store.get_artifact(interaction_id, str(rel))
    root = (state.ctl.settings.artifacts_dir / interaction_id).resolve()
    file = Path(rec.stored_path).resolve()
    if not file.is_relative_to(root) or not file.is_file():
        raise NotFound(f"artifact {path} not found")
    size = file.stat().st_size
    headers = {
        "Accept-Ranges": "bytes",
        "ETag": f'"{rec.sha256}"',
        "Content-Disposition": content_disposition(PurePosixPath(rec.path).name),
        **UNTRUSTED_CONTENT,
    }
    span = parse_range(request.headers.get("range"), size)
    status = 200
    start, end = 0, size - 1
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    headers["Content-Length"] = str(max(0, end - start + 1))
    return StreamingResponse(
        _read(file, start, end - start + 1),
        status_code=status,
        media_type=rec.media_type or "application/octet-stream",
        headers=headers,
    )


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """One `bytes=` range -> inclusive (start, end); None means "send it all" (no header, a
    syntax we ignore per RFC 9110, or several ranges). Unsatisfiable -> 416."""
    if not value:
        return None
    m = _RANGE.match(value.strip())
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable("empty suffix range", size)
        return max(0, size - n), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if last and int(last) < start:
        return None  # invalid syntax: ignored
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, the file has {size} bytes", size)
    return start, end


def content_disposition(name: str) -> str:
    ascii_name = "".join(c if 32 <= ord(c) < 127 and c not in '"\\;' else "_" for c in name)
    return f"attachment; filename=\"{ascii_name or 'download'}\"; filename*=UTF-8''{quote(name, safe='')}"


async def _read(file: Path, start: int, length: int) -> AsyncIterator[bytes]:
    async with aiofiles.open(file, "rb") as f:
        await f.seek(start)
        left = length
        while left > 0:
            chunk = await f.read(min(CHUNK, left))
            if not chunk:
                break
            left -= len(chunk)
            yield chunk
