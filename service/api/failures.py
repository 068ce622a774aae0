"""How failures of the engine and of the state store are answered.

One table for the HTTP exception handlers and the WebSocket session, so that a failure gets
the same code on every route and socket: engine errors by type, a store that refuses writes
for want of memory ``store_full`` (503), a store that does not answer ``unavailable`` (503).
Both 503s carry ``Retry-After``: the condition is the store's, and passes.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

from service.api.errors import STATUS, ApiError, ErrorCode, JSONResponse
from service.engine import (
    EngineStopped,
    InvalidEvent,
    InvalidState,
    InvalidTime,
    StateConflict,
    StateUnreadable,
    StreamNotFound,
    UnknownModel,
)
from service.engine.storage import STORE_DOWN, StoreFull

log = logging.getLogger(__name__)

# Most specific first: the first matching type decides.
ENGINE_ERRORS: tuple[tuple[type[Exception], ErrorCode], ...] = (
    (StoreFull, ErrorCode.STORE_FULL),
    (UnknownModel, ErrorCode.UNKNOWN_MODEL),
    (StreamNotFound, ErrorCode.NOT_FOUND),
    (InvalidTime, ErrorCode.INVALID_TIME),
    (InvalidState, ErrorCode.INVALID_STATE),
    (InvalidEvent, ErrorCode.INVALID_EVENT),
    (EngineStopped, ErrorCode.UNAVAILABLE),
    (StateConflict, ErrorCode.UNAVAILABLE),
    (StateUnreadable, ErrorCode.INTERNAL),
)
STORE_DOWN_MESSAGE = "the state store is unavailable; retry later"


def failure_error(exc: BaseException, retry_after_s: int) -> ApiError | None:
    """The answer to ``exc``; ``None`` when it is not a known failure (an internal error)."""
    code: ErrorCode | None = None
    message = ""
    for exc_type, mapped in ENGINE_ERRORS:
        if isinstance(exc, exc_type):
            code, message = mapped, str(exc) or mapped.value
            break
    else:
        if isinstance(exc, STORE_DOWN):
            log.warning("state store unavailable: %r", exc)
            code, message = ErrorCode.UNAVAILABLE, STORE_DOWN_MESSAGE
    if code is None:
        return None
    headers = {"Retry-After": str(retry_after_s)} if STATUS[code] == 503 else None
    return ApiError(code, message, headers=headers)


def install_failure_handlers(app: FastAPI, retry_after_s: int) -> None:
    """Answer every type of :data:`ENGINE_ERRORS` and :data:`STORE_DOWN` through
    :func:`failure_error` (replacing the generic store handler of ``service.api.errors``)."""

    async def handler(request: Request, exc: Exception) -> JSONResponse:
        err = failure_error(exc, retry_after_s)
        assert err is not None
        return JSONResponse(err.body(), status_code=err.status, headers=err.headers)

    for exc_type in (*(t for t, _ in ENGINE_ERRORS), *STORE_DOWN):
        app.add_exception_handler(exc_type, handler)
