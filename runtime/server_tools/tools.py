"""The built-in tools Corral runs itself for `model=` interactions, as the model sees them.

- `code_execution` is the agent's `exec` (bash) and `python` tools (`runtime.agents.tools`) on a
  sandbox opened for the interaction on first use (`open_sandbox`: the service's, which applies
  the tenant's policy and reuses the previous interaction's sandbox on a follow-up). Recorded as
  `function_call`/`function_result` named `exec`/`python`; `runtime.views` shows them as
  `code_execution_call`/`_result`.
- `url_context` is a function `url_context {urls}` fetched by `fetch.Fetcher`; `google_search`
  a function `google_search {queries}` answered by `search.Searcher`. Their steps carry
  `server_tool` (and the result `details`, the SDK's result items) so the view shows them as
  `url_context_call`/`_result` and `google_search_call`/`_result`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.agents.tools import EXEC, PYTHON, Toolbox
from runtime.errors import BadRequest
from runtime.providers.base import ToolSpec
from runtime.server_tools.fetch import Fetcher
from runtime.server_tools.search import Searcher, SearchError, render
from runtime.store.base import InteractionRecord
from sandbox.api import Sandbox
from sandbox.egress.policy import EgressOptions
from sandbox.spec import SandboxSpec

SERVER_TOOL_TYPES = ("code_execution", "url_context", "google_search")
MAX_URLS = 5
MAX_QUERIES = 5
MAX_TURNS = 16
"""Model turns of one `model=` interaction that uses server-side tools."""
MAX_TOOL_CALLS = 32

URL_CONTEXT = ToolSpec(
    "url_context",
    "Fetch web pages by URL and read their text (http and https only; long pages are cut).",
    {
        "type": "object",
        "properties": {
            "urls": {
                "type": "array",
                "items": {"type": "string"},
                "description": f"The URLs to fetch (at most {MAX_URLS}).",
            }
        },
        "required": ["urls"],
    },
)
GOOGLE_SEARCH = ToolSpec(
    "google_search",
    "Search the web. Returns titles, URLs and snippets of the top results of each query.",
    {
        "type": "object",
        "properties": {
            "queries": {
                "type": "array",
                "items": {"type": "string"},
                "description": f"Search queries (at most {MAX_QUERIES}).",
            }
        },
        "required": ["queries"],
    },
)
SPECS: dict[str, tuple[ToolSpec, ...]] = {
    "code_execution": (EXEC, PYTHON),
    "url_context": (URL_CONTEXT,),
    "google_search": (GOOGLE_SEARCH,),
}
NO_SEARCH = (
    "no search backend is configured on this server (the operator sets CORRAL_SEARCH_URL to a "
    "SearXNG-compatible /search endpoint)"
)

SandboxOpener = Callable[[InteractionRecord], Awaitable[Sandbox]]


@dataclass(frozen=True)
class ServerToolsConfig:
    """What the server gives `model=` interactions for their built-in tools."""

    open_sandbox: SandboxOpener | None = None
    """Opens (or reattaches) the interaction's code sandbox and records its id on the record."""
    egress: EgressOptions = field(default_factory=EgressOptions)
    search_url: str | None = None


def requested(tools: list[dict[str, Any]] | None) -> list[str]:
    """The server-side tool types `tools` asks for, in a stable order."""
    kinds = {t.get("type") for t in tools or [] if isinstance(t, dict)}
    return [k for k in SERVER_TOOL_TYPES if k in kinds]


def specs_of(kinds: list[str]) -> list[ToolSpec]:
    """The functions the model sees for these server-side tool types."""
    return [s for k in kinds for s in SPECS[k]]


