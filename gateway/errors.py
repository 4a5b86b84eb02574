"""OpenAI's error envelope and the exceptions that map onto it.

Every error a client sees has the shape ``{"error": {"message", "type", "param", "code"}}``
and a status code an OpenAI SDK knows how to treat (it retries 429/5xx, not 4xx).
"""

from __future__ import annotations

from typing import Any, TypeVar

import logging

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

log = logging.getLogger(__name__)
WireModel = TypeVar("WireModel", bound=BaseModel)

from gateway import metrics

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "server_error",
    504: "timeout_error",
}


class APIError(Exception):
    """An error with everything the envelope needs; raise it anywhere below the app."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type or _TYPES.get(status, "server_error")
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self, extra_headers: dict[str, str] | None = None) -> JSONResponse:
        # Counted here rather than in an HTTP middleware: Starlette's BaseHTTPMiddleware
        # re-pipes every streamed body, which costs the hot path on each chunk.
        metrics.ERRORS.labels(str(self.status), self.type).inc()
        return JSONResponse(self.body(), status_code=self.status, headers={**self.headers, **(extra_headers or {})})


def invalid(message: str, param: str | None = None, code: str | None = "invalid_request") -> APIError:
    return APIError(400, message, param=param, code=code)


def _param_path(loc: tuple[Any, ...]) -> str | None:
    parts = [str(p) for p in loc if p not in ("body",)]
    if not parts:
        return None
    path = parts[0]
    for part in parts[1:]:
        path += f"[{part}]" if part.isdigit() else f".{part}"
    return path


def from_validation_errors(errors: list[dict[str, Any]]) -> APIError:
    """Turn pydantic's error list into one 400 naming the first bad field."""
    first = errors[0]
    param = _param_path(tuple(first.get("loc", ())))
    msg = first.get("msg", "invalid value").removeprefix("Value error, ")
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    where = f"'{param}': " if param else ""
    return invalid(f"{where}{msg}{more}", param=param)


def validated(model: type[WireModel], body: dict[str, Any]) -> WireModel:
    """``body`` as ``model``, or a 400 naming the first bad field."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise from_validation_errors(list(exc.errors())) from None


async def api_error_handler(_: Request, exc: APIError) -> JSONResponse:
    return exc.response()


async def validation_error_handler(_: Request, exc: RequestValidationError) -> JSONResponse:
    return from_validation_errors(list(exc.errors())).response()


async def http_error_handler(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method) in OpenAI's envelope, worded as
    OpenAI words them, so an SDK shows what was wrong instead of a bare status."""
    where = f"{request.method} {request.url.path}"
    if exc.status_code == 404:
        error = APIError(404, f"Invalid URL ({where}): no such endpoint.", code="unknown_url")
    elif exc.status_code == 405:
        error = APIError(405, f"Method not allowed ({where}).", code="method_not_allowed",
                         headers=dict(exc.headers or {}))
    else:
        error = APIError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {}))
    return error.response()


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """A bug below the app is still an envelope (the traceback goes to the log only)."""
    log.error("unhandled %s on %s %s", type(exc).__name__, request.method, request.url.path, exc_info=exc)
    return APIError(500, "The server had an error while processing your request.", code="internal_error").response()
