"""The two events routes served without FastAPI's per-request dependency solving.

``POST /v1/streams/{stream_id}/events`` and ``POST /v1/events`` are the hot path: solving
their dependencies (context, tenant, query and path parameters) cost about a quarter of a
single-event request's CPU. These plain ASGI endpoints sit in front of the FastAPI routes (which
stay for OpenAPI and for anything unusual) and do the same steps in the same order: the tenant
from the ``Authorization`` header (401 first), then the stream id and the model, then the body.
A request whose ``model`` parameter FastAPI would refuse or read differently (too long, given
twice) is handed to the FastAPI route untouched, so its answer is the route's own.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from service.api.deps import AppContext, read_events_body, served_model, valid_stream_id
from service.api.submit import submit_many_streams, submit_one_stream

MAX_MODEL_CHARS = 64  # the routes' Query(max_length=...) for ``model``


def takes(scope: Scope) -> bool:
    """Whether these endpoints answer ``scope`` themselves: not when its ``model`` parameter
    is one FastAPI would refuse or read differently (too long, given twice)."""
    if not scope.get("query_string"):
        return True
    models = QueryParams(scope["query_string"]).getlist("model")
    return len(models) <= 1 and not (models and len(models[0]) > MAX_MODEL_CHARS)


class _FastEvents:
    """An ASGI endpoint that answers like ``fallback`` (the FastAPI route of the same path)."""

    def __init__(self, fallback: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self._fallback = fallback

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not takes(scope):
            await self._fallback(scope, receive, send)
            return
        request = Request(scope, receive)
        received_at = time.time()
        ctx: AppContext = request.app.state.ctx
        tenant = ctx.auth.tenant_for(request.headers.get("authorization"))
        model = request.query_params.get("model") if scope.get("query_string") else None
        response = await self.answer(request, ctx, tenant, model, received_at)
        await response(scope, receive, send)

    async def answer(
        self, request: Request, ctx: AppContext, tenant: str, model: str | None, at: float
    ) -> Any:
        raise NotImplementedError


class _StreamEvents(_FastEvents):
    async def answer(
        self, request: Request, ctx: AppContext, tenant: str, model: str | None, at: float
    ) -> Any:
        stream_id = valid_stream_id(ctx, request.path_params["stream_id"])
        served = served_model(ctx, model)
        raw, fmt = await read_events_body(request)
        return await submit_one_stream(ctx, tenant, served, stream_id, raw, fmt, at)


class _ManyStreams(_FastEvents):
    async def answer(
        self, request: Request, ctx: AppContext, tenant: str, model: str | None, at: float
    ) -> Any:
        served = served_model(ctx, model)
        raw, fmt = await read_events_body(request)
        return await submit_many_streams(ctx, tenant, served, raw, fmt, at)


STREAM_EVENTS_PATH = "/v1/streams/{stream_id}/events"
MANY_EVENTS_PATH = "/v1/events"
_FAST = {STREAM_EVENTS_PATH: _StreamEvents, MANY_EVENTS_PATH: _ManyStreams}


def fast_routes(routes: list[Any]) -> list[Route]:
    """Plain routes for the events paths among ``routes`` (the routers' FastAPI routes), to be
    put before them in the app."""
    out = []
    for route in routes:
        cls = _FAST.get(getattr(route, "path", ""))
        if cls is not None and "POST" in getattr(route, "methods", ()):
            endpoint = cls(route.handle)
            out.append(Route(route.path, endpoint, methods=["POST"], include_in_schema=False))
    return out
