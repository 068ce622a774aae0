"""``POST /v1/events``: events of many streams in one request, with per-item results."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request, Response

from service.api.deps import Ctx, ModelName, Tenant, read_json, served_model
from service.api.errors import STATUS, ApiError, ErrorCode, JSONResponse
from service.api.parsing import FieldError, check_stream_id, parse_event
from service.api.routers.streams import BODY_ERRORS
from service.api.schemas import BatchResultsOut
from service.api.submit import batch_results, check_count
from service.engine import Event

router = APIRouter(tags=["events"])

_ITEM_KEYS = frozenset({"stream_id"})

MULTI_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/MultiEventBatchIn"},
            }
        },
    }
}


@router.post(
    "/v1/events",
    summary="Apply events of many streams",
    description=(
        "Apply events of many streams in one request; each stream's events in the order given. "
        "The answer (200) has one result per event, in request order, each with its own "
        "`status`: 200 with a prediction, 409 `out_of_order`, or 422 with the validation error "
        "of that event. **Invalid items are reported and skipped; the valid ones are applied** "
        "(unlike `POST /v1/streams/{stream_id}/events`, which applies nothing when any event is "
        'invalid). A malformed envelope (not `{"events": [...]}`, too many events) fails the '
        "whole request and applies nothing."
    ),
    response_model=BatchResultsOut,
    responses=BODY_ERRORS,
    openapi_extra=MULTI_BODY,
)
async def post_multi(
    request: Request, ctx: Ctx, tenant: Tenant, model: ModelName = None
) -> Response:
    received_at = time.time()
    served = served_model(ctx, model)
    body = await read_json(request)
    if isinstance(body, dict) and set(body) == {"events"} and isinstance(body["events"], list):
        items: list[Any] = body["events"]
    elif isinstance(body, list):
        items = body
    else:
        raise ApiError(
            ErrorCode.INVALID_EVENT,
            'the body must be {"events": [{"stream_id": ..., "t": ..., "x": [...]}, ...]}',
        )
    check_count(ctx, len(items))
    engine = ctx.require_engine()
    events: list[Any] = []
    positions: list[tuple[int, str]] = []
    failed: list[tuple[int, str | None, int, dict[str, Any]]] = []
    for i, item in enumerate(items):
        stream_id: str | None = None
        try:
            if not isinstance(item, dict) or "stream_id" not in item:
                raise FieldError(ErrorCode.INVALID_EVENT, "an item needs 'stream_id'", "stream_id")
            stream_id = check_stream_id(item["stream_id"], ctx.stream_id_re)
            parsed = parse_event(item, served.features, extra_keys=_ITEM_KEYS)
        except FieldError as exc:
            failed.append(
                (
                    i,
                    stream_id,
                    STATUS[exc.code],
                    {"code": exc.code.value, "message": exc.message, "details": exc.detail()},
                )
            )
            continue
        assert stream_id is not None
        events.append(Event(stream_id, parsed.t, parsed.x, parsed.id, received_at))
        positions.append((i, stream_id))
    results = await engine.submit(tenant, served.name, events) if events else []
    done = [(i, sid, r) for (i, sid), r in zip(positions, results, strict=True)]
    return JSONResponse(batch_results(ctx, done, failed))
