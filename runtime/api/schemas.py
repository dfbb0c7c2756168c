"""Request bodies of the HTTP API (pydantic). Responses are the plain JSON views built by
`runtime.views` and the routes, so the wire shape has one source of truth.

Every field carries its range (sizes, counts, finite numbers, strings without NUL), reusing
the types of `sandbox.spec` and the bounds of `runtime.agents.spec`, so nothing reaches a route
unvalidated: a bad field is a 400 naming it, before any work starts.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from runtime.agents.spec import MAX_STEPS, MAX_TIMEOUT, MAX_TOOL_CALLS, MAX_TOTAL_TOKENS
from runtime.errors import ConfigError
from runtime.inference import resolve_model
from runtime.providers.registry import parse_model
from sandbox.spec import (
    MAX_TTL,
    MIN_MEMORY,
    Allowlist,
    Cpus,
    Env,
    Pids,
    Text,
    format_size,
    parse_size,
)

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_COMMAND = 1024**2
"""Characters of one command (string or all argv items)."""


def known_model(v: str) -> str:
    """`provider:model` with a provider we have (or a bare name whose provider we can tell)."""
    try:
        parse_model(resolve_model(v))
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return v


Model = Annotated[str, Field(min_length=1, max_length=512), AfterValidator(known_model)]


def _size_between(low: int, high: int) -> AfterValidator:
    def check(v: int | str) -> int | str:
        n = parse_size(v)
        if not low <= n <= high:
            raise ValueError(f"must be between {format_size(low)} and {format_size(high)}")
        return v  # as the caller wrote it (messages quote it); SandboxSpec converts

    return AfterValidator(check)


# No upper bound here: the key's ceiling (always below SandboxSpec's hard bound) answers that,
# with a message that names it.
MemorySize = Annotated[int | str, _size_between(MIN_MEMORY, 2**63)]
DiskSize = Annotated[int | str, _size_between(1024**2, 2**63)]


def _labels(v: dict[str, str]) -> dict[str, str]:
    if len(v) > 64:
        raise ValueError("at most 64 labels")
    for k, val in v.items():
        if not k or len(k) > 256 or len(val) > 4096 or "\x00" in k + val:
            raise ValueError("non-empty keys up to 256 characters, values up to 4096, no NUL")
    return v


Labels = Annotated[dict[str, str], AfterValidator(_labels)]


def _command(v: str | list[str]) -> str | list[str]:
    parts = [v] if isinstance(v, str) else v
    if any("\x00" in p for p in parts):
        raise ValueError("must not contain a NUL character")
    if sum(len(p) for p in parts) > MAX_COMMAND:
        raise ValueError(f"longer than {MAX_COMMAND} characters")
    return v


class WebhookConfig(BaseModel):
    model_config = ConfigDict(extra="ignore")

    uris: list[str] = Field(default_factory=list, max_length=10)
    """Where to POST the completion notification (http or https)."""
    user_metadata: dict[str, Any] = Field(default_factory=dict)
    """Echoed back in every notification."""


class CreateInteraction(BaseModel):
    """The Interactions create body. Unknown fields are tolerated (the SDK sends some we do not
    use); exactly one of `model` / `agent`."""

    model_config = ConfigDict(extra="allow")

    model: Model | None = None
    """`provider:model` or a bare model name (gemini*, gpt*, o1/o3/o4*, claude*)."""
    agent: str | None = Field(None, max_length=128)
    """A built-in agent or one stored with POST /v1beta/agents."""
    input: Any = None
    """A string, a content object, a list of content objects, or a list of steps."""
    previous_interaction_id: str | None = Field(None, max_length=128)
    background: bool = False
    stream: bool = False
    store: bool = True
    system_instruction: str | None = None
    tools: list[dict[str, Any]] | None = None
    generation_config: dict[str, Any] | None = None
    response_format: dict[str, Any] | list[dict[str, Any]] | None = None
    response_mime_type: str | None = Field(None, max_length=128)
    """`text/plain` or `application/json` (JSON mode; a schema goes in `response_format`)."""
    response_modalities: list[str] | None = Field(None, max_length=8)
    """Only `["text"]`: other output modalities are refused."""
    agent_config: AgentConfig | None = None
    webhook_config: WebhookConfig | None = None
    labels: Labels | None = None

    def unsupported(self) -> list[tuple[str, str]]:
        """Fields the SDK can send that Corral cannot honour: (field, why), for a 400."""
        found: list[tuple[str, str]] = []
        for name, value in (self.model_extra or {}).items():
            if value is None:
                continue
            found.append((name, UNSUPPORTED_FIELDS.get(name, "unknown field")))
        return found

    @model_validator(mode="after")
    def _one_target(self) -> CreateInteraction:
        if bool(self.model) == bool(self.agent):
            raise ValueError("give exactly one of model or agent")
        if self.agent and self.generation_config is not None:
            raise ValueError("generation_config goes with model=; use agent_config with agent=")
        if self.model and self.agent_config is not None:
            raise ValueError("agent_config goes with agent=")
        return self


UNSUPPORTED_FIELDS = {
    "safety_settings": "safety settings are not supported",
    "service_tier": "service tiers are not supported",
    "cached_content": "cached content is not supported",
    "continuation_token": "continuation tokens are not supported (no run ends "
    "requires_continuation)",
    "environment": "environments are not supported; an agent's sandbox comes from its spec",
}


class AgentConfig(BaseModel):
    """What a caller may override of an agent per run (`agent_config`): the SDK's typed
    `{"type": "dynamic", ...}` or an untyped object; the fields are checked against the agent
    spec's bounds, and an unknown field or another `type` is a 400."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["dynamic"] | None = None
    """The SDK's discriminator; Corral's agents are all `dynamic` (defined by their spec)."""

    model: Model | None = None
    max_steps: int | None = Field(default=None, ge=1, le=MAX_STEPS)
    max_tool_calls: int | None = Field(default=None, ge=1, le=MAX_TOOL_CALLS)
    max_total_tokens: int | None = Field(default=None, ge=1, le=MAX_TOTAL_TOKENS)
    timeout: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)


