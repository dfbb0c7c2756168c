"""Route classes that answer errors in the shape each E2B client reads."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute

from runtime.e2b.common import status_of
from runtime.e2b.connect import unary_error

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


def _status(exc: Exception) -> tuple[int, str]:
    if isinstance(exc, RequestValidationError):
        errs = exc.errors()
        where = ".".join(str(p) for p in errs[0]["loc"]) if errs else ""
        return 400, f"invalid request: {where}: {errs[0]['msg']}" if errs else "invalid request"
    if isinstance(exc, ValueError):
        return 400, f"invalid request: {exc}"
    return status_of(exc)


class _ShapedErrorsRoute(APIRoute):
    """A route whose errors, whatever raised them, answer in its front door's shape."""

    @staticmethod
    def render(status: int, message: str) -> Response:
        raise NotImplementedError

    def get_route_handler(self) -> Handler:
        inner = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await inner(request)
            except Exception as exc:
                status, message = _status(exc)
                return self.render(status, message)

        return handler


class E2BRoute(_ShapedErrorsRoute):
    """E2B's REST API errors: `{"code": status, "message": ...}`."""

    @staticmethod
    def render(status: int, message: str) -> Response:
        return JSONResponse({"code": status, "message": message}, status_code=status)


class ConnectRoute(_ShapedErrorsRoute):
    """envd's Connect-RPC errors: `{"code": "<connect code>", "message": ...}`."""

    render = staticmethod(unary_error)
