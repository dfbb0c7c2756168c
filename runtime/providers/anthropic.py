"""Anthropic's messages API through the official `anthropic` SDK."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import anthropic

from runtime.errors import ConfigError, ProviderError
from runtime.providers.base import (
    GenerationConfig,
    Message,
    ModelTurn,
    TextCallback,
    Timeouts,
    ToolCall,
    ToolSpec,
    Usage,
    offered_tools,
)
from runtime.providers.ids import unique_id
from runtime.providers.retry import (
    Failure,
    RetryPolicy,
    call_with_retries,
    connection_failure,
    cut_short,
    empty_reply,
    fault_failure,
    malformed,
    one_line,
    parse_retry_after,
    status_failure,
)

DEFAULT_MAX_TOKENS = 8192
"""The messages API requires max_tokens; this fits every current Claude model."""

PLACEHOLDER_KEY = "sk-ant-no-key-required"


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
    ) -> None:
        if not api_key and not base_url:
            raise ConfigError("anthropic: no API key: set ANTHROPIC_API_KEY")
        self.model = model
        self._retry = retry or RetryPolicy()
        self._default_max_tokens = default_max_tokens
        self._timeouts = t = timeouts or Timeouts()
        # httpx's read timeout bounds each read: for a stream, the idle timeout. Anthropic
        # sends `ping` events while a model thinks, so a silent stream is a stalled one.
        self._stream_timeout = anthropic.Timeout(t.idle, connect=t.connect)
        # max_retries=0: retry.py is the only retry loop.
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url,
            max_retries=0,
            timeout=anthropic.Timeout(t.response, connect=t.connect),
        )

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        config: GenerationConfig | None = None,
        on_text: TextCallback | None = None,
    ) -> ModelTurn:
        request = self._request(messages, system, tools, config or GenerationConfig())
        streamed = False
        timeouts = self._timeouts

        def classify(exc: Exception) -> Failure | None:
            return classify_error(exc, timeouts, streaming=on_text is not None)

        async def attempt() -> ModelTurn:
            nonlocal streamed
            if on_text is None:
                return self._checked_turn(await self._client.messages.create(**request))
            events = 0
            stopped = False
            async with self._client.messages.stream(
                **request, timeout=self._stream_timeout
            ) as stream:
                async for event in stream:
                    events += 1
                    stopped = stopped or event.type == "message_stop"
                    if event.type == "text" and event.text:
                        streamed = True
                        await on_text(event.text)
                if events == 0:
                    raise empty_reply()
                if not stopped:
                    raise cut_short()
                return self._checked_turn(await stream.get_final_message())

        return await call_with_retries(
            attempt, policy=self._retry, classify=classify, committed=lambda: streamed
        )

    async def aclose(self) -> None:
        await self._client.close()

    def _request(
        self,
        messages: Sequence[Message],
        system: str | None,
        tools: Sequence[ToolSpec],
        config: GenerationConfig,
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "model": self.model,
            "messages": to_anthropic_messages(messages),
            "max_tokens": config.max_output_tokens or self._default_max_tokens,
        }
        if system:
            request["system"] = system
        tools = offered_tools(tools, config)
        if tools:
            request["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in tools
            ]
            if config.tool_choice is not None:
                request["tool_choice"] = _tool_choice(config, tools)
        if config.thinking_level is not None:
            budget = THINKING_BUDGETS[config.thinking_level]
            if config.max_output_tokens is None:
                request["max_tokens"] = max(request["max_tokens"], budget + 4096)
            # The budget must stay below max_tokens; Anthropic's floor is 1024.
            budget = max(1024, min(budget, request["max_tokens"] - 1))
            request["thinking"] = {"type": "enabled", "budget_tokens": budget}
        # Recent SDKs dropped the sampling keywords; the API still reads them from the body
        # for models that support them, so they travel as extra body fields.
        sampling = {"temperature": config.temperature, "top_p": config.top_p}
        extra = {k: v for k, v in sampling.items() if v is not None}
        if extra:
            request["extra_body"] = extra
        if config.stop:
            request["stop_sequences"] = list(config.stop)
        schema = config.response_schema
        if schema is None and config.json_mode:
            schema = {"type": "object", "additionalProperties": True}
        if schema is not None:
            request["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
        # `seed` has no Anthropic equivalent; it is ignored.
        return request

    def _checked_turn(self, message: Any) -> ModelTurn:
        if not isinstance(message, anthropic.types.Message):
            raise malformed("not a message")
        try:
            if not isinstance(message.content, list):
                raise malformed("a message without content")
            return self._turn(message)
        except (AttributeError, TypeError) as exc:
            # Built without validation by the SDK: a field of the wrong type shows up here.
            raise malformed("not a message") from exc

    def _turn(self, message: Any) -> ModelTurn:
        text: list[str] = []
        thoughts: list[str] = []
        thinking_blocks: list[dict[str, Any]] = []
        calls: list[ToolCall] = []
        seen: set[str] = set()
        for block in message.content:
            if block.type == "text":
                text.append(block.text)
            elif block.type == "tool_use":
                arguments = block.input if isinstance(block.input, dict) else {}
                calls.append(
                    ToolCall(
                        id=unique_id(block.id, seen, "toolu"),
                        name=block.name,
                        arguments=dict(arguments),
                    )
                )
            elif block.type == "thinking":
                thoughts.append(block.thinking)
                thinking_blocks.append(
                    {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
                )
            elif block.type == "redacted_thinking":
                thinking_blocks.append({"type": "redacted_thinking", "data": block.data})
        return ModelTurn(
            text="".join(text),
            tool_calls=calls,
            thought="\n".join(thoughts) or None,
            usage=usage_from_anthropic(message.usage),
            stop_reason=message.stop_reason or "end_turn",
            model=message.model or self.model,
            # The thinking blocks go back verbatim (signatures and redacted data included):
            # Anthropic checks them when a tool-use turn continues.
            thought_signature=json.dumps(thinking_blocks) if thinking_blocks else None,
        )


def to_anthropic_messages(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Neutral messages -> alternating user/assistant turns; tool results become tool_result
    blocks in the next user turn (consecutive ones merged, as the API requires)."""
    out: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})

    for m in messages:
        if m.role == "user":
            add("user", _user_blocks(m))
        elif m.role == "tool":
            add(
                "user",
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": m.tool_call_id or "",
                        "content": m.content,
                        "is_error": m.is_error,
                    }
                ],
            )
        else:
            blocks = _thinking_blocks(m)
            if m.content:
                blocks.append({"type": "text", "text": m.content})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments}
                for c in m.tool_calls
            ]
            add("assistant", blocks or [{"type": "text", "text": "(no output)"}])
    return out


THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
}
"""`thinking_level` -> extended-thinking `budget_tokens`."""


def _tool_choice(config: GenerationConfig, tools: Sequence[ToolSpec]) -> dict[str, Any]:
    mode = config.tool_choice
    if mode == "any":
        if len(tools) == 1 and config.allowed_tools:
            return {"type": "tool", "name": tools[0].name}
        return {"type": "any"}
    return {"type": "none" if mode == "none" else "auto"}


def _user_blocks(m: Message) -> list[dict[str, Any]]:
    """Text, then image / document blocks (base64 or url source)."""
    blocks: list[dict[str, Any]] = (
        [{"type": "text", "text": m.content}] if m.content or not m.media else []
    )
    for media in m.media:
        if media.kind not in ("image", "document"):
            raise ConfigError(f"anthropic: {media.kind} input is not supported")
        source: dict[str, Any] = (
            {"type": "url", "url": media.uri}
            if media.uri
            else {"type": "base64", "media_type": media.mime_type, "data": media.data}
        )
        blocks.append({"type": media.kind, "source": source})
    return blocks


def _thinking_blocks(m: Message) -> list[dict[str, Any]]:
    if m.thought_signature:
        try:
            blocks = json.loads(m.thought_signature)
        except json.JSONDecodeError:
            blocks = None
        if isinstance(blocks, list) and all(isinstance(b, dict) for b in blocks):
            return list(blocks)
        if m.thought:
            return [{"type": "thinking", "thinking": m.thought, "signature": m.thought_signature}]
    # A thought without a signature cannot be sent back as thinking: Anthropic rejects it.
    return []


def usage_from_anthropic(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    read = usage.cache_read_input_tokens or 0
    created = usage.cache_creation_input_tokens or 0
    details = getattr(usage, "output_tokens_details", None)
    thinking = (getattr(details, "thinking_tokens", 0) or 0) if details is not None else 0
    output = usage.output_tokens or 0
    return Usage(
        input_tokens=(usage.input_tokens or 0) + read + created,
        output_tokens=max(0, output - thinking),
        thought_tokens=thinking,
        cached_tokens=read,
    )


def classify_error(
    exc: Exception, timeouts: Timeouts | None = None, *, streaming: bool = False
) -> Failure | None:
    if isinstance(exc, anthropic.APIStatusError):
        status, detail = exc.status_code, _detail(exc)
        if status < 400:
            # An `error` event inside a 200 stream (overloaded_error is the common one): its
            # type says which status it stands for.
            status = _ERROR_EVENT_STATUS.get(_error_type(exc), 500)
            detail = f"{detail} (error event in the stream)"
        return status_failure("anthropic", status, detail, parse_retry_after(exc.response.headers))
    # The SDK does not wrap what goes wrong while a stream is read: httpx's own errors and
    # decoding errors arrive as they are.
    fault = fault_failure("anthropic", exc, timeouts, streaming=streaming)
    if fault is not None:
        return fault
    if isinstance(exc, anthropic.APIConnectionError):
        return connection_failure("anthropic", exc.__cause__ or exc)
    if isinstance(exc, anthropic.AnthropicError):
        return Failure(ProviderError(one_line(f"anthropic: {exc}")), retryable=False)
    return None


_ERROR_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
"""Anthropic's error types and the HTTP status each is sent with outside a stream."""


def _error_type(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    return kind if isinstance(kind, str) else ""


def _detail(exc: anthropic.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(body.get("message"), str):
            return str(body["message"])
    return exc.message
