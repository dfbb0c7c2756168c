"""`provider:model` strings -> providers, and the default model from the environment."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from runtime.errors import ConfigError
from runtime.providers.base import ModelProvider, Timeouts
from runtime.providers.retry import RetryPolicy

PROVIDERS = ("openai", "anthropic", "gemini", "scripted")
DEMO_SCRIPT = "demo"
"""`scripted:demo` is the bundled script of the demo agent."""

DEFAULT_MODELS = {
    "openai": "openai:gpt-4o-mini",
    "anthropic": "anthropic:claude-sonnet-4-5",
    "gemini": "gemini:gemini-2.5-flash",
}

NO_MODEL_MESSAGE = (
    "no model configured: set CORRAL_MODEL=provider:model or OPENAI_API_KEY / "
    "ANTHROPIC_API_KEY / GEMINI_API_KEY (or use --model scripted:FILE)"
)

_KEY_ENV = {
    "openai": ("OPENAI_API_KEY",),
    "anthropic": ("ANTHROPIC_API_KEY",),
    "gemini": ("GEMINI_API_KEY", "GOOGLE_API_KEY"),
}
IDLE_TIMEOUT_ENV = "CORRAL_PROVIDER_IDLE_TIMEOUT"
"""Seconds a model stream may stay silent before the attempt fails and is retried."""

_BASE_URL_ENV = {
    "openai": "OPENAI_BASE_URL",
    "anthropic": "ANTHROPIC_BASE_URL",
    "gemini": "GOOGLE_GEMINI_BASE_URL",
}


def parse_model(model: str) -> tuple[str, str]:
    """`"openai:gpt-4o-mini"` -> `("openai", "gpt-4o-mini")`; ConfigError when malformed."""
    provider, sep, name = model.strip().partition(":")
    provider = provider.strip().lower()
    if not sep or provider not in PROVIDERS or not name.strip():
        raise ConfigError(
            f"invalid model {model!r}: expected provider:model with provider one of "
            f"{', '.join(PROVIDERS)} (e.g. openai:gpt-4o-mini, scripted:demo)"
        )
    return provider, name.strip()


def make_provider(
    model: str,
    *,
    base_url: str | None = None,
    api_key: str | None = None,
    max_retries: int = 4,
    env: Mapping[str, str] | None = None,
    retry: RetryPolicy | None = None,
    timeouts: Timeouts | None = None,
) -> ModelProvider:
    """Build the provider for `model` (`provider:model`). Keys, base URLs and timeouts not
    given here come from the environment (`env`, default `os.environ`): the provider's usual
    variables, and CORRAL_PROVIDER_IDLE_TIMEOUT."""
    environ = os.environ if env is None else env
    provider, name = parse_model(model)
    if provider == "scripted":
        from runtime.providers.scripted import ScriptedProvider

        return ScriptedProvider.from_file(_script_path(name), model=name)

    policy = retry or RetryPolicy.from_max_retries(max_retries)
    limits = timeouts or timeouts_from_env(environ)
    key = api_key or _first(environ, _KEY_ENV[provider])
    url = base_url or environ.get(_BASE_URL_ENV[provider]) or None
    check_credentials(model, api_key=key, base_url=url, env=environ)
    if provider == "openai":
        from runtime.providers.openai import OpenAIProvider

        return OpenAIProvider(name, api_key=key, base_url=url, retry=policy, timeouts=limits)
    if provider == "anthropic":
        from runtime.providers.anthropic import AnthropicProvider

        return AnthropicProvider(name, api_key=key, base_url=url, retry=policy, timeouts=limits)
    from runtime.providers.gemini import GeminiProvider

    return GeminiProvider(name, api_key=key, base_url=url, retry=policy, timeouts=limits)


def check_credentials(
    model: str,
    *,
    api_key: str | None = None,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
) -> None:
    """ConfigError when `make_provider(model, ...)` would find no API key (nothing is built)."""
    environ = os.environ if env is None else env
    provider, _ = parse_model(model)
    if provider == "scripted":
        return
    key = api_key or _first(environ, _KEY_ENV[provider])
    url = base_url or environ.get(_BASE_URL_ENV[provider]) or None
    if not key and not (url and provider != "gemini"):
        # A keyless local server is fine for OpenAI-compatible (and Anthropic-compatible)
        # endpoints; Gemini always wants a key.
        hint = " (or a base_url for a local server)" if provider == "openai" else ""
        raise ConfigError(f"{model}: no API key: set {' or '.join(_KEY_ENV[provider])}{hint}")


def timeouts_from_env(env: Mapping[str, str] = os.environ) -> Timeouts:
    """The default `Timeouts`, with the idle timeout from CORRAL_PROVIDER_IDLE_TIMEOUT."""
    raw = env.get(IDLE_TIMEOUT_ENV, "").strip()
    if not raw:
        return Timeouts()
    try:
        idle = float(raw)
    except ValueError:
        idle = math.nan
    if not math.isfinite(idle) or idle <= 0:
        raise ConfigError(f"{IDLE_TIMEOUT_ENV} must be a positive number of seconds, not {raw!r}")
    return Timeouts(idle=idle)


def default_model_from_env(env: Mapping[str, str] = os.environ) -> str:
    """CORRAL_MODEL, else the default model of the first provider with a key set."""
    explicit = env.get("CORRAL_MODEL", "").strip()
    if explicit:
        parse_model(explicit)
        return explicit
    # A base URL alone means a local OpenAI-compatible server (make_provider reads it too).
    if env.get("OPENAI_API_KEY") or env.get("OPENAI_BASE_URL"):
        return DEFAULT_MODELS["openai"]
    if env.get("ANTHROPIC_API_KEY"):
        return DEFAULT_MODELS["anthropic"]
    if env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY"):
        return DEFAULT_MODELS["gemini"]
    raise ConfigError(NO_MODEL_MESSAGE)


def demo_script_path() -> Path:
    # Beside the bundled agents; a plain path works for editable and wheel installs alike.
    return Path(__file__).resolve().parent.parent / "agents" / "builtin" / "demo_script.yaml"


def _script_path(name: str) -> Path:
    if name == DEMO_SCRIPT:
        return demo_script_path()
    path = Path(name).expanduser()
    if not path.is_file():
        raise ConfigError(f"scripted: no such script file: {path}")
    return path


def _first(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        value = env.get(name)
        if value:
            return value
    return None
