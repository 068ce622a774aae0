"""``POST /v1/events``: events of many streams in one request, with per-item results."""

from __future__ import annotations

import time

from fastapi import APIRouter, Request, Response

from service.api.deps import Ctx, ModelName, Tenant, read_events_body, served_model
from service.api.routers.streams import BODY_ERRORS, bulk_content
from service.api.schemas import BatchResultsOut
from service.api.submit import submit_many_streams

router = APIRouter(tags=["events"])

MULTI_BODY = {
    "requestBody": {
        "required": True,
        "description": 'Content types: application/json ({"events": [...]} or a list), '
        "application/x-ndjson (one item per line; item i of the answer is the i-th non-empty "
        "line) and application/msgpack (the JSON shapes in MessagePack).",
        "content": bulk_content(
            {"schema": {"$ref": "#/components/schemas/MultiEventBatchIn"}},
            "item with its stream_id",
        ),
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
    raw, fmt = await read_events_body(request)
    return await submit_many_streams(ctx, tenant, served, raw, fmt, received_at)
