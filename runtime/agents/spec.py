"""AgentSpec: what an agent is (model, instructions, tools, sandbox shape, limits), from YAML or JSON.

A spec file is YAML; the same shape is accepted as JSON over the HTTP API. Unknown fields are
errors (a typo must not silently fall back to a default). Every problem is reported as one line
`FILE: field.path: reason`, so the first line alone says what to fix.

Host paths (`skills`, `data`) resolve against the spec file's folder. Specs from the API have no
folder: relative paths are refused there, and the API can refuse host paths altogether
(`allow_host_paths=False`), because a tenant must not read the controller's disk.
"""

from __future__ import annotations

import difflib
import posixpath
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PrivateAttr,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runtime.agents.readable import unreadable
from runtime.errors import AgentSpecError
from sandbox.spec import (
    MAX_DISK,
    MAX_MEMORY,
    MIN_MEMORY,
    Cpus,
    DataMount,
    Pids,
    SandboxSpec,
    format_size,
    parse_size,
)

SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MODEL = re.compile(r"^[a-z][a-z0-9_-]*:\S+$")
_DOMAIN = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"
)

# Hard bounds of a run's limits (a spec or an API caller can ask for less, never more).
MAX_STEPS = 1000
MAX_TOOL_CALLS = 10_000
MAX_TOTAL_TOKENS = 1_000_000_000
MAX_TIMEOUT = 7 * 24 * 3600.0
"""A week of wall-clock time."""

WORKSPACE = "/workspace"
DATA_DIR = "/workspace/data"
SKILLS_DIR = "/workspace/skills"
DEFAULT_IMAGE = "corral/base"
BROWSER_IMAGE = "corral/browser"

FILE_TOOLS = ("read_file", "write_file", "edit_file", "list_files")
BuiltinTool = Literal[
    "exec", "python", "files", "read_file", "write_file", "edit_file", "list_files", "browser"
]
BUILTIN_TOOLS: tuple[str, ...] = typing.get_args(BuiltinTool)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FunctionTool(_Model):
    """A client-side function: the run pauses (`requires_action`) until the caller answers."""

    type: Literal["function"] = "function"
    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
    """Function name the model calls."""
    description: str = ""
    """What the function does, for the model."""
    parameters: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})
    """JSON Schema of the arguments object."""


McpTransport = Literal["streamable_http", "sse", "stdio"]
MAX_MCP_TIMEOUT = 3600.0


class McpServerTool(_Model):
    """An MCP server whose tools the agent may call.

    Remote (`streamable_http`, the default with `url`, or legacy `sse`): reached by the
    controller, only when the agent's `network` allows the URL's host. `stdio` (the default
    with `command`): started inside the sandbox, under the sandbox's own network policy.
    """

    type: Literal["mcp_server"] = "mcp_server"
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    """Short name; the model sees the server's tools as `<name>__<tool>`."""
    transport: McpTransport | None = None
    """`streamable_http` (default with `url`), `sse` (legacy) or `stdio` (default with
    `command`)."""
    url: str | None = Field(default=None, pattern=r"^https?://")
    """Endpoint of a remote server."""
    headers: dict[str, str] = Field(default_factory=dict)
    """Extra HTTP headers of a remote server (e.g. Authorization)."""
    command: str | None = Field(default=None, min_length=1)
    """stdio: the program to start in the sandbox (e.g. `python3`)."""
    args: list[str] = Field(default_factory=list)
    """stdio: its arguments."""
    env: dict[str, str] = Field(default_factory=dict)
    """stdio: extra environment variables."""
    cwd: str | None = None
    """stdio: working directory in the sandbox (default /workspace)."""
    allowed_tools: list[str] | None = None
    """Only these tools of the server; None = all it lists."""
    timeout: float = Field(default=60.0, gt=0, le=MAX_MCP_TIMEOUT, allow_inf_nan=False)
    """Seconds one tool call may take before the model gets a timeout error."""

    @field_validator("allowed_tools", mode="before")
    @classmethod
    def _allowed_names(cls, v: Any) -> Any:
        # The Interactions API spells it `[{"mode": ..., "tools": [names]}]`.
        if isinstance(v, list) and any(isinstance(x, Mapping) for x in v):
            names: list[Any] = []
            for x in v:
                names += list(x.get("tools") or []) if isinstance(x, Mapping) else [x]
            return names
        return v

    @model_validator(mode="after")
    def _transport_fields(self) -> McpServerTool:
        transport = self.transport or ("stdio" if self.command else "streamable_http")
        object.__setattr__(self, "transport", transport)
        if transport == "stdio":
            if not self.command:
                raise ValueError("a stdio MCP server needs a command")
            if self.url or self.headers:
                raise ValueError("url and headers are for remote servers, not stdio")
        else:
            if not self.url:
                raise ValueError(f"a {transport} MCP server needs a url")
            if self.command or self.args or self.env or self.cwd:
                raise ValueError("command, args, env and cwd are for stdio servers")
        return self

    @property
    def remote(self) -> bool:
        return self.transport != "stdio"


