"""Gemini through the official `google-genai` SDK (`client.aio.models.generate_content`)."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from runtime.errors import ConfigError, ProviderAuthError, ProviderError
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

SYNTH_PREFIX = "corral"
"""Ids we made up for function calls Gemini sent without one; never sent back to Gemini."""

_STOP_REASONS = {
    "STOP": "end_turn",
    "MAX_TOKENS": "max_tokens",
    "SAFETY": "refusal",
    "RECITATION": "refusal",
    "BLOCKLIST": "refusal",
    "PROHIBITED_CONTENT": "refusal",
    "SPII": "refusal",
}


class GeminiProvider:
    name = "gemini"

    def __init__(
        self,
        model: str,
        *,
        api_key: str | None = None,
        base_url: str | None = None,
        retry: RetryPolicy | None = None,
        timeouts: Timeouts | None = None,
    ) -> None:
        if not api_key:
            raise ConfigError("gemini: no API key: set GEMINI_API_KEY (or GOOGLE_API_KEY)")
        self.model = model
        self._retry = retry or RetryPolicy()
        self._timeouts = t = timeouts or Timeouts()
        http_options = types.HttpOptions(
            base_url=base_url,
            # v1beta carries every field used here (JSON-schema tools and responses, thought
            # signatures); pinning it keeps the wire stable across SDK versions.
            api_version="v1beta",
            # Also sent as X-Server-Timeout, Gemini's own deadline for the whole answer.
            timeout=None if t.response is None else int(t.response * 1000),
            # The SDK sends that one number as every httpx timeout of every request; this
            # hook, run by the SDK's httpx client before each send, puts ours in its place.
            async_client_args={"event_hooks": {"request": [_RequestTimeouts(t)]}},
            # attempts=1: retry.py is the only retry loop.
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        self._client = genai.Client(api_key=api_key, vertexai=False, http_options=http_options)

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        config: GenerationConfig | None = None,
        on_text: TextCallback | None = None,
    ) -> ModelTurn:
        contents = to_gemini_contents(messages)
        gen_config = self._config(system, tools, config or GenerationConfig())
        streamed = False
        timeouts = self._timeouts

        def classify(exc: Exception) -> Failure | None:
            return classify_error(exc, timeouts, streaming=on_text is not None)

        async def attempt() -> ModelTurn:
            nonlocal streamed
            acc = _Accumulator()
            if on_text is None:
                response = await self._client.aio.models.generate_content(
                    model=self.model, contents=contents, config=gen_config
                )
                acc.add_checked(response)
                if not acc.answered:
                    raise empty_reply()
                return acc.turn(self.model)
            stream: AsyncIterator[
                types.GenerateContentResponse
            ] = await self._client.aio.models.generate_content_stream(
                model=self.model, contents=contents, config=gen_config
            )
            chunks = 0
            async for chunk in stream:
                chunks += 1
                for text in acc.add_checked(chunk):
                    streamed = True
                    await on_text(text)
            if chunks == 0:
                raise empty_reply()
            if not acc.finished:
                # The last chunk carries finishReason (or the prompt's blockReason).
                raise cut_short()
            return acc.turn(self.model)

        return await call_with_retries(
            attempt, policy=self._retry, classify=classify, committed=lambda: streamed
        )

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()

    def _config(
        self, system: str | None, tools: Sequence[ToolSpec], config: GenerationConfig
    ) -> types.GenerateContentConfig:
        cfg = types.GenerateContentConfig(
            system_instruction=system or None,
            temperature=config.temperature,
            top_p=config.top_p,
            max_output_tokens=config.max_output_tokens,
            stop_sequences=list(config.stop) if config.stop else None,
            seed=config.seed,
            # The loop runs the tools; the SDK must not try to call Python functions itself.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
        )
        tools = offered_tools(tools, config)
        if config.thinking_level is not None:
            level = "high" if config.thinking_level == "xhigh" else config.thinking_level
            cfg.thinking_config = types.ThinkingConfig(
                thinking_level=types.ThinkingLevel(level.upper()), include_thoughts=True
            )
        if tools and config.tool_choice is not None:
            cfg.tool_config = types.ToolConfig(
                function_calling_config=types.FunctionCallingConfig(
                    mode=types.FunctionCallingConfigMode(config.tool_choice.upper()),
                    allowed_function_names=(
                        [t.name for t in tools]
                        if config.allowed_tools and config.tool_choice in ("any", "validated")
                        else None
                    ),
                )
            )
        if tools:
            cfg.tools = [
                types.Tool(
                    function_declarations=[
                        types.FunctionDeclaration(
                            name=t.name,
                            description=t.description,
                            parameters_json_schema=t.parameters,
                        )
                        for t in tools
                    ]
                )
            ]
        if config.response_schema is not None:
            cfg.response_mime_type = "application/json"
            cfg.response_json_schema = config.response_schema
        elif config.json_mode:
            cfg.response_mime_type = "application/json"
        return cfg


class _RequestTimeouts:
    """An httpx request hook: the connect timeout, and for streams (`alt=sse`, the wire form
    of streamGenerateContent) the idle timeout as the read timeout, which httpx applies to
    each read."""

    def __init__(self, t: Timeouts) -> None:
        self._stream = {"connect": t.connect, "read": t.idle, "write": t.idle, "pool": t.connect}
        self._call = {
            "connect": t.connect,
            "read": t.response,
            "write": t.response,
            "pool": t.connect,
        }

    async def __call__(self, request: httpx.Request | httpx2.Request) -> None:
        streaming = request.url.params.get("alt") == "sse"
        request.extensions["timeout"] = dict(self._stream if streaming else self._call)


@dataclass
class _Accumulator:
    """Folds one response, or the chunks of a stream, into a `ModelTurn`."""

    text: list[str] = field(default_factory=list)
    thought: list[str] = field(default_factory=list)
    calls: list[ToolCall] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    signature: str | None = None
    finish: str | None = None
    blocked: str | None = None
    usage: Usage = field(default_factory=Usage)
    model: str | None = None
    answered: bool = False
    """A candidate came, or the prompt was blocked (else the reply was empty)."""

    @property
    def finished(self) -> bool:
        return self.finish is not None or self.blocked is not None

    def add_checked(self, response: types.GenerateContentResponse) -> list[str]:
        """`add`, with a reply of the wrong shape as a protocol fault."""
        if not isinstance(response, types.GenerateContentResponse):
            raise malformed("not a generateContent response")
        try:
            return self.add(response)
        except (AttributeError, TypeError, ValueError) as exc:
            raise malformed("not a generateContent response") from exc

    def add(self, response: types.GenerateContentResponse) -> list[str]:
        """Returns the new visible text pieces."""
        new_text: list[str] = []
        self.model = response.model_version or self.model
        if response.usage_metadata is not None:
            # Each streamed chunk carries the running totals; the last one wins.
            self.usage = usage_from_gemini(response.usage_metadata)
        if response.prompt_feedback is not None and response.prompt_feedback.block_reason:
            self.blocked = str(response.prompt_feedback.block_reason.value)
            self.answered = True
        if not response.candidates:
            return new_text
        self.answered = True
        candidate = response.candidates[0]
        if candidate.finish_reason is not None:
            self.finish = str(candidate.finish_reason.value)
        parts = candidate.content.parts if candidate.content is not None else None
        for part in parts or []:
            signature = _encode_signature(part.thought_signature)
            if part.function_call is not None:
                fc = part.function_call
                self.calls.append(
                    ToolCall(
                        id=unique_id(fc.id, self.seen, SYNTH_PREFIX),
                        name=fc.name or "",
                        arguments=dict(fc.args or {}),
                        thought_signature=signature,
                    )
                )
                continue
            if signature is not None and self.signature is None:
                self.signature = signature
            if part.text:
                if part.thought:
                    self.thought.append(part.text)
                else:
                    self.text.append(part.text)
                    new_text.append(part.text)
        return new_text

    def turn(self, default_model: str) -> ModelTurn:
        if self.calls:
            stop = "tool_use"
        elif self.blocked and not self.text:
            stop = "refusal"
        else:
            stop = _STOP_REASONS.get(self.finish or "STOP", (self.finish or "").lower())
        return ModelTurn(
            text="".join(self.text),
            tool_calls=self.calls,
            thought="".join(self.thought) or None,
            usage=self.usage,
            stop_reason=stop,
            model=self.model or default_model,
            thought_signature=self.signature,
        )


def to_gemini_contents(messages: Sequence[Message]) -> list[types.Content]:
    """Neutral messages -> Gemini contents. Function responses name their function (Gemini
    matches on it) and carry the call's id only when Gemini gave one."""
    names: dict[str, str] = {}
    contents: list[types.Content] = []

    def add(role: str, parts: list[types.Part]) -> None:
        # Consecutive tool results must arrive together, in one user content.
        if contents and contents[-1].role == role and contents[-1].parts is not None:
            contents[-1].parts.extend(parts)
        else:
            contents.append(types.Content(role=role, parts=parts))

    for m in messages:
        if m.role == "user":
            add("user", _user_parts(m))
        elif m.role == "assistant":
            parts: list[types.Part] = []
            signature = _decode_signature(m.thought_signature)
            if m.content or signature is not None:
                parts.append(types.Part(text=m.content, thought_signature=signature))
            for c in m.tool_calls:
                names[c.id] = c.name
                parts.append(
                    types.Part(
                        function_call=types.FunctionCall(
                            id=_wire_id(c.id), name=c.name, args=c.arguments
                        ),
                        thought_signature=_decode_signature(c.thought_signature),
                    )
                )
            add("model", parts or [types.Part(text="")])
        else:
            call_id = m.tool_call_id or ""
            name = m.name or names.get(call_id) or "unknown"
            key = "error" if m.is_error else "output"
            add(
                "user",
                [
                    types.Part(
                        function_response=types.FunctionResponse(
                            id=_wire_id(call_id), name=name, response={key: m.content}
                        )
                    )
                ],
            )
    return contents


