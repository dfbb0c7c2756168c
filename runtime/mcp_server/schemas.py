"""The MCP tools' arguments and results as pydantic models: one source for the JSON Schemas
clients see (`inputSchema`, `outputSchema`) and for checking what they send.

Arguments reuse the HTTP API's bounds (`runtime.api.schemas`, `sandbox.spec`), and each tool
then hands its arguments to the same request model the HTTP route validates with, so a value
the HTTP API refuses is refused here too, with the same message.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from runtime.agents.spec import MAX_STEPS, MAX_TIMEOUT
from sandbox.spec import MAX_CPUS, MAX_PIDS, MAX_TTL, MIN_PIDS

SandboxId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="The sandbox's id, as returned by sandbox_create.",
    ),
]
Path = Annotated[
    str,
    Field(
        min_length=1,
        max_length=4096,
        description="A path in the sandbox's workspace: relative to /workspace, or absolute "
        "under /workspace. `..` and symlinks may not leave the workspace.",
    ),
]
MAX_READ = 8 * 1024**2
"""Bytes `sandbox_read_file` returns at most (larger files: the HTTP files API streams)."""
MAX_WRITE = 8 * 1024**2
"""Characters of content `sandbox_write_file` takes (larger files: the HTTP files API)."""


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


# -- sandboxes ------------------------------------------------------------------------------
class CreateArgs(Args):
    image: str = Field(
        "corral/base",
        min_length=1,
        max_length=256,
        description="Sandbox image: corral/base (shell, Python) or corral/browser (adds a "
        "headless Chromium for the browser_* tools).",
    )
    cpus: float | None = Field(
        None,
        gt=0,
        le=MAX_CPUS,
        description="CPU cores (fractions allowed); at most the key's ceiling.",
    )
    memory: str | None = Field(
        None,
        max_length=32,
        description="Memory limit such as `512m` or `2g`; at most the key's ceiling.",
    )
    disk: str | None = Field(
        None,
        max_length=32,
        description="Size of the writable /workspace such as `5g`; at most the key's ceiling.",
    )
    pids: int | None = Field(
        None, ge=MIN_PIDS, le=MAX_PIDS, description="Process limit; at most the key's ceiling."
    )
    network: Literal["none", "allowlist", "open"] = Field(
        "none",
        description="none: no network; allowlist: only the domains in `allowlist`, through "
        "Corral's egress proxy; open: unfiltered (only for keys the operator allows it).",
    )
    allowlist: list[Annotated[str, Field(min_length=1, max_length=253)]] = Field(
        default_factory=list,
        max_length=100,
        description="Domains the sandbox may reach with network=allowlist (`*.example.com` "
        "allowed).",
    )
    env: dict[str, str] = Field(
        default_factory=dict, description="Environment variables of every command."
    )
    ttl: float = Field(
        900.0, gt=0, le=MAX_TTL, description="Idle seconds before the sandbox is removed."
    )


class SandboxInfo(Result):
    id: str = Field(description="The sandbox's id: pass it to the other tools.")
    state: str
    image: str | None
    cpus: float | None
    memory: int | None = Field(description="Bytes.")
    network: str | None
    ttl: float | None = Field(description="Idle seconds before removal.")
    created: str | None
    last_used: str | None


class SandboxRef(Args):
    sandbox_id: SandboxId


class ListSandboxesArgs(Args):
    pass


class SandboxList(Result):
    sandboxes: list[SandboxInfo]


class Deleted(Result):
    sandbox_id: str
    deleted: bool = True


class ExecArgs(Args):
    sandbox_id: SandboxId
    command: str | list[Annotated[str, Field(max_length=1024**2)]] = Field(
        description="A shell command (run with /bin/sh -c), or an argv list run as is.",
        min_length=1,
        max_length=4096,
    )
    cwd: str | None = Field(
        None, max_length=4096, description="Working directory (default /workspace)."
    )
    env: dict[str, str] | None = Field(None, description="Extra environment variables.")
    timeout: float | None = Field(
        None,
        gt=0,
        le=24 * 3600,
        description="Seconds before the command (its whole process group) is killed; exit "
        "code 124 then. Default: the sandbox's.",
    )


class ExecOutput(Result):
    exit_code: int = Field(description="128+N when killed by signal N; 124 when timed out.")
    stdout: str
    stderr: str
    duration: float = Field(description="Seconds, measured in the sandbox.")
    timed_out: bool
    truncated: bool = Field(description="The output limit was hit; the rest was dropped.")
    signal: int | None
    oom_killed: bool


class WriteArgs(Args):
    sandbox_id: SandboxId
    path: Path
    content: str = Field(
        max_length=MAX_WRITE,
        description="The file's content: text (UTF-8), or base64 with encoding=base64.",
    )
    encoding: Literal["utf-8", "base64"] = Field(
        "utf-8", description="How `content` is encoded: utf-8 text or base64 bytes."
    )


class Written(Result):
    path: str
    size: int = Field(description="Bytes written.")


class ReadArgs(Args):
    sandbox_id: SandboxId
    path: Path
    encoding: Literal["utf-8", "base64"] = Field(
        "utf-8",
        description="utf-8: the content as text (invalid bytes replaced); base64: the bytes.",
    )


class FileContent(Result):
    path: str
    size: int = Field(description="Bytes.")
    encoding: Literal["utf-8", "base64"]
    content: str


class ListFilesArgs(Args):
    sandbox_id: SandboxId
    path: str = Field(
        ".",
        min_length=1,
        max_length=4096,
        description="Folder in the workspace (default: its root).",
    )
    recursive: bool = Field(False, description="List every folder below too.")


class FileEntry(Result):
    path: str = Field(description="Relative to /workspace.")
    size: int
    is_dir: bool
    is_symlink: bool
    mode: int = Field(description="Permission bits.")
    mtime: float = Field(description="Unix time.")


class FileList(Result):
    files: list[FileEntry]


# -- browser --------------------------------------------------------------------------------
BrowserTimeout = Annotated[
    float | None,
    Field(gt=0, le=600, description="Seconds for the action (default 30)."),
]


class GotoArgs(Args):
    sandbox_id: SandboxId
    url: str = Field(min_length=1, max_length=8192, description="An http(s) URL.")
    wait_until: Literal["load", "domcontentloaded", "networkidle", "commit"] = Field(
        "load", description="When navigation counts as done."
    )
    timeout: BrowserTimeout = None


class SnapshotArgs(Args):
    sandbox_id: SandboxId
    max_chars: int | None = Field(
        None, ge=100, le=1_000_000, description="Cut the outline after this many characters."
    )
    timeout: BrowserTimeout = None


class ScreenshotArgs(Args):
    sandbox_id: SandboxId
    full_page: bool = Field(False, description="The whole scrollable page, not just the view.")
    ref: str | None = Field(
        None, max_length=64, description="Only this element (a ref from browser_snapshot)."
    )
    path: str | None = Field(
        None,
        max_length=4096,
        description="Where to save the PNG in the workspace (default under out/browser/).",
    )
    timeout: BrowserTimeout = None


class Page(Result):
    url: str
    title: str
    tab: int
    tabs: int


class BrowserOutput(Result):
    page: Page
    notice: str | None = Field(
        default=None, description="Something to know (a refused navigation...)."
    )
    snapshot: str | None = Field(default=None, description="The page outline with element refs.")
    path: str | None = Field(default=None, description="Where the screenshot was saved.")
    size: int | None = Field(default=None, description="Bytes of the screenshot.")


# -- agent runs -----------------------------------------------------------------------------
class RunAgentArgs(Args):
    input: str = Field(
        min_length=1, max_length=1024**2, description="The task for the agent, in words."
    )
    agent: str = Field(
        "default",
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="A built-in agent (default) or one stored with POST /v1beta/agents.",
    )
    model: str | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="Override the agent's model: `provider:model` (openai:gpt-4o, "
        "anthropic:claude-sonnet-4-5, gemini:gemini-2.5-flash, ...).",
    )
    max_steps: int | None = Field(None, ge=1, le=MAX_STEPS, description="Model turns at most.")
    timeout: float | None = Field(
        None, gt=0, le=MAX_TIMEOUT, description="Seconds the run may take at most."
    )
    previous_interaction_id: str | None = Field(
        None,
        max_length=128,
        description="Continue a previous run (same conversation and sandbox).",
    )


class Artifact(Result):
    path: str = Field(description="Relative to the run's output folder.")
    size: int
    sha256: str
    media_type: str | None
    download_path: str = Field(
        description="HTTP path of the file on the Corral server (GET with the same API key)."
    )


class RunOutput(Result):
    interaction_id: str
    status: str = Field(description="completed, failed, cancelled, budget_exceeded, ...")
    output_text: str = Field(description="The agent's final answer.")
    artifacts: list[Artifact]
    errors: list[dict[str, Any]] = Field(default_factory=list)
    usage: dict[str, Any] = Field(default_factory=dict)