def check_server_tools(
    tools: list[dict[str, Any]] | None, config: ServerToolsConfig
) -> list[dict[str, Any]]:
    """400 for a server-side tool this server cannot run, or a client function whose name
    clashes with one; returns the other tools (for `generation.check_tools`)."""
    rest: list[dict[str, Any]] = []
    for i, tool in enumerate(tools or []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind not in SERVER_TOOL_TYPES:
            rest.append(tool)
            continue
        if kind == "google_search" and not config.search_url:
            raise BadRequest(f"tools[{i}] (google_search): {NO_SEARCH}")
        if kind == "code_execution" and config.open_sandbox is None:
            raise BadRequest(f"tools[{i}] (code_execution): this server has no sandboxes")
    taken = {s.name: k for k in requested(tools) for s in SPECS[k]}
    for tool in rest:
        name = tool.get("name") if isinstance(tool, dict) else None
        if tool.get("type") == "function" and name in taken:
            raise BadRequest(
                f"tools: function {name!r} clashes with the {taken[str(name)]} tool's function"
            )
    return rest


@dataclass
class Outcome:
    text: str
    """What the model reads."""
    is_error: bool
    details: list[dict[str, Any]]
    """The SDK's result items (`URLContextResult`, `GoogleSearchResult`)."""


class ServerTools:
    """The server-side tools of one interaction run."""

    def __init__(self, kinds: list[str], config: ServerToolsConfig, rec: InteractionRecord) -> None:
        self.kinds = kinds
        self.config = config
        self.rec = rec
        self.specs = specs_of(kinds)
        self._kind = {s.name: k for k in kinds for s in SPECS[k]}
        self.sandbox: Sandbox | None = None
        self._toolbox: Toolbox | None = None
        self._lock = asyncio.Lock()

    def kind_of(self, name: str) -> str | None:
        return self._kind.get(name)

    async def toolbox(self) -> Toolbox:
        """The code tools on the interaction's sandbox, opened on first use."""
        async with self._lock:
            if self._toolbox is None:
                assert self.config.open_sandbox is not None
                self.sandbox = await self.config.open_sandbox(self.rec)
                self._toolbox = Toolbox(self.sandbox, [EXEC.name, PYTHON.name])
            return self._toolbox

    async def call(self, kind: str, args: dict[str, Any]) -> Outcome:
        """Run `url_context` or `google_search` (bad arguments are an error result)."""
        key, limit = ("urls", MAX_URLS) if kind == "url_context" else ("queries", MAX_QUERIES)
        values = args.get(key)
        if isinstance(values, str):
            values = [values]
        if (
            not isinstance(values, list)
            or not values
            or not all(isinstance(v, str) and v for v in values)
        ):
            return Outcome(f"error: {key} must be a non-empty list of strings", True, [])
        if len(values) > limit:
            return Outcome(f"error: at most {limit} {key} per call", True, [])
        if kind == "url_context":
            return await self._fetch(values)
        return await self._search(values)

    async def _fetch(self, urls: list[str]) -> Outcome:
        fetcher = Fetcher(self.config.egress)
        pages = await asyncio.gather(*(fetcher.fetch(u) for u in urls))
        text = "\n\n".join(f"# {p.url} ({p.status})\n{p.text}" for p in pages)
        details = [{"url": p.url, "status": p.status} for p in pages]
        return Outcome(text, all(p.status != "success" for p in pages), details)

    async def _search(self, queries: list[str]) -> Outcome:
        assert self.config.search_url is not None
        searcher = Searcher(self.config.search_url)
        parts: list[str] = []
        details: list[dict[str, Any]] = []
        failed = 0
        for q in queries:
            try:
                hits = await searcher.search(q)
            except SearchError as exc:
                failed += 1
                parts.append(f"error searching {q!r}: {exc}")
                continue
            shown = render(q, hits)
            parts.append(shown)
            details.append({"search_suggestions": shown})
        return Outcome("\n\n".join(parts), failed == len(queries), details)

    async def aclose(self, *, keep: bool) -> None:
        """Disconnect from the sandbox, keeping it for follow-ups (`keep`) or removing it."""
        if self.sandbox is None:
            return
        with contextlib.suppress(Exception):
            if keep:
                await self.sandbox.close()
            else:
                await self.sandbox.destroy()


def code_sandbox_spec() -> SandboxSpec:
    """The sandbox of a `model=` interaction's code_execution: `corral/base`, no network, the
    default `SandboxSpec` ceilings and idle TTL."""
    return SandboxSpec(image="corral/base", network="none")