def _tool_kind(v: Any) -> str | None:
    if isinstance(v, str):
        return "builtin"
    if isinstance(v, Mapping):
        kind = v.get("type")
        return str(kind) if kind in ("function", "mcp_server") else None
    if isinstance(v, FunctionTool):
        return "function"
    if isinstance(v, McpServerTool):
        return "mcp_server"
    return None


Tool = Annotated[
    Annotated[BuiltinTool, Tag("builtin")]
    | Annotated[FunctionTool, Tag("function")]
    | Annotated[McpServerTool, Tag("mcp_server")],
    Discriminator(
        _tool_kind,
        custom_error_type="tool",
        custom_error_message=(
            "a tool is a name (exec, python, files, browser, ...) or an object with "
            "type: function or type: mcp_server"
        ),
    ),
]
_TOOL_TAGS = frozenset({"builtin", "function", "mcp_server"})


class Skill(_Model):
    """A host folder copied into the sandbox under /workspace/skills/<name>."""

    source: Path
    """Host folder (relative paths resolve against the spec file's folder)."""
    name: str = ""
    """Folder name in the sandbox; default: the source folder's name."""


class DataSource(_Model):
    """A host file or folder mounted read-only under /workspace/data."""

    source: Path
    """Host file or folder (relative paths resolve against the spec file's folder)."""
    target: str = ""
    """Name under /workspace/data, or an absolute path below it; default: the source's name."""


class Resources(_Model):
    """Sandbox resources; unset fields keep the sandbox defaults (1 CPU, 1g memory and disk)."""

    cpus: Cpus | None = None
    """CPU cores (fractions allowed), at most 64."""
    memory: int | str | None = None
    """Memory limit, e.g. `2g` (no swap beyond it); at least 32m."""
    disk: int | str | None = None
    """Writable /workspace size, e.g. `5g`."""
    pids: Pids | None = None
    """Maximum number of processes."""
    runtime: Literal["runc", "runsc"] | None = None
    """OCI runtime: `runsc` (gVisor) for a stronger boundary; the run fails (never falls back
    to runc) when the engine does not have it."""

    @field_validator("memory", "disk")
    @classmethod
    def _size(cls, v: int | str | None, info: ValidationInfo) -> int | str | None:
        if v is None:
            return None
        n = parse_size(v)
        low, high = (MIN_MEMORY, MAX_MEMORY) if info.field_name == "memory" else (1, MAX_DISK)
        if n < low:
            raise ValueError(f"{info.field_name} must be at least {format_size(low)}")
        if n > high:
            raise ValueError(f"{info.field_name} must be at most {format_size(high)}")
        return v


class Network(_Model):
    """Outbound network of the sandbox."""

    mode: Literal["none", "allowlist", "open"] = "none"
    """`none` (default), `allowlist` (only `allow`, through Corral's egress proxy) or `open`."""
    allow: list[str] = Field(default_factory=list)
    """Domains for `allowlist`; `*.example.com` also matches subdomains."""

    @field_validator("allow")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = d.strip().lower().rstrip(".")
            if not _DOMAIN.match(d):
                raise ValueError(f"not a domain: {d!r} (use example.com or *.example.com)")
            out.append(d)
        return out

    @model_validator(mode="after")
    def _allow_matches_mode(self) -> Network:
        if self.mode == "allowlist" and not self.allow:
            raise ValueError("mode allowlist needs at least one domain in allow")
        if self.mode != "allowlist" and self.allow:
            raise ValueError(f"allow is only used with mode: allowlist (mode is {self.mode})")
        return self


