"""Local fake model servers that the real SDKs talk to over HTTP.

`FakeServer` is one stdlib HTTP server on 127.0.0.1 (ephemeral port) that replays scripted
replies in order and records every request. The builders below produce bodies in each real
protocol (OpenAI chat completions, Anthropic messages, Gemini generateContent), JSON or SSE.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    """A JSON-able value, or None with `sse` set."""
    sse: list[tuple[str | None, Any]] | None = None
    """Server-sent events as (event name or None, JSON data); a str data is sent verbatim."""
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    """A body sent byte for byte (garbage, an empty body), as `content_type`."""
    content_type: str | None = None
    """Overrides the content type implied by `body` / `sse`."""
    cut: bool = False
    """Send the body as one chunk of a chunked response, then drop the connection without
    the final chunk (a connection lost mid-stream)."""
    stall: bool = False
    """Send the body as one chunk of a chunked response, then send nothing more until the
    server stops (a stalled stream). The body may be empty: a stall before the first byte."""


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class FakeServer:
    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[Recorded] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body: Any = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with server._lock:
                    server.requests.append(
                        Recorded(
                            "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                        )
                    )
                    reply = server.replies.pop(0) if server.replies else None
                if reply is None:
                    reply = Reply(500, {"error": {"message": "fake server: no reply scripted"}})
                self._send(reply)

            def _send(self, reply: Reply) -> None:
                if reply.raw is not None:
                    payload = reply.raw
                    content_type = "application/json"
                elif reply.sse is not None:
                    payload = b"".join(_sse_event(name, data) for name, data in reply.sse)
                    content_type = "text/event-stream"
                else:
                    payload = json.dumps(reply.body).encode()
                    content_type = "application/json"
                self.send_response(reply.status)
                self.send_header("content-type", reply.content_type or content_type)
                chunked = reply.cut or reply.stall
                if chunked:
                    self.send_header("transfer-encoding", "chunked")
                else:
                    self.send_header("content-length", str(len(payload)))
                for k, v in reply.headers.items():
                    self.send_header(k, v)
                self.end_headers()
                if not chunked:
                    self.wfile.write(payload)
                    self.wfile.flush()
                    return
                if payload:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(payload), payload))
                self.wfile.flush()
                if reply.stall:
                    # Bounded: the server's stop() releases every stalled reply.
                    server._stopping.wait(timeout=120)
                self.close_connection = True

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def add(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def start(self) -> FakeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


def _sse_event(name: str | None, data: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {name}\n" if name else ""
    return f"{head}data: {text}\n\n".encode()


# --- OpenAI chat completions -------------------------------------------------------------


def openai_completion(
    *,
    text: str | None = None,
    tool_calls: list[tuple[str, str, dict[str, Any]]] = (),  # type: ignore[assignment]
    finish_reason: str | None = None,
    model: str = "gpt-fake",
    usage: tuple[int, int] = (10, 5),
) -> dict[str, Any]:
    calls = [
        {"id": cid, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}}
        for cid, name, args in tool_calls
    ]
    message: dict[str, Any] = {"role": "assistant", "content": text}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": finish_reason or ("tool_calls" if calls else "stop"),
            }
        ],
        "usage": {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": usage[0] + usage[1],
        },
    }


def openai_chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = None,
    model: str = "gpt-fake",
) -> dict[str, Any]:
    chunk: dict[str, Any] = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    if usage is not None:
        chunk["usage"] = {
            "prompt_tokens": usage[0],
            "completion_tokens": usage[1],
            "total_tokens": sum(usage),
        }
    return chunk


def openai_sse(chunks: list[dict[str, Any]]) -> list[tuple[str | None, Any]]:
    return [(None, c) for c in chunks] + [(None, "[DONE]")]


def openai_error(status: int, message: str, **headers: str) -> Reply:
    return Reply(
        status,
        {"error": {"message": message, "type": "error", "code": None}},
        headers=dict(headers),
    )


# --- Anthropic messages ------------------------------------------------------------------


def anthropic_message(
    content: list[dict[str, Any]],
    *,
    stop_reason: str = "end_turn",
    model: str = "claude-fake",
    usage: dict[str, int] | None = None,
) -> dict[str, Any]:
    return {
        "id": "msg_fake",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


def anthropic_stream(message: dict[str, Any]) -> list[tuple[str | None, Any]]:
    """The SSE events Anthropic sends for `message`, text split into two deltas per block."""
    start = dict(message, content=[], stop_reason=None)
    start["usage"] = {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 1}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    for i, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            text = block["text"]
            for piece in (text[: len(text) // 2], text[len(text) // 2 :]):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        elif block["type"] == "tool_use":
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": i,
                        "content_block": dict(block, input={}),
                    },
                )
            )
            raw = json.dumps(block["input"])
            for piece in (raw[:5], raw[5:]):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": i,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        else:
            raise ValueError(f"anthropic_stream: unsupported block {block['type']}")
        events.append(("content_block_stop", {"type": "content_block_stop", "index": i}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": message["usage"]["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def anthropic_error(status: int, message: str, **headers: str) -> Reply:
    kind = {401: "authentication_error", 429: "rate_limit_error"}.get(status, "api_error")
    return Reply(
        status,
        {"type": "error", "error": {"type": kind, "message": message}},
        headers=dict(headers),
    )


# --- Gemini generateContent --------------------------------------------------------------


def gemini_response(
    parts: list[dict[str, Any]],
    *,
    finish_reason: str | None = "STOP",
    usage: dict[str, int] | None = None,
    model: str = "gemini-fake",
) -> dict[str, Any]:
    """A whole response, or with `finish_reason=None` a streamed chunk before the last."""
    candidate: dict[str, Any] = {"content": {"role": "model", "parts": parts}}
    if finish_reason is not None:
        candidate["finishReason"] = finish_reason
    return {
        "candidates": [candidate],
        "usageMetadata": usage
        or {"promptTokenCount": 10, "candidatesTokenCount": 5, "totalTokenCount": 15},
        "modelVersion": model,
    }


def gemini_error(status: int, message: str, status_name: str, **headers: str) -> Reply:
    return Reply(
        status,
        {"error": {"code": status, "message": message, "status": status_name}},
        headers=dict(headers),
    )
