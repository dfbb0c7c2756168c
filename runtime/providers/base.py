"""The model-provider interface and the neutral types every provider speaks.

The agent loop holds a `ModelProvider` and calls `complete()` once per step with the whole
conversation so far; each implementation (openai.py, anthropic.py, gemini.py, scripted.py)
translates these types to its SDK and back. Nothing here imports an SDK.

Token accounting is the same for every provider:
- `input_tokens` counts the whole prompt, cached part included (`cached_tokens` is that part);
- `output_tokens` counts visible output only; reasoning is in `thought_tokens`;
- `total` is input + output + thought.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

Role = Literal["user", "assistant", "tool"]
MediaKind = Literal["image", "audio", "video", "document"]
ToolChoice = Literal["auto", "none", "any", "validated"]
ThinkingLevel = Literal["minimal", "low", "medium", "high", "xhigh"]
THINKING_LEVELS: tuple[ThinkingLevel, ...] = ("minimal", "low", "medium", "high", "xhigh")

MEDIA_KINDS: dict[str, dict[MediaKind, frozenset[str]]] = {
    # provider -> media kind -> the MIME types it takes ("*" any of that kind).
    "openai": {"image": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})},
    "anthropic": {
        "image": frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"}),
        "document": frozenset({"application/pdf"}),
    },
    "gemini": {
        "image": frozenset({"*"}),
        "audio": frozenset({"*"}),
        "video": frozenset({"*"}),
        "document": frozenset({"*"}),
    },
    "scripted": {},
}
"""Input media each provider accepts; anything else is refused (400) before a run starts."""


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call."""

    name: str
    description: str
    parameters: dict[str, Any]
    """JSON Schema of the arguments (an object schema)."""


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for; `id` is never empty and unique within a run."""

    id: str
    name: str
    arguments: dict[str, Any]
    thought_signature: str | None = None
    """Opaque per-call signature (Gemini attaches one to function-call parts); send it back
    unchanged by keeping the `ToolCall` in the assistant `Message`."""


@dataclass(frozen=True)
class Media:
    """An image, audio, video or document in a user turn: inline bytes or a URI."""

    kind: MediaKind
    mime_type: str | None = None
    data: str | None = None
    """Base64 (standard alphabet), as the Interactions API carries it."""
    uri: str | None = None
    """An http(s) URL (or a provider file URI such as `gs://` for Gemini)."""


@dataclass
class Message:
    role: Role
    content: str = ""
    media: list[Media] = field(default_factory=list)
    """User only: media that follow the text."""
    tool_calls: list[ToolCall] = field(default_factory=list)
    """Assistant only."""
    tool_call_id: str | None = None
    """Tool only: the `ToolCall.id` this result answers."""
    name: str | None = None
    """Tool only: the function name."""
    is_error: bool = False
    """Tool only: the call failed; `content` says why."""
    thought: str | None = None
    """Assistant only: reasoning text, kept for providers that need it back."""
    thought_signature: str | None = None
    """Opaque, provider-specific, round-tripped unchanged."""


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    thought_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens + self.thought_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            thought_tokens=self.thought_tokens + other.thought_tokens,
            cached_tokens=self.cached_tokens + other.cached_tokens,
        )


@dataclass
class GenerationConfig:
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    stop: list[str] | None = None
    seed: int | None = None
    response_schema: dict[str, Any] | None = None
    """JSON Schema the final text must match (structured output)."""
    json_mode: bool = False
    """The answer must be JSON (any shape) when no `response_schema` is given."""
    tool_choice: ToolChoice | None = None
    """`auto`, `none` (never call a tool), `any` (must call one), `validated` (Gemini's mode:
    calls checked against the schema; `auto` elsewhere)."""
    allowed_tools: list[str] | None = None
    """Only these function names are offered to the model."""
    thinking_level: ThinkingLevel | None = None
    """Reasoning effort (OpenAI), thinking budget (Anthropic), thinking level (Gemini)."""
    thinking_summaries: bool = True
    """Record the model's thought summaries as `thought` steps (False: signatures only)."""


def offered_tools(tools: Sequence[ToolSpec], config: GenerationConfig) -> list[ToolSpec]:
    """The tools a provider sends: all of them, or the `allowed_tools` among them."""
    if config.allowed_tools is None:
        return list(tools)
    allowed = set(config.allowed_tools)
    return [t for t in tools if t.name in allowed]


@dataclass
class ModelTurn:
    """What one `complete()` call produced."""

    text: str
    tool_calls: list[ToolCall]
    thought: str | None
    usage: Usage
    stop_reason: str
    """`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, `refusal` or the provider's own."""
    model: str
    thought_signature: str | None = None

    def to_message(self) -> Message:
        """The assistant message to append to the conversation (keeps signatures)."""
        return Message(
            role="assistant",
            content=self.text,
            tool_calls=list(self.tool_calls),
            thought=self.thought,
            thought_signature=self.thought_signature,
        )


TextCallback = Callable[[str], Awaitable[None]]

DEFAULT_IDLE_TIMEOUT = 120.0
"""Reasoning models and CPU-bound local servers can be silent for over a minute before their
first token; a stream silent for longer than this is taken as stalled."""


@dataclass(frozen=True)
class Timeouts:
    """How long one attempt of a provider call may wait, in seconds (None: no limit).

    Each provider hands these to its SDK's HTTP client, where a read timeout bounds every
    single read: on a stream that is an idle timeout (no byte for `idle` seconds fails the
    attempt, and the retry policy decides what next), not a cap on the whole answer.
    """

    connect: float | None = 10.0
    idle: float | None = DEFAULT_IDLE_TIMEOUT
    """Streaming: the longest silence, the wait for the first byte included."""
    response: float | None = 600.0
    """Not streaming: the longest wait for the answer, which comes only once it is whole."""


@runtime_checkable
class ModelProvider(Protocol):
    name: str
    """`openai`, `anthropic`, `gemini` or `scripted`."""
    model: str

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        config: GenerationConfig | None = None,
        on_text: TextCallback | None = None,
    ) -> ModelTurn:
        """One model turn. `on_text` receives visible text as it streams (when supported).

        Raises `runtime.errors.ProviderError` (or a subclass) after retries are spent.
        """
        ...

    async def aclose(self) -> None: ...
