"""The web console: its pages, its static files, and the one API call only it needed.

Pages (`/`, `/runs/{id}`, `/sandboxes`, `/agents`) all answer the same `index.html`; the
browser-side router (`runtime/console/app.js`) draws the page the path names. `corral open ID`
opens `/runs/<id>`, so that URL stays. The files come from the package folder
`runtime/console/` (shipped in the wheel), served under `/console/`: no CDN, works offline.

The pages and files carry no tenant data and need no key; every datum is fetched by the page
from the API with the key the user typed (kept in the browser's localStorage, sent as
`x-goog-api-key`), so the console sees exactly what the API lets that key see.

Hostile content (model text, tool output, artifact names and bytes) is put in the page as
text, never as markup, and a strict Content-Security-Policy on every console response forbids
inline script, foreign origins and framing, so a slip would still not run script.

`GET /sandboxes` is also the E2B front door's sandbox list: the page route answers only a
request that asks for HTML (a browser navigating), and leaves JSON callers to E2B.
`POST /v1beta/agents:validate` checks an agent spec as `POST /v1beta/agents` would, without
storing it (the console's agents page).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from fastapi import APIRouter, Body
from fastapi.responses import FileResponse, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from starlette.routing import Match
from starlette.types import Scope

from runtime.api.deps import PrincipalDep, StateDep
from runtime.api.errors import BadRequest
from runtime.api.routes import agents
from runtime.errors import CorralError, NotFound

ASSETS = Path(__file__).resolve().parent.parent.parent / "console"
"""`runtime/console/`: the console's HTML, CSS and JS (part of the package, never the guest's)."""
ASSET_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
}
_ASSET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*\.(js|css|svg)$")
CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
"""No inline script or style, nothing from another origin, images only from here or from blobs
the page made itself (artifact previews), never framed."""
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
MAX_SPEC_CHARS = 200_000


class _HtmlRoute(APIRoute):
    """A page route that matches only requests asking for HTML (`Accept: text/html`), so an
    API on the same path (E2B's `GET /sandboxes`) keeps its JSON callers."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is Match.FULL and not _accepts_html(scope):
            return Match.NONE, {}
        return match, child


def _accepts_html(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


router = APIRouter()
"""The pages and files (left out of the OpenAPI document) and `agents:validate` (in it)."""
html_router = APIRouter(include_in_schema=False, route_class=_HtmlRoute)


def _index() -> Response:
    return FileResponse(
        ASSETS / "index.html", media_type=ASSET_TYPES[".html"], headers=SECURITY_HEADERS
    )


@router.get("/", include_in_schema=False)
async def runs_page() -> Response:
    return _index()


@router.get("/runs/{interaction_id}", include_in_schema=False)
async def run_page(interaction_id: str) -> Response:
    return _index()


@router.get("/agents", include_in_schema=False)
async def agents_page() -> Response:
    return _index()


@html_router.get("/sandboxes")
async def sandboxes_page() -> Response:
    return _index()


@router.get("/console/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    """One file of `runtime/console/` by plain name (no folders, no dot files)."""
    if not _ASSET_NAME.match(name) or not (ASSETS / name).is_file():
        raise NotFound(f"console file {name} not found")
    media = ASSET_TYPES[Path(name).suffix]
    return FileResponse(ASSETS / name, media_type=media, headers=SECURITY_HEADERS)


class Validation(BaseModel):
    """The answer of `POST /v1beta/agents:validate` (documentation of the dict returned)."""

    valid: bool
    agent: dict[str, Any] | None = Field(None, description="The agent as it would be stored.")
    request: dict[str, Any] | None = Field(
        None, description="The parsed spec, ready for POST /v1beta/agents."
    )
    error: str | None = Field(None, description="Why the spec is invalid, naming the field.")


@router.post("/v1beta/agents:validate", tags=["agents"], responses={200: {"model": Validation}})
async def validate_agent(
    state: StateDep, principal: PrincipalDep, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Check an agent as `POST /v1beta/agents` would (fields, model provider, host paths,
    the key's ceilings), without storing it. `spec` is the agent as YAML or JSON text, or as
    an object. Answers `{"valid": true, "agent": <as it would be stored>, "request": <the parsed
    spec, ready for POST /v1beta/agents>}` or `{"valid": false, "error": "..."}`."""
    unknown = sorted(set(body) - {"spec"})
    if unknown:
        raise BadRequest(f'{unknown[0]}: unknown field (send {{"spec": ...}})')
    data = body.get("spec")
    if isinstance(data, str):
        if len(data) > MAX_SPEC_CHARS:
            raise BadRequest(f"spec: over {MAX_SPEC_CHARS} characters")
        try:
            data = _load_yaml(data)
        except yaml.YAMLError as exc:
            return {"valid": False, "error": f"not YAML or JSON: {exc}"}
        except ValueError as exc:
            return {"valid": False, "error": str(exc)}
    if not isinstance(data, dict):
        if body.get("spec") is None:
            raise BadRequest("spec: required (the agent as YAML/JSON text or an object)")
        return {"valid": False, "error": "an agent is a mapping of fields (name, model, ...)"}
    try:
        name, base, overrides = agents.overrides_of(data)
        spec = {"name": name, **overrides}
        if base is not None:
            # the same base resolution as create (built in, file agent or the tenant's own)
            spec = agents.extend(await agents._base_spec(state, principal.tenant, base), spec)
        agent = state.service.validate_agent(spec, principal.policy)
    except CorralError as exc:
        if exc.http_status >= 500:
            raise
        return {"valid": False, "error": exc.message}
    view = agents.agent_view(agent.name, agent.to_dict())
    return {"valid": True, "agent": view, "request": data}


def _load_yaml(text: str) -> Any:
    """YAML (or JSON) from a caller, without aliases: `*name` lets a few hundred bytes stand
    for billions of nodes that validation would then walk (a "billion laughs" document)."""
    if any(isinstance(e, yaml.AliasEvent) for e in yaml.parse(text, Loader=yaml.SafeLoader)):
        raise ValueError("YAML aliases (*name) are not accepted in an agent spec")
    return yaml.safe_load(text)
