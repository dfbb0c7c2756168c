"""Server configuration beyond `Settings`: keys and their policies, body caps, connection
limits, stream and webhook timing.

Read from the environment once (`ApiConfig.from_env`) or built directly by tests.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from runtime.api.auth import ApiKeys, load_api_keys
from runtime.api.bodylimit import JSON_LIMIT, UPLOAD_LIMIT
from runtime.api.server import ServerLimits
from runtime.api.sse import HEARTBEAT_SECONDS
from runtime.errors import ConfigError
from runtime.settings import Settings
from runtime.webhooks import RetryPolicy

T = TypeVar("T", int, float)


@dataclass(frozen=True)
class ApiConfig:
    keys: ApiKeys = field(default_factory=ApiKeys)
    json_limit: int = JSON_LIMIT
    upload_limit: int = UPLOAD_LIMIT
    heartbeat: float = HEARTBEAT_SECONDS
    allow_scripted: bool | None = None
    """May callers name `scripted:FILE` models (a file on the server)? None: only single-user."""
    webhook_policy: RetryPolicy = field(default_factory=RetryPolicy)
    webhook_poll: float = 1.0
    reap_interval: float = 60.0
    server: ServerLimits = field(default_factory=ServerLimits)
    """Connection limits and timeouts of the uvicorn server (`runtime.api.server`)."""

    @property
    def scripted_allowed(self) -> bool:
        return self.keys.single_user if self.allow_scripted is None else self.allow_scripted

    @classmethod
    def from_env(cls, settings: Settings, env: Mapping[str, str] | None = None) -> ApiConfig:
        env = os.environ if env is None else env
        allow = env.get("CORRAL_ALLOW_SCRIPTED")
        return cls(
            keys=load_api_keys(settings.home, env),
            json_limit=_num(env, "CORRAL_MAX_BODY", JSON_LIMIT, int),
            upload_limit=_num(env, "CORRAL_MAX_UPLOAD", UPLOAD_LIMIT, int),
            heartbeat=_num(env, "CORRAL_SSE_HEARTBEAT", HEARTBEAT_SECONDS, float),
            allow_scripted=None if allow is None else allow.lower() in ("1", "true", "yes"),
            webhook_policy=RetryPolicy(
                max_attempts=_num(env, "CORRAL_WEBHOOK_MAX_ATTEMPTS", 8, int),
                base_delay=_num(env, "CORRAL_WEBHOOK_BASE_DELAY", 2.0, float),
            ),
            webhook_poll=_num(env, "CORRAL_WEBHOOK_POLL", 1.0, float),
            server=ServerLimits.from_env(env),
        )


def _num(env: Mapping[str, str], name: str, default: T, kind: type[T]) -> T:
    raw = env.get(name)
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from exc
    if value <= 0:
        raise ConfigError(f"{name} must be positive")
    return value