class CreateSandbox(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: Text = Field("corral/base", min_length=1, max_length=256)
    cpus: Cpus | None = None
    """CPU cores (fractions allowed); at most the key's ceiling."""
    memory: MemorySize | None = None
    """Bytes or a size such as `512m`; at most the key's ceiling."""
    disk: DiskSize | None = None
    """Writable /workspace, bytes or a size such as `5g`; at most the key's ceiling."""
    pids: Pids | None = None
    """Processes; at most the key's ceiling."""
    network: Literal["none", "allowlist", "open"] = "none"
    """`open` only for keys the operator allows it."""
    allowlist: Allowlist = Field(default=(), max_length=100)
    env: Env = Field(default_factory=dict)
    ttl: float | None = Field(900.0, gt=0, le=MAX_TTL, allow_inf_nan=False)
    """Idle seconds before the sandbox is removed."""

    @model_validator(mode="after")
    def _allowlist(self) -> CreateSandbox:
        if self.network == "allowlist" and not self.allowlist:
            raise ValueError("allowlist: network allowlist needs at least one domain")
        return self


class BrowserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(..., min_length=1, max_length=64)
    """A browser action: goto, snapshot, click, fill, press, scroll, screenshot, pdf, ..."""
    args: dict[str, Any] = Field(default_factory=dict)
    """The action's arguments, e.g. `{"url": "https://example.com"}` for goto."""
    timeout: float | None = Field(None, gt=0, le=600, allow_inf_nan=False)


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: Annotated[
        str | list[str], Field(min_length=1, max_length=4096), AfterValidator(_command)
    ]
    timeout: float | None = Field(None, gt=0, le=24 * 3600, allow_inf_nan=False)
    cwd: Text | None = Field(None, max_length=4096)
    env: Env | None = None
    stream: bool = False
    """Stream output as it comes: SSE, or NDJSON with `format` / `Accept: application/x-ndjson`."""
    format: Literal["sse", "ndjson"] | None = None
