"""A provider that replays model turns from a YAML or JSON file: tests, demos, reproducible CI.

File format (a bare list of turns is accepted too)::

    turns:
      - text: "Looking around first."          # optional
        thought: "..."                          # optional
        tool_calls:                             # optional
          - name: exec
            arguments: {command: "uname -a"}
        usage: {input_tokens: 10, output_tokens: 5}   # optional; estimated when absent
        delay: 0.5                              # optional seconds before the turn returns

`${task}` in any string is replaced by the first user message, so a script can refer to the
task it was given (it is plain text substitution: keep it out of shell commands).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from runtime.errors import ConfigError
from runtime.providers.base import (
    GenerationConfig,
    Message,
    ModelTurn,
    TextCallback,
    ToolCall,
    ToolSpec,
    Usage,
)
from runtime.providers.ids import new_call_id

EXHAUSTED_TEXT = "The scripted model has no more turns; ending the run."
TASK_PLACEHOLDER = "${task}"
_TURN_KEYS = {"text", "thought", "tool_calls", "usage", "delay"}
_USAGE_KEYS = {"input_tokens", "output_tokens", "thought_tokens", "cached_tokens"}


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ScriptedTurn:
    text: str = ""
    thought: str | None = None
    tool_calls: tuple[ScriptedCall, ...] = ()
    usage: Usage | None = None
    delay: float = 0.0


class ScriptedProvider:
    name = "scripted"

    def __init__(
        self,
        turns: Sequence[ScriptedTurn],
        *,
        model: str = "script",
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.model = model
        self._turns = list(turns)
        self._next = 0
        self._started = False
        self._sleep = sleep

    @classmethod
    def from_file(cls, path: str | Path, *, model: str | None = None) -> ScriptedProvider:
        p = Path(path).expanduser()
        return cls(load_script(p), model=model or str(p))

    @property
    def remaining(self) -> int:
        return len(self._turns) - self._next

    async def complete(
        self,
        messages: Sequence[Message],
        *,
        system: str | None = None,
        tools: Sequence[ToolSpec] = (),
        config: GenerationConfig | None = None,
        on_text: TextCallback | None = None,
    ) -> ModelTurn:
        prompt_tokens = _estimate_prompt(messages, system, tools)
        if not self._started:
            # A follow-up (previous_interaction_id, --continue) arrives with the earlier turns
            # in its history: carry on from there instead of replaying turn 0.
            self._started = True
            self._next = sum(1 for m in messages if m.role == "assistant")
        if self._next >= len(self._turns):
            return ModelTurn(
                text=EXHAUSTED_TEXT,
                tool_calls=[],
                thought=None,
                usage=Usage(input_tokens=prompt_tokens, output_tokens=_estimate(EXHAUSTED_TEXT)),
                stop_reason="end_turn",
                model=self.model,
            )
        turn = self._turns[self._next]
        self._next += 1
        task = next((m.content for m in messages if m.role == "user"), "")
        text = turn.text.replace(TASK_PLACEHOLDER, task)
        calls = [
            ToolCall(id=new_call_id(), name=c.name, arguments=_substitute(c.arguments, task))
            for c in turn.tool_calls
        ]
        if turn.delay > 0:
            await self._sleep(turn.delay)
        if on_text is not None:
            for chunk in _chunks(text):
                await on_text(chunk)
        usage = turn.usage or Usage(
            input_tokens=prompt_tokens,
            output_tokens=_estimate(text + "".join(json.dumps(c.arguments) for c in calls)),
            thought_tokens=_estimate(turn.thought or ""),
        )
        return ModelTurn(
            text=text,
            tool_calls=calls,
            thought=turn.thought,
            usage=usage,
            stop_reason="tool_use" if calls else "end_turn",
            model=self.model,
        )

    async def aclose(self) -> None:
        return None


def load_script(path: Path) -> list[ScriptedTurn]:
    """Read and validate a script file; errors name the file, the turn and the field."""
    try:
        raw = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"scripted: cannot read {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else yaml.safe_load(raw)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError(f"scripted: {path}: not valid {_kind(path)}: {detail}") from exc
    return parse_script(data, source=str(path))


def parse_script(data: Any, *, source: str = "<script>") -> list[ScriptedTurn]:
    if isinstance(data, dict):
        unknown = set(data) - {"turns"}
        if unknown:
            raise ConfigError(f"scripted: {source}: unknown top-level key(s) {sorted(unknown)}")
        data = data.get("turns")
    if not isinstance(data, list):
        raise ConfigError(f"scripted: {source}: expected `turns:` (a list of turns) or a list")
    return [_parse_turn(item, source, i) for i, item in enumerate(data)]


@dataclass
class _Where:
    source: str
    index: int

    def fail(self, field_name: str, problem: str) -> ConfigError:
        return ConfigError(f"scripted: {self.source}: turn {self.index}: {field_name}: {problem}")


def _parse_turn(item: Any, source: str, index: int) -> ScriptedTurn:
    where = _Where(source, index)
    if not isinstance(item, dict):
        raise where.fail("turn", "expected a mapping with text and/or tool_calls")
    unknown = set(item) - _TURN_KEYS
    if unknown:
        raise where.fail(sorted(unknown)[0], f"unknown field (allowed: {sorted(_TURN_KEYS)})")
    text = item.get("text", "")
    if not isinstance(text, str):
        raise where.fail("text", "must be a string")
    thought = item.get("thought")
    if thought is not None and not isinstance(thought, str):
        raise where.fail("thought", "must be a string")
    calls = _parse_calls(item.get("tool_calls") or [], where)
    if not text and not calls:
        raise where.fail("text", "a turn needs text or tool_calls")
    delay = item.get("delay", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0:
        raise where.fail("delay", "must be a number of seconds >= 0")
    return ScriptedTurn(
        text=text,
        thought=thought,
        tool_calls=calls,
        usage=_parse_usage(item.get("usage"), where),
        delay=float(delay),
    )


def _parse_calls(raw: Any, where: _Where) -> tuple[ScriptedCall, ...]:
    if not isinstance(raw, list):
        raise where.fail("tool_calls", "must be a list")
    calls = []
    for j, call in enumerate(raw):
        field_name = f"tool_calls[{j}]"
        if not isinstance(call, dict):
            raise where.fail(field_name, "expected a mapping with name and arguments")
        unknown = set(call) - {"name", "arguments"}
        if unknown:
            raise where.fail(f"{field_name}.{sorted(unknown)[0]}", "unknown field")
        name = call.get("name")
        if not isinstance(name, str) or not name:
            raise where.fail(f"{field_name}.name", "must be a non-empty string")
        arguments = call.get("arguments", {})
        if arguments is None:
            arguments = {}
        if not isinstance(arguments, dict):
            raise where.fail(f"{field_name}.arguments", "must be a mapping")
        calls.append(ScriptedCall(name=name, arguments=arguments))
    return tuple(calls)


def _parse_usage(raw: Any, where: _Where) -> Usage | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise where.fail("usage", "must be a mapping")
    for key, value in raw.items():
        if key not in _USAGE_KEYS:
            raise where.fail(f"usage.{key}", f"unknown field (allowed: {sorted(_USAGE_KEYS)})")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise where.fail(f"usage.{key}", "must be an integer >= 0")
    return Usage(**raw)


def _substitute(value: Any, task: str) -> Any:
    if isinstance(value, str):
        return value.replace(TASK_PLACEHOLDER, task)
    if isinstance(value, dict):
        return {k: _substitute(v, task) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, task) for v in value]
    return value


def _chunks(text: str, parts: int = 3) -> list[str]:
    """A few word-aligned pieces, so streaming consumers see more than one delta."""
    if not text:
        return []
    words = text.split(" ")
    size = max(1, -(-len(words) // parts))
    groups = [" ".join(words[i : i + size]) for i in range(0, len(words), size)]
    return [g + " " for g in groups[:-1]] + [groups[-1]]


def _estimate(text: str) -> int:
    return (len(text) + 3) // 4 if text else 0


def _estimate_prompt(
    messages: Sequence[Message], system: str | None, tools: Sequence[ToolSpec]
) -> int:
    size = len(system or "")
    size += sum(
        len(m.content) + len(json.dumps([c.arguments for c in m.tool_calls])) for m in messages
    )
    size += sum(len(t.name) + len(t.description) + len(json.dumps(t.parameters)) for t in tools)
    return (size + 3) // 4


def _kind(path: Path) -> str:
    return "JSON" if path.suffix == ".json" else "YAML"
