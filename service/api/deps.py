"""What every router shares: the app context, dependencies, body reading and JSON shapes."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from service.api.auth import Authenticator, require_tenant
from service.api.errors import ApiError, ErrorCode
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


JSON_TYPES = ("application/json",)


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json"))


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key!r} in an object")
            seen.add(key)
    return obj


def parse_json_bytes(raw: bytes) -> Any:
    """Parse a request body. ``NaN``/``Infinity`` tokens and overflowing numbers parse (to
    non-finite floats) so that validation can name them; anything else malformed is
    ``invalid_json``, an object with a key twice included (which value was meant?)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ApiError(ErrorCode.INVALID_JSON, "request body is not UTF-8") from None
    try:
        return json.loads(text, object_pairs_hook=_object_without_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ApiError(
            ErrorCode.INVALID_JSON,
            f"request body is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})",
        ) from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer of > 4300 digits, deep nesting
        raise ApiError(ErrorCode.INVALID_JSON, f"request body is not usable JSON: {exc}") from None


async def read_body(request: Request) -> bytes:
    """The request's body bytes, checked to be non-empty JSON by its content type (size already
    bounded by the body-limit middleware)."""
    content_type = request.headers.get("content-type")
    if content_type is not None and not _is_json(content_type):
        raise ApiError(
            ErrorCode.UNSUPPORTED_MEDIA_TYPE,
            f"send JSON with 'Content-Type: application/json'; got {content_type!r}",
        )
    raw = await request.body()
    if not raw.strip():
        raise ApiError(ErrorCode.INVALID_JSON, "request body is empty; send a JSON document")
    return raw


async def read_json(request: Request) -> Any:
    """The request's JSON body, parsed exactly (:func:`parse_json_bytes`)."""
    return parse_json_bytes(await read_body(request))
