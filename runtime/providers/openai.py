"""OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp server, any base_url)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from runtime.errors import ConfigError, ProviderError
from runtime.providers.arguments import dump_arguments, parse_arguments
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

PLACEHOLDER_KEY = "sk-no-key-required"
"""Local servers ignore the key, but the SDK insists on one."""

_STOP_REASONS = {
    "stop": "end_turn",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "length": "max_tokens",
    "content_filter": "refusal",
}


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        if not api_key and not base_url:
            raise ConfigError(
                "openai: no API key: set OPENAI_API_KEY (or give a base_url for a local server)"
            )
        self.model = model
        self.base_url = base_url
        self._retry = retry or RetryPolicy()
        self._timeouts = t = timeouts or Timeouts()
        # httpx's read timeout bounds each read: for a stream, the idle timeout.
        self._stream_timeout = openai.Timeout(t.idle, connect=t.connect)
        # max_retries=0: retry.py is the only retry loop.
        self._client = openai.AsyncOpenAI(
            api_key=api_key or PLACEHOLDER_KEY,
            base_url=base_url,
            max_retries=0,
            timeout=openai.Timeout(t.response, connect=t.connect),
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
                response = await self._client.chat.completions.create(**request)
                return self._turn_from_response(response)

            async def emit(text: str) -> None:
                nonlocal streamed
                streamed = True
                await on_text(text)

            return await self._stream(request, emit)

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
            "messages": to_openai_messages(messages, system),
        }
        tools = offered_tools(tools, config)
        if tools:
            request["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in tools
            ]
            choice = _tool_choice(config, tools)
            if choice is not None:
                request["tool_choice"] = choice
        if config.thinking_level is not None:
            request["reasoning_effort"] = config.thinking_level
        if config.temperature is not None:
            request["temperature"] = config.temperature
        if config.top_p is not None:
            request["top_p"] = config.top_p
        if config.max_output_tokens is not None:
            # OpenAI's reasoning models reject max_tokens; compatible servers know max_tokens.
            key = "max_completion_tokens" if self.base_url is None else "max_tokens"
            request[key] = config.max_output_tokens
        if config.stop:
            request["stop"] = list(config.stop)
        if config.seed is not None:
            request["seed"] = config.seed
        if config.response_schema is not None:
            request["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": config.response_schema},
            }
        elif config.json_mode:
            request["response_format"] = {"type": "json_object"}
        return request

    def _turn_from_response(self, response: Any) -> ModelTurn:
        if not isinstance(response, ChatCompletion):
            raise malformed("not a chat completion")
        try:
            return self._turn_from_completion(response)
        except (AttributeError, TypeError) as exc:
            # Built without validation by the SDK: a field of the wrong type shows up here.
            raise malformed("not a chat completion") from exc

    def _turn_from_completion(self, response: Any) -> ModelTurn:
        if not isinstance(response.choices, list) or not response.choices:
            raise malformed("no choices")
        choice = response.choices[0]
        msg = choice.message
        seen: set[str] = set()
        calls = [
            ToolCall(
                id=unique_id(tc.id, seen),
                name=tc.function.name,
                arguments=parse_arguments(tc.function.arguments),
            )
            for tc in (msg.tool_calls or [])
            if getattr(tc, "function", None) is not None
        ]
        return ModelTurn(
            text=msg.content or "",
            tool_calls=calls,
            thought=_reasoning_of(msg),
            usage=usage_from_openai(response.usage),
            stop_reason=_stop_reason(choice.finish_reason, bool(calls)),
            model=response.model or self.model,
        )

    async def _stream(self, request: dict[str, Any], emit: TextCallback) -> ModelTurn:
        stream = await self._client.chat.completions.create(
            **request,
            stream=True,
            stream_options={"include_usage": True},
            timeout=self._stream_timeout,
        )
        acc = _StreamAccumulator(model=self.model)
        chunks = 0
        async with stream:
            async for chunk in stream:
                chunks += 1
                try:
                    pieces = acc.add(chunk)
                except (AttributeError, TypeError) as exc:
                    # Built without validation by the SDK: a field of the wrong type.
                    raise malformed("not a chat completion chunk") from exc
                for piece in pieces:
                    await emit(piece)
        if chunks == 0:
            raise empty_reply()
        if acc.finish is None:
            # Every server ends a choice with a finish_reason; [DONE] alone is not proof.
            raise cut_short()
        return acc.turn()


@dataclass
class _StreamAccumulator:
    """Folds the chunks of a chat-completions stream into a `ModelTurn`."""

    model: str
    text: list[str] = field(default_factory=list)
    thought: list[str] = field(default_factory=list)
    calls: dict[int, _PartialCall] = field(default_factory=dict)
    finish: str | None = None
    usage: Usage = field(default_factory=Usage)

    def add(self, chunk: ChatCompletionChunk) -> list[str]:
        """Returns the new visible text pieces."""
        if not isinstance(chunk, ChatCompletionChunk) or not isinstance(chunk.choices, list):
            raise malformed("not a chat completion chunk")
        pieces: list[str] = []
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = usage_from_openai(chunk.usage)
        for choice in chunk.choices:
            delta = choice.delta
            if choice.finish_reason:
                self.finish = choice.finish_reason
            reasoning = _reasoning_of(delta)
            if reasoning:
                self.thought.append(reasoning)
            if delta.content:
                self.text.append(delta.content)
                pieces.append(delta.content)
            for tc in delta.tool_calls or []:
                _merge_call_delta(self.calls, tc)
        return pieces

    def turn(self) -> ModelTurn:
        seen: set[str] = set()
        tool_calls = [
            ToolCall(
                id=unique_id(p.id, seen),
                name=p.name,
                arguments=parse_arguments("".join(p.arguments)),
            )
            for _, p in sorted(self.calls.items())
            if p.name
        ]
        return ModelTurn(
            text="".join(self.text),
            tool_calls=tool_calls,
            thought="".join(self.thought) or None,
            usage=self.usage,
            stop_reason=_stop_reason(self.finish, bool(tool_calls)),
            model=self.model,
        )


@dataclass
class _PartialCall:
    id: str | None = None
    name: str = ""
    arguments: list[str] = field(default_factory=list)


def _merge_call_delta(calls: dict[int, _PartialCall], tc: Any) -> None:
    """Tool calls arrive in pieces keyed by `index`: id and name once, arguments in fragments.
    Some servers omit `index`; then a new id starts a new call and fragments extend the last."""
    index = tc.index
    if index is None:
        same = [i for i, p in calls.items() if tc.id and p.id == tc.id]
        if same:
            index = same[0]
        elif tc.id or not calls:
            index = len(calls)
        else:
            index = max(calls)
    partial = calls.setdefault(index, _PartialCall())
    if tc.id:
        partial.id = tc.id
    fn = tc.function
    if fn is not None:
        if fn.name and not partial.name:
            partial.name = fn.name
        if fn.arguments:
            partial.arguments.append(fn.arguments)


def to_openai_messages(messages: Sequence[Message], system: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if system:
        out.append({"role": "system", "content": system})
    for m in messages:
        if m.role == "user":
            out.append({"role": "user", "content": _user_content(m)})
        elif m.role == "assistant":
            item: dict[str, Any] = {"role": "assistant", "content": m.content or None}
            if m.tool_calls:
                item["tool_calls"] = [
                    {
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": dump_arguments(c.arguments)},
                    }
                    for c in m.tool_calls
                ]
            out.append(item)
        else:
            # Chat completions has no error flag on tool results; say it in the text.
            content = f"ERROR: {m.content}" if m.is_error else m.content
            out.append({"role": "tool", "tool_call_id": m.tool_call_id or "", "content": content})
    return out


def _tool_choice(config: GenerationConfig, tools: Sequence[ToolSpec]) -> Any:
    mode = config.tool_choice
    if mode is None:
        return None
    if mode == "any":
        if len(tools) == 1 and config.allowed_tools:
            return {"type": "function", "function": {"name": tools[0].name}}
        return "required"
    return "none" if mode == "none" else "auto"  # validated: the schema is the server's


def _user_content(m: Message) -> str | list[dict[str, Any]]:
    """Plain text, or text and `image_url` parts (inline data as a `data:` URL)."""
    if not m.media:
        return m.content
    parts: list[dict[str, Any]] = [{"type": "text", "text": m.content}] if m.content else []
    for media in m.media:
        if media.kind != "image":
            raise ConfigError(f"openai: {media.kind} input is not supported")
        url = media.uri or f"data:{media.mime_type};base64,{media.data}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts


def usage_from_openai(usage: Any) -> Usage:
    if usage is None:
        return Usage()
    completion = usage.completion_tokens or 0
    details = usage.completion_tokens_details
    reasoning = (details.reasoning_tokens or 0) if details is not None else 0
    prompt_details = usage.prompt_tokens_details
    cached = (prompt_details.cached_tokens or 0) if prompt_details is not None else 0
    return Usage(
        input_tokens=usage.prompt_tokens or 0,
        output_tokens=max(0, completion - reasoning),
        thought_tokens=reasoning,
        cached_tokens=cached,
    )


def _reasoning_of(obj: Any) -> str | None:
    """vLLM, DeepSeek and llama.cpp put reasoning in `reasoning_content` (or `reasoning`)."""
    extra = getattr(obj, "model_extra", None) or {}
    for key in ("reasoning_content", "reasoning"):
        value = extra.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _stop_reason(finish: str | None, has_calls: bool) -> str:
    if has_calls:
        return "tool_use"
    if finish is None:
        return "end_turn"
    return _STOP_REASONS.get(finish, finish)


def classify_error(
    exc: Exception, timeouts: Timeouts | None = None, *, streaming: bool = False
) -> Failure | None:
    if isinstance(exc, openai.APIStatusError):
        return status_failure(
            "openai",
            exc.status_code,
            _detail(exc),
            parse_retry_after(exc.response.headers),
        )
    fault = fault_failure("openai", exc, timeouts, streaming=streaming)
    if fault is not None:
        return fault
    if isinstance(exc, openai.APIConnectionError):
        return connection_failure("openai", exc.__cause__ or exc)
    if isinstance(exc, openai.OpenAIError):
        return Failure(ProviderError(one_line(f"openai: {exc}")), retryable=False)
    return None


def _detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message")
        if isinstance(message, str):
            return message
        return json.dumps(body)[:300]
    return exc.message