class Limits(_Model):
    """Budgets of one run; reaching one ends the run with status `budget_exceeded`."""

    max_steps: int = Field(default=30, ge=1, le=MAX_STEPS)
    """Model turns (at most 1000)."""
    max_tool_calls: int = Field(default=100, ge=0, le=MAX_TOOL_CALLS)
    """Tool calls over the whole run (at most 10000)."""
    max_total_tokens: int | None = Field(default=None, ge=1, le=MAX_TOTAL_TOKENS)
    """Input + output tokens over the whole run; None = no limit."""
    timeout: float = Field(default=1800, gt=0, le=MAX_TIMEOUT, allow_inf_nan=False)
    """Wall-clock seconds for the whole run (at most a week)."""


class Generation(_Model):
    """Sampling settings passed to the model."""

    temperature: float | None = Field(default=None, ge=0, le=2, allow_inf_nan=False)
    max_output_tokens: int | None = Field(default=None, ge=1, le=MAX_TOTAL_TOKENS)
    """Per model turn."""


class BrowserOptions(_Model):
    """Options of the browser tools (only used when `tools` lists `browser`)."""

    evaluate: bool = False
    """Offer `browser_evaluate` (run JavaScript in the page). Off by default: page scripts can
    do anything the page can, so an agent gets it only when its spec says so."""


def _default_tools() -> list[Tool]:
    return ["exec", "python", "files"]


