"""Per-stream routes: post events, read metadata, predict ahead, export/import state, delete."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response

from service.api.deps import (
    Ctx,
    ModelName,
    Tenant,
    read_events_body,
    read_json,
    served_model,
    valid_stream_id,
)
from service.api.errors import ApiError, ErrorCode, JSONResponse
from service.api.parsing import FieldError, parse_timestamp
from service.api.schemas import BatchResultsOut, ErrorOut, PredictionOut, StateIn, StreamInfoOut
from service.api.state import snapshot_from_json, snapshot_json
from service.api.submit import field_error, submit_one_stream
from service.engine.encode import dumps, prediction_body, rfc3339

router = APIRouter(prefix="/v1/streams", tags=["streams"])

StreamId = Annotated[
    str,
    Path(
        description="Stream id: 1-128 characters of letters, digits, '.', '_', ':' and '-', "
        "starting with a letter or digit (configurable).",
        examples=["pump-17"],
    ),
]

# The error answers each route really gives (the fuzz tests check the document against them).
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "Missing or unknown API key (`unauthorized`)."},
    404: {"model": ErrorOut, "description": "Unknown stream (`not_found`) or model."},
    422: {"model": ErrorOut, "description": "Invalid input; see `error.code`."},
    503: {
        "model": ErrorOut,
        "description": "The state store is down (`unavailable`) or out of memory "
        "(`store_full`), or the service is starting or stopping; retry after `Retry-After`.",
    },
}
# ... and those of routes that read a JSON body.
BODY_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    400: {
        "model": ErrorOut,
        "description": "The body does not decode in its format (`invalid_json`: not UTF-8 JSON; "
        "on the events routes also an NDJSON line or MessagePack that does not decode).",
    },
    408: {"model": ErrorOut, "description": "The body did not arrive in time (`request_timeout`)."},
    413: {"model": ErrorOut, "description": "Body or event count over the limit."},
    415: {
        "model": ErrorOut,
        "description": "A content type the route does not take (`unsupported_media_type`): "
        "JSON only, and on the events routes also NDJSON and MessagePack.",
    },
}

EVENTS_SCHEMA = {
    "oneOf": [
        {"$ref": "#/components/schemas/EventIn"},
        {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}},
        {"$ref": "#/components/schemas/EventBatchIn"},
    ]
}


def bulk_content(json_content: dict[str, Any], item: str) -> dict[str, Any]:
    """A request body's content map: JSON as given, NDJSON (one ``item`` per line) and
    MessagePack (the JSON shapes, encoded as MessagePack)."""
    return {
        "application/json": json_content,
        "application/x-ndjson": {
            "schema": {"type": "string", "description": f"One {item} (JSON) per line."}
        },
        "application/msgpack": {
            "schema": json_content["schema"],
            "x-description": "The JSON shapes encoded as MessagePack.",
        },
    }


EVENTS_BODY = {
    "requestBody": {
        "required": True,
        "description": 'One event, a list of events, or {"events": [...]} (in time order). '
        "Content types: application/json, application/x-ndjson (one event per line: a list) "
        "and application/msgpack (the JSON shapes in MessagePack).",
        "content": bulk_content(
            {
                "schema": EVENTS_SCHEMA,
                "examples": {
                    "one": {
                        "summary": "one event",
                        "value": {"t": 1714564800.25, "x": [0.1, -0.3, 2.0], "id": "e-1"},
                    },
                    "named": {
                        "summary": "named features, RFC 3339 time",
                        "value": {"t": "2024-05-01T12:00:00.25Z", "x": {"temp": 21.5}},
                    },
                    "many": {
                        "summary": "several events",
                        "value": {
                            "events": [
                                {"t": 1714564800.0, "x": [0.1, 0.2, 0.3]},
                                {"t": 1714564801.5, "x": [0.2, 0.2, 0.1]},
                            ]
                        },
                    },
                },
            },
            "event",
        ),
    }
}

STATE_BODY = {
    "requestBody": {
        "required": True,
        "description": "A state as exported by GET .../state.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StateIn"}}},
    }
}


@router.post(
    "/{stream_id}/events",
    summary="Apply events to a stream",
    description=(
        "Apply one event, or several of one stream in time order, and return a prediction per "
        "event. A single event answers with the prediction (200), an `out_of_order` error "
        "(409) or a `non_finite_state` error (422: its step would make the state non-finite; "
        "not applied). A list answers 200 with a result per event, each with its own `status` "
        "(200, 409 or 422). Every event is validated before any is applied: one invalid event "
        "fails the request (4xx) and leaves the stream untouched. A retried event (same `id`) "
        "is answered with its original prediction, marked `duplicate`. A 200 means the new "
        "state is committed."
    ),
    response_model=PredictionOut | BatchResultsOut,
    responses={
        **BODY_ERRORS,
        409: {"model": ErrorOut, "description": "The event is older than the stream's last one."},
    },
    openapi_extra=EVENTS_BODY,
)
async def post_events(
    request: Request, stream_id: StreamId, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    received_at = time.time()
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    raw, fmt = await read_events_body(request)
    return await submit_one_stream(ctx, tenant, served, stream_id, raw, fmt, received_at)


def stream_info_json(stream_id: str, info: Any) -> dict[str, Any]:
    return {
        "stream_id": stream_id,
        "model": info.model,
        "version": info.version,
        "last_t": info.last_t,
        "last_time": rfc3339(info.last_t),
        "count": info.count,
        "created": rfc3339(info.created),
        "updated": rfc3339(info.updated),
        "expires_at": rfc3339(info.expires_at) if info.expires_at is not None else None,
    }


def stream_not_found(stream_id: str) -> ApiError:
    return ApiError(ErrorCode.NOT_FOUND, f"no stream {stream_id!r}", {"stream_id": stream_id})


@router.get(
    "/{stream_id}",
    summary="Stream metadata",
    description="Model version, last event time, event count, created/updated times and expiry.",
    response_model=StreamInfoOut,
    responses=ERRORS,
)
async def get_stream(
    stream_id: StreamId, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    info = await ctx.require_engine().stream_info(tenant, served.name, stream_id)
    if info is None:
        raise stream_not_found(stream_id)
    return JSONResponse(stream_info_json(stream_id, info))


@router.get(
    "/{stream_id}/prediction",
    summary="Predict at a time without new input",
    description=(
        "The prediction the stream's state would give at time `at` (≥ the last event time), "
        "evolving the state with the last input held. The stored state is not changed."
    ),
    response_model=PredictionOut,
    responses=ERRORS,
)
async def get_prediction(
    stream_id: StreamId,
    ctx: Ctx,
    tenant: Tenant,
    at: Annotated[
        str | None,
        Query(
            description="Epoch seconds or RFC 3339; the current time when omitted.",
            examples=["1714564900", "2024-05-01T12:01:40Z"],
            max_length=64,
        ),
    ] = None,
    model: ModelName = None,
) -> Response:
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    try:
        when = time.time() if at is None else parse_timestamp(at, "at", numeric_strings=True)
    except FieldError as exc:
        raise field_error(exc) from None
    p = await ctx.require_engine().predict_at(tenant, served.name, stream_id, when)
    return Response(dumps(prediction_body(p, served.output_names)), media_type="application/json")


@router.get(
    "/{stream_id}/state",
    summary="Export a stream's state",
    description="The stream's hidden state and bookkeeping, for migration, handoff or tests.",
    response_model=StateIn,
    responses=ERRORS,
)
async def get_state(
    stream_id: StreamId, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    snap = await ctx.require_engine().export_state(tenant, served.name, stream_id)
    if snap is None:
        raise stream_not_found(stream_id)
    return JSONResponse(snapshot_json(stream_id, snap))


@router.put(
    "/{stream_id}/state",
    summary="Import a stream's state",
    description=(
        "Replace the stream's state with an exported one (same model version). Returns the "
        "stream's metadata."
    ),
    response_model=StreamInfoOut,
    responses=BODY_ERRORS,
    openapi_extra=STATE_BODY,
)
async def put_state(
    request: Request, stream_id: StreamId, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    body = await read_json(request)
    snap = snapshot_from_json(body, served)
    info = await ctx.require_engine().import_state(tenant, served.name, stream_id, snap)
    return JSONResponse(stream_info_json(stream_id, info))


@router.delete(
    "/{stream_id}",
    summary="Forget a stream",
    status_code=204,
    responses=ERRORS,
)
async def delete_stream(
    stream_id: StreamId, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    stream_id = valid_stream_id(ctx, stream_id)
    served = served_model(ctx, model)
    if not await ctx.require_engine().delete_stream(tenant, served.name, stream_id):
        raise stream_not_found(stream_id)
    return Response(status_code=204)
