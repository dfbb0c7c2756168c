"""Tool-call arguments as the model wrote them (a JSON string) -> the dict the loop expects."""

from __future__ import annotations

import json
from typing import Any

RAW_KEY = "_raw_arguments"
"""Arguments that are not a JSON object are passed on under this key, so the tool layer fails
validation and tells the model, instead of the run failing on a model's typo."""


def parse_arguments(raw: str | None) -> dict[str, Any]:
    if raw is None or not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return {RAW_KEY: raw}
    return value if isinstance(value, dict) else {RAW_KEY: raw}


def dump_arguments(arguments: dict[str, Any]) -> str:
    raw = arguments.get(RAW_KEY)
    if len(arguments) == 1 and isinstance(raw, str):
        return raw  # send back exactly what the model wrote
    return json.dumps(arguments, ensure_ascii=False)
