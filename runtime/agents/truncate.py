"""Keeping tool output and conversations within a model's context."""

from __future__ import annotations

from collections.abc import Sequence

from runtime.providers.base import Message

TOOL_RESULT_LIMIT = 16_000
"""Characters of one tool result shown to the model (head + tail)."""
OLD_RESULT_LIMIT = 1_000
"""Characters kept of tool results that are no longer recent."""


def head_tail(text: str, limit: int = TOOL_RESULT_LIMIT) -> str:
    """Keep the start and the end, which carry the command and its verdict; mark the cut."""
    if len(text) <= limit:
        return text
    half = max(limit // 2 - 60, 1)
    cut = len(text) - 2 * half
    return f"{text[:half]}\n[... {cut} characters truncated ...]\n{text[-half:]}"


def estimate_tokens(messages: Sequence[Message]) -> int:
    chars = 0
    for m in messages:
        chars += len(m.content) + len(m.thought or "")
        for c in m.tool_calls:
            chars += len(c.name) + len(str(c.arguments))
    return chars // 4 + 4 * len(messages)


def fit_context(
    messages: list[Message], budget_tokens: int, *, keep_recent: int = 6
) -> list[Message]:
    """Shrink a conversation to about `budget_tokens`.

    First shorten old tool results (the bulk of agent context), then drop the oldest exchanges
    after the first user message. Tool-call / tool-result pairs are dropped together so the
    history stays valid for every provider.
    """
    if estimate_tokens(messages) <= budget_tokens:
        return messages
    out = list(messages)
    for i, m in enumerate(out[: max(len(out) - keep_recent, 0)]):
        if m.role == "tool" and len(m.content) > OLD_RESULT_LIMIT:
            out[i] = Message(
                role="tool",
                content=head_tail(m.content, OLD_RESULT_LIMIT),
                tool_call_id=m.tool_call_id,
                name=m.name,
                is_error=m.is_error,
            )
    while estimate_tokens(out) > budget_tokens and len(out) > keep_recent + 1:
        # Drop the oldest assistant message after the first user turn, with its tool results.
        idx = next((i for i, m in enumerate(out) if i > 0 and m.role == "assistant"), None)
        if idx is None or idx >= len(out) - keep_recent:
            break
        end = idx + 1
        while end < len(out) and out[end].role == "tool":
            end += 1
        del out[idx:end]
    return out
