"""Errors on the wire, in Google's shape: every failure answers

    {"error": {"code": 404, "message": "...", "status": "NOT_FOUND",
               "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                            "reason": "NOT_FOUND", "domain": "corral", "metadata": {}}]}}

with the same HTTP status in `code`, the `google.rpc.Code` name in `status` and Corral's own
machine-readable code (`CorralError.code`, upper-cased) as the `ErrorInfo` reason — the body
Google's APIs send, so `google.genai.errors.APIError` reads `e.code`, `e.status` and
`e.message` from it, and the Interactions client picks its exception class from the HTTP status.
Request-validation errors add a `google.rpc.BadRequest` detail with one `fieldViolations` item
per field. Handlers installed by `install_error_handlers` map our error trees
(`CorralError.http_status`, `SandboxError.reason`), request-validation errors and Starlette's
HTTP errors (unknown route 404, 405) to that shape, so a client never sees a bare 500 page or
FastAPI's `{"detail": ...}`.

Errors *inside* an interaction (the `errors` list of a failed run, the SSE `error` event) stay
`{"code": "<slug>", "message"}`: the SDK types that `code` as a string.

The API's own errors (beside `runtime.errors`)::

    CorralError
    ├── PolicyDenied        over one of the key's ceilings (resources, network mode) (403)
    ├── QuotaExceeded       the tenant holds as many live sandboxes / streams as allowed (429)
    └── FailedPrecondition  the server cannot serve this request as configured, e.g. a model
                            whose provider has no API key on the server (400)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.errors import (
    BadRequest,
    BudgetExceeded,
    CorralError,
    PayloadTooLarge,
    RangeNotSatisfiable,
    Unauthorized,
)
from sandbox.errors import SandboxError

__all__ = [
    "DOMAIN",
    "BadRequest",
    "FailedPrecondition",
    "PayloadTooLarge",
    "PolicyDenied",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "Unauthorized",
    "error_body",
    "error_reason",
    "error_response",
    "install_error_handlers",
    "rpc_status",
    "sandbox_status",
]

log = structlog.get_logger("corral.api")

DOMAIN = "corral"
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BAD_REQUEST = "type.googleapis.com/google.rpc.BadRequest"


class PolicyDenied(CorralError):
    """A request over one of the operator's ceilings for this key; the message names it."""

    code = "permission_denied"
    http_status = 403


class QuotaExceeded(CorralError):
    """The tenant already holds as many live sandboxes or open streams as its key allows."""

    code = "resource_exhausted"
    http_status = 429


class FailedPrecondition(CorralError):
    """The request is well formed but the server is not set up for it (a provider key)."""

    code = "failed_precondition"
    http_status = 400


# google.rpc.Code names by HTTP status (the mapping of google/rpc/code.proto).
RPC_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "UNIMPLEMENTED",
    408: "DEADLINE_EXCEEDED",
    409: "ABORTED",
    413: "INVALID_ARGUMENT",
    416: "OUT_OF_RANGE",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
    507: "RESOURCE_EXHAUSTED",
}

# Where our code says more than the HTTP status does.
RPC_STATUS_BY_CODE: dict[str, str] = {
    "failed_precondition": "FAILED_PRECONDITION",
    "sandbox_exists": "ALREADY_EXISTS",
    "already_exists": "ALREADY_EXISTS",
    "sandbox_closed": "FAILED_PRECONDITION",
    "sandbox_died": "FAILED_PRECONDITION",
    "sandbox_oom": "FAILED_PRECONDITION",
    "sandbox_exited": "FAILED_PRECONDITION",
    "sandbox_cancelled": "CANCELLED",
    "sandbox_limit_exceeded": "OUT_OF_RANGE",
}


def rpc_status(http_status: int, code: str = "") -> str:
    """The `google.rpc.Code` name for an HTTP status (refined by our code when it says more)."""
    if code in RPC_STATUS_BY_CODE:
        return RPC_STATUS_BY_CODE[code]
    if http_status in RPC_STATUS:
        return RPC_STATUS[http_status]
    return "FAILED_PRECONDITION" if http_status < 500 else "INTERNAL"


