"""Errors on the wire: every failure answers `{"error": {"code", "message"}}` with a fitting status.

Handlers installed by `install_error_handlers` map our error trees (`CorralError.http_status`,
`SandboxError.reason`), request-validation errors and Starlette's HTTP errors to that one shape,
so a client (the google-genai SDK picks its exception class from the status) never sees a bare
500 page or FastAPI's `{"detail": ...}`.

The API's own errors (beside `runtime.errors`)::

    CorralError
    ├── PolicyDenied     over one of the key's ceilings (resources, network mode) (403)
    └── QuotaExceeded    the tenant holds as many live sandboxes / streams as allowed (429)
"""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from runtime.errors import (
    BadRequest,
    CorralError,
    PayloadTooLarge,
    RangeNotSatisfiable,
    Unauthorized,
)
from sandbox.errors import SandboxError

__all__ = [
    "BadRequest",
    "PayloadTooLarge",
    "PolicyDenied",
    "QuotaExceeded",
    "RangeNotSatisfiable",
    "Unauthorized",
    "error_body",
    "error_response",
    "install_error_handlers",
    "sandbox_status",
]

log = structlog.get_logger("corral.api")


class PolicyDenied(CorralError):
    """A request over one of the operator's ceilings for this key; the message names it."""

    code = "permission_denied"
    http_status = 403


class QuotaExceeded(CorralError):
    """The tenant already holds as many live sandboxes or open streams as its key allows."""

    code = "resource_exhausted"
    http_status = 429


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
    """(HTTP status, wire code) for a sandbox error. Tool errors carry their wire `code`."""
    code = getattr(exc, "code", None) or exc.reason
    if code == "not_found" and exc.reason == "tool_error":
        return 404, "file_not_found"
    status = SANDBOX_STATUS.get(code, SANDBOX_STATUS.get(exc.reason, 500))
    return status, f"sandbox_{code}" if code != "not_found" else "not_found"


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)


def _corral(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CorralError)
    if exc.http_status >= 500:
        log.warning("api.error", code=exc.code, message=exc.message)
    resp = error_response(exc.http_status, exc.code, exc.message)
    if isinstance(exc, RangeNotSatisfiable):
        resp.headers["Content-Range"] = f"bytes */{exc.size}"
    return resp


def _sandbox(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SandboxError)
    status, code = sandbox_status(exc)
    return error_response(status, code, exc.message)


def _validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", ""))
    return error_response(400, "invalid_argument", "; ".join(parts) or "invalid request")


def _http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
    code = codes.get(exc.status_code, "invalid_argument" if exc.status_code < 500 else "internal")
    return error_response(exc.status_code, code, str(exc.detail))


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("api.unexpected", error=f"{type(exc).__name__}: {exc}")
    return error_response(500, "internal", "internal error (see the server log)")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CorralError, _corral)
    app.add_exception_handler(SandboxError, _sandbox)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _unexpected)