def _user_parts(m: Message) -> list[types.Part]:
    """Text, then media: inline bytes as `inline_data`, URIs as `file_data`."""
    parts = [types.Part(text=m.content)] if m.content or not m.media else []
    for media in m.media:
        if media.uri:
            parts.append(
                types.Part(file_data=types.FileData(file_uri=media.uri, mime_type=media.mime_type))
            )
        else:
            raw = base64.b64decode(media.data or "")
            parts.append(types.Part(inline_data=types.Blob(data=raw, mime_type=media.mime_type)))
    return parts


def _wire_id(call_id: str) -> str | None:
    return None if not call_id or call_id.startswith(SYNTH_PREFIX + "_") else call_id


def _encode_signature(raw: bytes | None) -> str | None:
    return base64.b64encode(raw).decode("ascii") if raw else None


def _decode_signature(text: str | None) -> bytes | None:
    if not text:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None  # not ours (another provider's signature): drop rather than fail


def usage_from_gemini(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    return Usage(
        input_tokens=(meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0),
        output_tokens=meta.candidates_token_count or 0,
        thought_tokens=meta.thoughts_token_count or 0,
        cached_tokens=meta.cached_content_token_count or 0,
    )


def classify_error(
    exc: Exception, timeouts: Timeouts | None = None, *, streaming: bool = False
) -> Failure | None:
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        detail = exc.message or str(exc.status or "") or str(exc)
        if code == 400 and "API_KEY_INVALID" in str(exc.details):
            # Gemini reports a bad key as 400 INVALID_ARGUMENT, not 401.
            return Failure(
                ProviderAuthError(one_line(f"gemini: HTTP 400: {detail}")), retryable=False
            )
        headers = getattr(exc.response, "headers", None)
        retry_after = parse_retry_after(headers) if headers is not None else None
        if retry_after is None:
            retry_after = _retry_info_delay(exc.details)
        return status_failure("gemini", code, detail, retry_after)
    # The SDK re-raises a body that is not JSON as UnknownApiResponseError from the
    # JSONDecodeError; fault_failure reads the cause (and never quotes the body).
    fault = fault_failure("gemini", exc, timeouts, streaming=streaming)
    if fault is not None:
        return fault
    if isinstance(exc, httpx.TransportError | httpx2.TransportError):
        return connection_failure("gemini", exc)
    if isinstance(exc, genai_errors.UnknownApiResponseError):
        return Failure(ProviderError(one_line(f"gemini: {exc}")), retryable=False)
    return None


def _retry_info_delay(details: Any) -> float | None:
    """Gemini's 429 says how long to wait in a google.rpc.RetryInfo detail ("retryDelay": "7s")."""
    error = details.get("error", details) if isinstance(details, dict) else None
    items = error.get("details") if isinstance(error, dict) else None
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(item.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None
