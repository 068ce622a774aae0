"""What every router shares: the app context, dependencies, body reading and JSON shapes."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from service.api.auth import Authenticator, require_tenant
from service.api.errors import ApiError, ErrorCode
from service.api.formats import BodyFormat, body_format, parse_json_bytes
from service.api.parsing import FieldError, check_stream_id
from service.engine import Engine, UnknownModel
from service.engine.registry import ModelRegistry, ServedModel
from service.metrics import Metrics
from service.settings import Settings


@dataclass
class AppContext:
    """Everything a request handler needs, made by ``create_app`` and completed by the lifespan
    (``engine``, ``store``, ``live`` exist only while the app runs)."""

    settings: Settings
    registry: ModelRegistry
    auth: Authenticator
    metrics: Metrics
    stream_id_re: re.Pattern[str]
    engine: Engine | None = None
    store: Any = None
    live: Any = None
    sessions: set[Any] = field(default_factory=set)  # open live sessions (routes.live)
    closing: bool = False
    # Readiness of optional parts (e.g. "mqtt": the broker connection), added by the lifespan.
    readiness: dict[str, Callable[[], bool]] = field(default_factory=dict)

    def require_engine(self) -> Engine:
        if self.engine is None:
            raise ApiError(
                ErrorCode.UNAVAILABLE, "the service is not running (starting or stopping)"
            )
        return self.engine


async def get_ctx(request: Request) -> AppContext:  # async: no threadpool hop per request
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]
Tenant = Annotated[str, Depends(require_tenant)]
ModelName = Annotated[
    str | None,
    Query(
        description="Served model to use (see GET /v1/models); the default model when omitted.",
        max_length=64,
    ),
]


def served_model(ctx: AppContext, name: str | None) -> ServedModel:
    try:
        return ctx.registry.get(name)
    except UnknownModel as exc:
        raise ApiError(ErrorCode.UNKNOWN_MODEL, str(exc), {"model": name}) from None


def valid_stream_id(ctx: AppContext, stream_id: str) -> str:
    try:
        return check_stream_id(stream_id, ctx.stream_id_re)
    except FieldError as exc:
        raise ApiError(exc.code, exc.message, exc.detail()) from None


async def read_events_body(request: Request) -> tuple[bytes, BodyFormat]:
    """An events route's body bytes and format (JSON, NDJSON or MessagePack, by its content
    type; 415 for any other), checked to be non-empty (size already bounded by the body-limit
    middleware)."""
    fmt = body_format(request.headers.get("content-type"), bulk=True)
    raw = await request.body()
    if not (raw if fmt is BodyFormat.MSGPACK else raw.strip()):
        raise ApiError(ErrorCode.INVALID_JSON, f"request body is empty; send {fmt.value}")
    return raw, fmt


async def read_body(request: Request) -> bytes:
    """The request's body bytes, checked to be non-empty JSON by its content type."""
    body_format(request.headers.get("content-type"), bulk=False)
    raw = await request.body()
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "request body is empty; send a JSON document")
    return raw


async def read_json(request: Request) -> Any:
    """The request's JSON body, parsed exactly (:func:`parse_json_bytes`)."""
    return parse_json_bytes(await read_body(request))
