"""Error codes and the one error shape of the API.

Every error body is ``{"error": {"code": "<machine_code>", "message": "...", "details": ...}}``,
FastAPI's own validation errors and Starlette's 404/405 included. Bad input always gets a 4xx;
a 5xx means the service (or its store) failed, never that the request was wrong.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse as _JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from service.engine.encode import dumps

logger = logging.getLogger("service.api.errors")


class JSONResponse(_JSONResponse):
    """JSON by the service's one encoder (:func:`service.engine.encode.dumps`: UTF-8, ASCII-
    escaped when a request carried strings UTF-8 cannot encode, so an error echoing them still
    renders)."""

    def render(self, content: Any) -> bytes:
        return dumps(content)


class ErrorCode(str, Enum):
    """Machine-readable error codes, each with its HTTP status (see :data:`STATUS`)."""

    INVALID_JSON = "invalid_json"
    INVALID_REQUEST = "invalid_request"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    TOO_MANY_EVENTS = "too_many_events"
    INVALID_STREAM_ID = "invalid_stream_id"
    INVALID_EVENT = "invalid_event"
    WRONG_FEATURE_COUNT = "wrong_feature_count"
    UNKNOWN_FEATURE = "unknown_feature"
    MISSING_FEATURE = "missing_feature"
    NON_FINITE_VALUE = "non_finite_value"
    VALUE_OUT_OF_RANGE = "value_out_of_range"
    NON_FINITE_STATE = "non_finite_state"
    INVALID_TIMESTAMP = "invalid_timestamp"
    OUT_OF_ORDER = "out_of_order"
    UNAUTHORIZED = "unauthorized"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    UNKNOWN_MODEL = "unknown_model"
    INVALID_STATE = "invalid_state"
    INVALID_TIME = "invalid_time"
    UNAVAILABLE = "unavailable"
    STORE_FULL = "store_full"
    REQUEST_TIMEOUT = "request_timeout"
    INTERNAL = "internal"


STATUS: dict[ErrorCode, int] = {
    ErrorCode.INVALID_JSON: 400,
    ErrorCode.INVALID_REQUEST: 422,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.TOO_MANY_EVENTS: 413,
    ErrorCode.INVALID_STREAM_ID: 422,
    ErrorCode.INVALID_EVENT: 422,
    ErrorCode.WRONG_FEATURE_COUNT: 422,
    ErrorCode.UNKNOWN_FEATURE: 422,
    ErrorCode.MISSING_FEATURE: 422,
    ErrorCode.NON_FINITE_VALUE: 422,
    ErrorCode.VALUE_OUT_OF_RANGE: 422,
    ErrorCode.NON_FINITE_STATE: 422,
    ErrorCode.INVALID_TIMESTAMP: 422,
    ErrorCode.OUT_OF_ORDER: 409,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.METHOD_NOT_ALLOWED: 405,
    ErrorCode.UNKNOWN_MODEL: 404,
    ErrorCode.INVALID_STATE: 422,
    ErrorCode.INVALID_TIME: 422,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.STORE_FULL: 503,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.INTERNAL: 500,
}


class ApiError(Exception):
    """An error answered to the client with its code's status and the common body."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: Any = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers

    @property
    def status(self) -> int:
        return STATUS[self.code]

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def error_body(code: ErrorCode | str, message: str, details: Any = None) -> dict[str, Any]:
    value = code.value if isinstance(code, ErrorCode) else code
    return {"error": {"code": value, "message": message, "details": details}}


def error_response(
    code: ErrorCode, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        error_body(code, message, details), status_code=STATUS[code], headers=headers
    )


def _clean_validation_errors(errors: Any) -> list[dict[str, Any]]:
    """FastAPI/pydantic error entries reduced to JSON-safe ``loc``/``msg``/``type``."""
    out = []
    for err in errors:
        loc = [p if isinstance(p, (str, int)) else str(p) for p in err.get("loc", ())]
        out.append({"loc": loc, "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))})
    return out


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _clean_validation_errors(exc.errors())
    where = ", ".join(".".join(str(p) for p in d["loc"]) for d in details[:3])
    return error_response(
        ErrorCode.INVALID_REQUEST, f"invalid request parameters ({where})", details
    )


_HTTP_CODES = {
    400: ErrorCode.INVALID_REQUEST,
    401: ErrorCode.UNAUTHORIZED,
    403: ErrorCode.FORBIDDEN,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    413: ErrorCode.PAYLOAD_TOO_LARGE,
    415: ErrorCode.UNSUPPORTED_MEDIA_TYPE,
    422: ErrorCode.INVALID_REQUEST,
    503: ErrorCode.UNAVAILABLE,
}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code)
    message = str(exc.detail) if exc.detail else "error"
    if exc.status_code == 404:
        message = f"no such resource: {request.url.path}"
    body = error_body(code or f"http_{exc.status_code}", message)
    return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)


async def _store_error(request: Request, exc: Exception) -> JSONResponse:
    logger.warning("state store unavailable: %r", exc)
    return error_response(ErrorCode.UNAVAILABLE, "the state store is unavailable; retry later")


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(ErrorCode.INTERNAL, "internal error")


def install_error_handlers(
    app: FastAPI, extra: dict[type[Exception], ErrorCode] | None = None
) -> None:
    """Route every error through the common body. ``extra`` maps library exceptions to codes
    (their ``str()`` becomes the message)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RedisConnectionError, _store_error)
    app.add_exception_handler(RedisTimeoutError, _store_error)
    app.add_exception_handler(Exception, _internal_error)
    for exc_type, code in (extra or {}).items():

        async def handler(request: Request, exc: Exception, code: ErrorCode = code) -> JSONResponse:
            return error_response(code, str(exc) or code.value)

        app.add_exception_handler(exc_type, handler)
