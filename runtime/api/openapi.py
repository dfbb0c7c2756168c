"""The OpenAPI document: response schemas, the API-key security schemes, and 400 (never FastAPI's
422) for invalid requests, all in Google's error shape.

Routes return plain dicts (the views in `runtime.views`, `runtime.api.hub`, ...) so nothing is
filtered on the way out; the models here *document* those bodies (`extra="allow"`: Corral
and the SDK may add fields) and are attached by (method, path) when the route declares no
schema of its own. `install_openapi(app)` replaces `app.openapi`.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


# -- errors ----------------------------------------------------------------------------------
class ErrorDetail(_Open):
    """A `google.rpc` detail: `ErrorInfo` (`reason` = Corral's code, `domain` = corral) or
    `BadRequest` (`fieldViolations`)."""

    type_: str = Field(alias="@type")
    reason: str | None = None
    domain: str | None = None
    metadata: dict[str, str] | None = None
    fieldViolations: list[dict[str, str]] | None = None


class Status(BaseModel):
    """`google.rpc.Status` as Google's JSON APIs send it."""

    code: int = Field(description="The HTTP status.")
    message: str
    status: str = Field(description="The google.rpc.Code name, e.g. INVALID_ARGUMENT.")
    details: list[ErrorDetail] = []


class ErrorBody(BaseModel):
    error: Status


# -- interactions ------------------------------------------------------------------------------
class InteractionError(_Open):
    code: str | None = None
    message: str | None = None


class Interaction(_Open):
    """An interaction as the google-genai SDK reads it (`steps`, not `outputs`)."""

    id: str
    object: Literal["interaction"] = "interaction"
    status: str
    created: str | None = None
    updated: str | None = None
    model: str | None = None
    agent: str | None = None
    previous_interaction_id: str | None = None
    steps: list[dict[str, Any]] = []
    usage: dict[str, Any] | None = None
    errors: list[InteractionError] | None = None
    labels: dict[str, Any] | None = None


class Empty(_Open):
    """`{}` (a delete)."""


# -- agents ------------------------------------------------------------------------------------
class Agent(_Open):
    id: str
    name: str | None = None
    object: Literal["agent"] = "agent"
    description: str | None = None
    system_instruction: str | None = None
    tools: list[Any] | None = None
    agent_config: dict[str, Any] | None = None
    builtin: bool | None = None


class AgentList(_Open):
    agents: list[Agent]


# -- artifacts ---------------------------------------------------------------------------------
class Artifact(_Open):
    path: str
    size: int
    sha256: str | None = None
    media_type: str | None = None
    created: str | None = None


class ArtifactList(_Open):
    artifacts: list[Artifact]


# -- sandboxes ---------------------------------------------------------------------------------
class Sandbox(_Open):
    id: str
    object: Literal["sandbox"] = "sandbox"
    state: str | None = None
    image: str | None = None
    cpus: float | None = None
    memory: str | int | None = None
    network: Any = None
    ttl: float | None = None
    created: str | None = None
    last_used: str | None = None


class SandboxList(_Open):
    sandboxes: list[Sandbox]


class ExecResult(_Open):
    """A finished command (`stream: true` answers SSE or NDJSON frames instead)."""

    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    duration: float | None = None
    timed_out: bool | None = None
    truncated: bool | None = None
    signal: int | None = None
    oom_killed: bool | None = None


class FileInfo(_Open):
    path: str
    size: int | None = None
    is_dir: bool | None = None
    mode: int | None = None
    mtime: float | None = None
    is_symlink: bool | None = None


class FileList(_Open):
    files: list[FileInfo]


class FileWritten(_Open):
    path: str
    size: int


class BrowserResult(_Open):
    page: dict[str, Any] | None = None
    data: Any = None
    notice: str | None = None


class Refusals(_Open):
    refusals: list[dict[str, Any]]
    next_offset: int | None = None


# -- the rest ----------------------------------------------------------------------------------
class Health(_Open):
    status: str
    runs_active: int | None = None


class WebhookSecret(_Open):
    secret: str | None = None


V = r"/v1(?:beta)?"
RESPONSES: list[tuple[str, str, type[BaseModel]]] = [
    ("post", rf"{V}/interactions", Interaction),
    ("get", rf"{V}/interactions/{{interaction_id}}", Interaction),
    ("post", rf"{V}/interactions/{{interaction_id}}/cancel", Interaction),
    ("delete", rf"{V}/interactions/{{interaction_id}}", Empty),
    ("post", rf"{V}/agents", Agent),
    ("get", rf"{V}/agents", AgentList),
    ("get", rf"{V}/agents/{{agent_id}}", Agent),
    ("delete", rf"{V}/agents/{{agent_id}}", Empty),
    ("get", r"/v1beta/interactions/{interaction_id}/artifacts", ArtifactList),
    ("post", r"/v1beta/sandboxes", Sandbox),
    ("get", r"/v1beta/sandboxes", SandboxList),
    ("get", r"/v1beta/sandboxes/{sandbox_id}", Sandbox),
    ("delete", r"/v1beta/sandboxes/{sandbox_id}", Empty),
    ("post", r"/v1beta/sandboxes/{sandbox_id}/exec", ExecResult),
    ("get", r"/v1beta/sandboxes/{sandbox_id}/files", FileList),
    ("put", r"/v1beta/sandboxes/{sandbox_id}/files/{path}", FileWritten),
    ("post", r"/v1beta/sandboxes/{sandbox_id}/browser", BrowserResult),
    ("get", r"/v1beta/sandboxes/{sandbox_id}/network/refusals", Refusals),
    ("get", r"/v1beta/webhooks/secret", WebhookSecret),
    ("get", r"/healthz", Health),
]
STREAMS = {  # routes that may answer a stream instead of JSON
    (r"post", rf"{V}/interactions"): "text/event-stream",
    (r"get", rf"{V}/interactions/{{interaction_id}}"): "text/event-stream",
    (r"post", r"/v1beta/sandboxes/{sandbox_id}/exec"): "application/x-ndjson",
}
BINARY = [
    ("get", r"/v1beta/interactions/{interaction_id}/artifacts/{path}"),
    ("get", r"/v1beta/sandboxes/{sandbox_id}/files/{path}"),
]
PUBLIC = {"/healthz", "/metrics"}
ERRORS = {
    "400": "Invalid request (a field is named in the message and in a BadRequest detail)",
    "401": "Missing or unknown API key",
    "403": "Over one of the key's ceilings",
    "404": "No such object for this key's tenant, or no such route",
    "409": "The object's state does not allow this (or an Idempotency-Key reused)",
    "413": "Request body over its cap",
    "429": "The tenant's live-sandbox or stream cap is reached",
    "500": "Internal error",
    "503": "A backend (Docker, the store) is unavailable",
}
SECURITY_SCHEMES = {
    "ApiKeyHeader": {
        "type": "apiKey",
        "in": "header",
        "name": "x-goog-api-key",
        "description": "The google-genai SDK's header.",
    },
    "BearerAuth": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer <key>`",
    },
}


def _generic(schema: dict[str, Any]) -> bool:
    """A schema FastAPI writes for `-> dict[str, Any]` or no annotation."""
    keys = set(schema) - {"title"}
    return not keys or keys == {"type", "additionalProperties"}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    doc = get_openapi(
        title=app.title,
        version=app.version,
        summary=app.summary,
        description=app.description,
        routes=app.routes,
    )
    components = doc.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    models: list[type[BaseModel]] = [ErrorBody] + [m for _, _, m in RESPONSES]
    for model in models:
        for name, schema in (
            model.model_json_schema(ref_template="#/components/schemas/{model}")
            .pop("$defs", {})
            .items()
        ):
            schemas.setdefault(name, schema)
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schema.pop("$defs", None)
        schemas[model.__name__] = schema
    for gone in ("HTTPValidationError", "ValidationError"):
        schemas.pop(gone, None)
    components["securitySchemes"] = SECURITY_SCHEMES
    doc["security"] = [{"ApiKeyHeader": []}, {"BearerAuth": []}]
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, ops in doc.get("paths", {}).items():
        for method, op in ops.items():
            responses = op.setdefault("responses", {})
            responses.pop("422", None)
            ok = responses.setdefault("200", {"description": "Successful Response"})
            content = ok.setdefault("content", {})
            for m, pattern, model in RESPONSES:
                if m == method and re.fullmatch(pattern, path):
                    json_ct = content.setdefault("application/json", {})
                    if _generic(json_ct.get("schema", {})):
                        json_ct["schema"] = {"$ref": f"#/components/schemas/{model.__name__}"}
            for (m, pattern), media in STREAMS.items():
                if m == method and re.fullmatch(pattern, path):
                    content.setdefault(media, {"schema": {"type": "string"}})
            for m, pattern in BINARY:
                if m == method and re.fullmatch(pattern, path):
                    content.pop("application/json", None)
                    content["application/octet-stream"] = {
                        "schema": {"type": "string", "format": "binary"}
                    }
            if path in PUBLIC:
                op["security"] = []
            if path == "/metrics":
                ok["content"] = {"text/plain": {"schema": {"type": "string"}}}
            codes = dict(ERRORS)
            if path in PUBLIC:
                codes = {"500": ERRORS["500"]}
            for code, description in codes.items():
                responses.setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": error_ref}},
                    },
                )
    return doc


def install_openapi(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