# Sandbox errors by `reason`: the caller's fault is a 4xx, the engine's a 5xx.
SANDBOX_STATUS: dict[str, int] = {
    "not_found": 404,
    "invalid_spec": 400,
    "image_not_found": 400,
    "runtime_unavailable": 400,
    "invalid_argument": 400,
    "path_not_allowed": 400,
    "exists": 409,
    "not_a_directory": 400,
    "is_a_directory": 400,
    "limit_exceeded": 413,
    "closed": 409,
    "died": 409,
    "removed": 404,
    "backend_unavailable": 503,
    "connection_lost": 502,
    "cancelled": 409,
    "tool_error": 400,
    "oom": 409,
    "exited": 409,
    "start_failed": 502,
    "channel_untrusted": 502,
    "protocol": 502,
    "rpc": 502,
}


def sandbox_status(exc: SandboxError) -> tuple[int, str]:
    """(HTTP status, Corral code) for a sandbox error. Tool errors carry their wire `code`."""
    code = getattr(exc, "code", None) or exc.reason
    if code == "not_found" and exc.reason == "tool_error":
        return 404, "file_not_found"
    status = SANDBOX_STATUS.get(code, SANDBOX_STATUS.get(exc.reason, 500))
    return status, f"sandbox_{code}" if code != "not_found" else "not_found"


def error_body(
    http_status: int,
    code: str,
    message: str,
    *,
    metadata: Mapping[str, str] | None = None,
    details: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """`{"error": {code, message, status, details}}` as Google's APIs answer.

    `code` is Corral's machine-readable code (`not_found`, `sandbox_exists`, ...); it goes
    upper-cased into the `ErrorInfo` detail's `reason`, with `metadata` (strings only)."""
    info = {
        "@type": ERROR_INFO,
        "reason": code.upper(),
        "domain": DOMAIN,
        "metadata": {k: str(v) for k, v in (metadata or {}).items()},
    }
    return {
        "error": {
            "code": http_status,
            "message": message,
            "status": rpc_status(http_status, code),
            "details": [info, *details],
        }
    }


def error_reason(body: Any) -> str | None:
    """Corral's code (lower case) from an error body, or None when it has none."""
    try:
        for detail in body["error"]["details"]:
            if detail.get("@type") == ERROR_INFO and detail.get("domain") == DOMAIN:
                return str(detail["reason"]).lower()
    except (KeyError, TypeError, AttributeError):
        return None
    return None


def error_response(
    http_status: int,
    code: str,
    message: str,
    *,
    metadata: Mapping[str, str] | None = None,
    details: Sequence[Mapping[str, Any]] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    extra = dict(headers or {})
    if http_status == 401:
        extra.setdefault("WWW-Authenticate", "Bearer")
    body = error_body(http_status, code, message, metadata=metadata, details=details)
    return JSONResponse(body, status_code=http_status, headers=extra or None)


def _corral(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CorralError)
    if exc.http_status >= 500:
        log.warning("api.error", code=exc.code, message=exc.message)
    metadata = {"limit": exc.limit} if isinstance(exc, BudgetExceeded) else None
    headers = None
    if isinstance(exc, RangeNotSatisfiable):
        headers = {"Content-Range": f"bytes */{exc.size}"}
    return error_response(
        exc.http_status, exc.code, exc.message, metadata=metadata, headers=headers
    )


def _sandbox(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SandboxError)
    status, code = sandbox_status(exc)
    return error_response(status, code, exc.message, metadata={"sandbox_reason": exc.reason})


def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    violations: list[dict[str, str]] = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):
            loc = loc[1:] if loc[0] == "body" else loc
        field = ".".join(loc)
        violations.append({"field": field, "description": str(err.get("msg", "invalid"))})
    parts = [
        f"{v['field']}: {v['description']}" if v["field"] else v["description"] for v in violations
    ]
    message = "; ".join(parts[:5]) or "invalid request"
    detail = {"@type": BAD_REQUEST, "fieldViolations": violations[:50]}
    return error_response(400, "invalid_argument", message, details=[detail])


HTTP_CODES: dict[int, str] = {
    400: "invalid_argument",
    401: "unauthenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "resource_exhausted",
}


def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    code = HTTP_CODES.get(status, "invalid_argument" if status < 500 else "internal")
    message = str(exc.detail)
    if status == 404 and message == "Not Found":
        message = "no such route (see /openapi.json)"
    return error_response(status, code, message, headers=exc.headers)


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.unexpected", error=f"{type(exc).__name__}: {exc}")
    return error_response(500, "internal", "internal error (see the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CorralError, _corral)
    app.add_exception_handler(SandboxError, _sandbox)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