class AgentSpec(_Model):
    """One agent: which model, what it is told, which tools, and the sandbox it runs in."""

    name: str
    """Slug: lowercase letters, digits, `-` and `_` (at most 64)."""
    description: str = ""
    """One line for humans (listed by `corral agents list`)."""
    model: str | None = None
    """`provider:model` (e.g. `openai:gpt-4o-mini`, `anthropic:claude-sonnet-4-5`,
    `gemini:gemini-2.5-flash`, `scripted:demo`); None = the default from the environment."""
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    """Endpoint of an OpenAI-compatible server (vLLM, Ollama, llama.cpp, ...)."""
    instructions: str = ""
    """System prompt."""
    tools: list[Tool] = Field(default_factory=_default_tools)
    """Built-in tool names and/or function / MCP server objects."""
    skills: list[Skill] = Field(default_factory=list)
    """Host folders copied into /workspace/skills/<name> and listed to the model."""
    data: list[DataSource] = Field(default_factory=list)
    """Host files or folders mounted read-only under /workspace/data."""
    image: str | None = None
    """Sandbox image; None = corral/browser with the browser tool, else corral/base."""
    resources: Resources = Field(default_factory=Resources)
    network: Network = Field(default_factory=Network)
    limits: Limits = Field(default_factory=Limits)
    output_dir: str = "/workspace/out"
    """Files written here become the run's artifacts; must be under /workspace."""
    generation: Generation = Field(default_factory=Generation)
    browser: BrowserOptions = Field(default_factory=BrowserOptions)

    _source: str = PrivateAttr(default="<api>")

    # Validation -------------------------------------------------------------------------------
    @field_validator("name")
    @classmethod
    def _slug(cls, v: str) -> str:
        if not SLUG.match(v):
            raise ValueError(f"{v!r} is not a slug (lowercase letters, digits, '-', '_')")
        return v

    @field_validator("model")
    @classmethod
    def _model_ref(cls, v: str | None) -> str | None:
        if v is not None and not _MODEL.match(v):
            raise ValueError(f"{v!r} is not provider:model (e.g. openai:gpt-4o-mini)")
        return v

    @field_validator("tools", mode="before")
    @classmethod
    def _tool_objects(cls, v: Any) -> Any:
        # `{type: exec}` is accepted as a spelling of `exec`, like the HTTP API's tool objects.
        if isinstance(v, list):
            return [
                t["type"]
                if isinstance(t, Mapping) and t.get("type") in BUILTIN_TOOLS and len(t) == 1
                else t
                for t in v
            ]
        return v

    @field_validator("skills", "data", mode="before")
    @classmethod
    def _plain_paths(cls, v: Any) -> Any:
        if isinstance(v, list):
            return [{"source": x} if isinstance(x, str | Path) else x for x in v]
        return v

    @field_validator("network", mode="before")
    @classmethod
    def _network_word(cls, v: Any) -> Any:
        return {"mode": v} if isinstance(v, str) else v

    @field_validator("skills")
    @classmethod
    def _skills(cls, v: list[Skill], info: ValidationInfo) -> list[Skill]:
        out = [
            Skill(source=src, name=s.name or src.name)
            for s in v
            for src in [_host_path(s.source, info, "skill folder", want_dir=True)]
        ]
        for s in out:
            if not SLUG.match(s.name.lower()) or "/" in s.name:
                raise ValueError(f"skill name {s.name!r} must be a simple folder name")
        _unique([s.name for s in out], "skill name")
        return out

    @field_validator("data")
    @classmethod
    def _data(cls, v: list[DataSource], info: ValidationInfo) -> list[DataSource]:
        out = []
        for d in v:
            src = _host_path(d.source, info, "data source", want_dir=None)
            target = d.target or src.name
            if not target.startswith("/"):
                target = f"{DATA_DIR}/{target}"
            target = posixpath.normpath(target)
            if not target.startswith(DATA_DIR + "/") or ".." in d.target.split("/"):
                raise ValueError(f"target {d.target!r} must be a name or a path under {DATA_DIR}")
            out.append(DataSource(source=src, target=target))
        _unique([d.target for d in out], "data target")
        return out

    @field_validator("output_dir")
    @classmethod
    def _output_dir(cls, v: str) -> str:
        norm = posixpath.normpath(v)
        if not v.startswith("/") or ".." in v.split("/") or not norm.startswith(WORKSPACE + "/"):
            raise ValueError(f"must be a folder under {WORKSPACE} (e.g. /workspace/out), not {v!r}")
        if norm.startswith((DATA_DIR + "/", SKILLS_DIR + "/")) or norm in (DATA_DIR, SKILLS_DIR):
            raise ValueError(f"{v!r} is where data or skills are mounted; pick another folder")
        return norm

    @model_validator(mode="after")
    def _tool_names_unique(self) -> AgentSpec:
        names = [t.name for t in self.tools if isinstance(t, FunctionTool | McpServerTool)]
        _unique(names, "tool name")
        clash = set(names) & set(self.builtin_tools())
        if clash:
            raise ValueError(f"function name {sorted(clash)[0]!r} clashes with a built-in tool")
        return self

    # Loading ----------------------------------------------------------------------------------
    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        *,
        source: str = "<api>",
        base_dir: Path | None = None,
        allow_host_paths: bool = True,
    ) -> AgentSpec:
        """Validate a spec given as a dict; errors raise `AgentSpecError` ("SOURCE: field: reason").

        `base_dir` resolves relative host paths; `allow_host_paths=False` refuses skills/data
        (for specs sent by API callers, who must not reach the controller's files).
        """
        if not isinstance(data, Mapping):
            kind = type(data).__name__
            raise AgentSpecError(
                f"{source}: expected a mapping of fields (name, model, ...), got {kind}"
            )
        context = {"base_dir": base_dir, "allow_host_paths": allow_host_paths}
        try:
            spec = cls.model_validate(dict(data), context=context)
        except ValidationError as e:
            raise AgentSpecError(format_errors(source, e)) from None
        for i, d in enumerate(spec.data):
            if (why := unreadable(d.source)) is not None:
                raise AgentSpecError(f"{source}: data[{i}]: {why}")
        spec._source = source
        return spec

    @property
    def source(self) -> str:
        """Where this spec came from: a file path, `builtin:NAME`, `<api>`, ..."""
        return self._source

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict that `from_dict` accepts back (for the store and the API)."""
        return self.model_dump(mode="json", exclude_none=True)

    # Derived views ----------------------------------------------------------------------------
    def builtin_tools(self) -> list[str]:
        """Built-in tool names with `files` expanded, in order, without duplicates."""
        out: list[str] = []
        for t in self.tools:
            if isinstance(t, str):
                for name in FILE_TOOLS if t == "files" else (t,):
                    if name not in out:
                        out.append(name)
        return out

    def function_tools(self) -> list[FunctionTool]:
        return [t for t in self.tools if isinstance(t, FunctionTool)]

    def mcp_servers(self) -> list[McpServerTool]:
        return [t for t in self.tools if isinstance(t, McpServerTool)]

    def resolved_image(self) -> str:
        if self.image:
            return self.image
        return BROWSER_IMAGE if "browser" in self.builtin_tools() else DEFAULT_IMAGE

    def sandbox_spec(self) -> SandboxSpec:
        """The sandbox this agent runs in (image, resources, network, read-only data)."""
        fields: dict[str, Any] = {
            "image": self.resolved_image(),
            "network": self.network.mode,
            "allowlist": tuple(self.network.allow),
            "data": tuple(DataMount(source=d.source, target=d.target) for d in self.data),
        }
        r = self.resources
        for key in ("cpus", "memory", "disk", "pids", "runtime"):
            if getattr(r, key) is not None:
                fields[key] = getattr(r, key)
        return SandboxSpec.model_validate(fields)


def load_agent_file(path: str | Path) -> AgentSpec:
    """Read and validate a YAML (or JSON) spec file. Errors: AgentSpecError "FILE: field: reason"."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise AgentSpecError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise AgentSpecError(f"{p}: is a folder, not a spec file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise AgentSpecError(f"{p}: cannot read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        reason = e.problem or e.context or "invalid YAML"
        raise AgentSpecError(f"{p}: {where}invalid YAML: {reason}") from None
    except yaml.YAMLError as e:
        raise AgentSpecError(f"{p}: invalid YAML: {e}") from None
    if data is None:
        raise AgentSpecError(f"{p}: empty file (an agent needs at least a name)")
    if isinstance(data, dict) and "name" not in data and SLUG.match(p.stem):
        data["name"] = p.stem  # a file named after its agent needs no name field
    return AgentSpec.from_dict(data, source=str(p), base_dir=p.resolve().parent)


# Helpers ----------------------------------------------------------------------------------


def _host_path(p: Path, info: ValidationInfo, what: str, *, want_dir: bool | None) -> Path:
    ctx = info.context or {}
    if not ctx.get("allow_host_paths", True):
        raise ValueError(f"host paths are not allowed here ({what} {str(p)!r})")
    base: Path | None = ctx.get("base_dir")
    p = p.expanduser()
    if not p.is_absolute():
        if base is None:
            raise ValueError(f"relative {what} {str(p)!r} needs a spec file to resolve against")
        p = base / p
    p = p.resolve()
    if not p.exists():
        raise ValueError(f"{what} not found: {p}")
    if want_dir and not p.is_dir():
        raise ValueError(f"{what} must be a folder: {p}")
    return p


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ValueError(f"duplicate {what} {n!r}")
        seen.add(n)


def format_errors(source: str, exc: ValidationError) -> str:
    """One line per problem: `SOURCE: field.path: reason`."""
    return "\n".join(f"{source}: {_describe(err)}" for err in exc.errors())


def _describe(err: Any) -> str:
    loc = [part for part in err["loc"] if part not in _TOOL_TAGS]
    # Validators on a whole model report at the model's location; say which model.
    path = _loc_text(loc)
    msg: str = err["msg"]
    kind: str = err["type"]
    if kind == "extra_forbidden":
        allowed = _fields_at(loc[:-1])
        hint = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        msg = "unknown field" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        if allowed:
            msg += f"; allowed: {', '.join(allowed)}"
    elif kind == "missing":
        msg = "required field is missing"
    else:
        msg = msg.removeprefix("Value error, ")
        value = err.get("input")
        if isinstance(value, str | int | float | bool) and kind not in ("value_error",):
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            msg += f" (got {shown})"
    return f"{path}: {msg}" if path else msg


def _loc_text(loc: list[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(loc: list[Any]) -> list[str]:
    """Field names of the model found at `loc` inside AgentSpec (for 'did you mean')."""
    model: Any = AgentSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if _is_model(model) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    return list(model.model_fields) if _is_model(model) else []


def _is_model(t: Any) -> bool:
    return isinstance(t, type) and issubclass(t, BaseModel)


def _model_in(annotation: Any) -> Any:
    if _is_model(annotation):
        return annotation
    if typing.get_origin(annotation) in (list, Union, types.UnionType, Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None
