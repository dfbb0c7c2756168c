"""Wire framing shared by the guest and the host (standard library only).

A frame is ``!II`` (header length, payload length) + a UTF-8 JSON object + raw payload bytes.
The header always has ``t`` (the frame type); see docs/rpc.md for every type. Payloads are
never base64: file chunks and exec output travel as they are.

`FrameParser` turns a byte stream into frames with at most one copy: small frames are sliced
out of a staging buffer; a large payload gets its own buffer that the socket fills directly.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from .errors import PROTOCOL, UNAUTHORIZED

PROTOCOL_VERSION = 1

PREFIX = struct.Struct("!II")
MAX_HEADER = 1 << 20
"""Largest JSON header (a command line or Python cell lives here)."""
MAX_PAYLOAD = 16 << 20
"""Largest payload of one frame; streams are chunked well below this."""
HELLO_MAX = 64 << 10
"""Cap on every frame before the handshake, so an unauthenticated peer costs little."""
CHUNK = 1 << 20
"""Size of the file chunks either side sends."""
WINDOW = 8 << 20
"""Per-call flow-control window (bytes of stream frames in flight, see `frame_cost`)."""
FRAME_OVERHEAD = 256
"""Accounted per stream frame so a flood of tiny frames also exhausts the window."""
HELLO_TIMEOUT = 10.0
"""Seconds the guest waits for a connection's hello before dropping it."""
HELLO_REPLY = {"t": "hello", "v": PROTOCOL_VERSION, "server": "corral-guest"}
MESSAGE_MAX = 8192
"""Error messages quote caller input (paths, commands): they are cut far below the header cap."""

_STAGING = 256 << 10
_DIRECT_MIN = 64 << 10  # payloads at least this big are received into their own buffer

Header = dict[str, Any]
FrameHandler = Callable[[Header, bytes], None]


class FrameError(Exception):
    """The peer sent something that is not a valid frame; the connection must close."""


def frame_cost(payload_len: int) -> int:
    """Window units one stream frame uses (both sides must agree)."""
    return payload_len + FRAME_OVERHEAD


def encode_header(header: Header, payload_len: int) -> bytes:
    """Prefix + JSON header of a frame whose payload (if any) is written right after."""
    raw = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode()
    if len(raw) > MAX_HEADER:
        raise FrameError(f"frame header of {len(raw)} bytes exceeds {MAX_HEADER}")
    if payload_len > MAX_PAYLOAD:
        raise FrameError(f"frame payload of {payload_len} bytes exceeds {MAX_PAYLOAD}")
    return PREFIX.pack(len(raw), payload_len) + raw


def error_header(call_id: int, code: str, message: str) -> Header:
    """An ``error`` frame's header (``id`` 0: the connection is refused)."""
    if len(message) > MESSAGE_MAX:
        message = message[:MESSAGE_MAX] + "...[truncated]"
    return {"t": "error", "id": call_id, "code": code, "message": message}


def hello_error(header: Header, token: str | None) -> tuple[str, str] | None:
    """Why the guest refuses a connection's first frame (error code, message), or None."""
    if header.get("t") != "hello":
        return PROTOCOL, "the first frame must be 'hello'"
    version = header.get("v")
    if version != PROTOCOL_VERSION:
        return PROTOCOL, (
            f"protocol version mismatch: client speaks {version!r}, "
            f"this guest speaks {PROTOCOL_VERSION}"
        )
    if token is not None:
        given = header.get("token")
        import hmac  # only the TCP transport has a token

        if not isinstance(given, str) or not hmac.compare_digest(given.encode(), token.encode()):
            return UNAUTHORIZED, "wrong or missing token"
    return None


class FrameParser:
    """Incremental frame decoder driven by `asyncio.BufferedProtocol` calls.

    `get_buffer()` hands out memory to receive into; `feed(n)` says how much arrived and
    calls `on_frame(header, payload)` for every complete frame. Raises `FrameError` on
    malformed input; the caller then drops the connection.
    """

    def __init__(self, on_frame: FrameHandler, *, max_header: int = HELLO_MAX) -> None:
        self._on_frame = on_frame
        self.max_header = max_header
        self.max_payload = HELLO_MAX
        self._buf = bytearray(_STAGING)
        self._start = 0
        self._end = 0
        self._direct: bytearray | None = None
        self._direct_filled = 0
        self._direct_header: Header = {}

    def set_handler(self, on_frame: FrameHandler) -> None:
        """Deliver frames elsewhere from now on (a connection changing hands)."""
        self._on_frame = on_frame

    def set_limits(self, *, max_header: int, max_payload: int) -> None:
        """Raise the caps once the peer is authenticated."""
        self.max_header = max_header
        self.max_payload = max_payload

    def get_buffer(self) -> memoryview:
        if self._direct is not None:
            return memoryview(self._direct)[self._direct_filled :]
        if self._end == len(self._buf):
            self._compact()
        return memoryview(self._buf)[self._end :]

    def feed(self, nbytes: int) -> None:
        if self._direct is not None:
            self._direct_filled += nbytes
            if self._direct_filled == len(self._direct):
                header, payload = self._direct_header, self._direct
                self._direct = None
                self._direct_header = {}
                self._on_frame(header, bytes(payload))
            return
        self._end += nbytes
        self._parse()

    def _compact(self) -> None:
        used = self._end - self._start
        if self._start:
            self._buf[:used] = self._buf[self._start : self._end]
            self._start, self._end = 0, used
        if self._end == len(self._buf):  # one frame bigger than the staging buffer
            self._buf.extend(bytes(len(self._buf)))

    def _parse(self) -> None:
        buf = self._buf
        while self._end - self._start >= PREFIX.size:
            hlen, plen = PREFIX.unpack_from(buf, self._start)
            if hlen > self.max_header or hlen == 0:
                raise FrameError(f"frame header length {hlen} outside 1..{self.max_header}")
            if plen > self.max_payload:
                raise FrameError(f"frame payload length {plen} exceeds {self.max_payload}")
            hstart = self._start + PREFIX.size
            pstart = hstart + hlen
            avail = self._end - self._start
            if avail < PREFIX.size + hlen:
                break
            if avail < PREFIX.size + hlen + plen and plen < _DIRECT_MIN:
                break
            header = _decode_header(buf[hstart:pstart])
            if avail >= PREFIX.size + hlen + plen:
                payload = bytes(buf[pstart : pstart + plen]) if plen else b""
                self._start = pstart + plen
                self._on_frame(header, payload)
                continue
            # A large payload that has only partly arrived: receive the rest in place.
            direct = bytearray(plen)
            have = self._end - pstart
            direct[:have] = buf[pstart : self._end]
            self._direct, self._direct_filled, self._direct_header = direct, have, header
            self._start = self._end = 0
            break
        if self._start == self._end:
            self._start = self._end = 0
            if len(self._buf) > _STAGING:
                self._buf = bytearray(_STAGING)


def _decode_header(raw: bytearray) -> Header:
    try:
        header = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame header is not JSON: {exc}") from None
    if not isinstance(header, dict) or not isinstance(header.get("t"), str):
        raise FrameError("frame header must be a JSON object with a string 't'")
    return header
