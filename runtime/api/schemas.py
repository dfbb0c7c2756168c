"""Request bodies of the HTTP API (pydantic). Responses are the plain JSON views built by
`runtime.views` and the routes, so the wire shape has one source of truth."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


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

    model: str | None = Field(None, max_length=512)
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
    agent_config: dict[str, Any] | None = None
    webhook_config: WebhookConfig | None = None
    labels: dict[str, str] | None = None

    @model_validator(mode="after")
    def _one_target(self) -> CreateInteraction:
        if bool(self.model) == bool(self.agent):
            raise ValueError("give exactly one of model or agent")
        if self.agent and self.generation_config is not None:
            raise ValueError("generation_config goes with model=; use agent_config with agent=")
        if self.model and self.agent_config is not None:
            raise ValueError("agent_config goes with agent=")
        return self


class AgentConfig(BaseModel):
    """What a caller may override of an agent per run (`agent_config`)."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=512)
    max_steps: int | None = Field(None, ge=1, le=1000)
    max_tool_calls: int | None = Field(None, ge=1, le=10000)
    max_total_tokens: int | None = Field(None, ge=1)
    timeout: float | None = Field(None, gt=0, le=24 * 3600)


class CreateSandbox(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image: str = Field("corral/base", max_length=256)
    cpus: float | None = Field(None, gt=0, le=64)
    memory: int | str | None = None
    """Bytes or a size such as `512m`."""
    network: Literal["none", "allowlist", "open"] = "none"
    allowlist: list[str] = Field(default_factory=list, max_length=100)
    env: dict[str, str] = Field(default_factory=dict)
    ttl: float | None = Field(900.0, gt=0, le=7 * 24 * 3600)
    """Idle seconds before the sandbox is removed."""


class BrowserRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: str = Field(..., min_length=1, max_length=64)
    """A browser action: goto, snapshot, click, fill, press, scroll, screenshot, pdf, ..."""
    args: dict[str, Any] = Field(default_factory=dict)
    """The action's arguments, e.g. `{"url": "https://example.com"}` for goto."""
    timeout: float | None = Field(None, gt=0, le=600)


class ExecRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    command: str | list[str] = Field(..., min_length=1)
    timeout: float | None = Field(None, gt=0, le=24 * 3600)
    cwd: str | None = Field(None, max_length=4096)
    env: dict[str, str] | None = None
    stream: bool = False
    """Stream output as it comes: SSE, or NDJSON with `format` / `Accept: application/x-ndjson`."""
    format: Literal["sse", "ndjson"] | None = None
