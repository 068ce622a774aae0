"""Liveness, readiness and Prometheus metrics. None of these needs an API key."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response
from redis.exceptions import RedisError

from service.api.deps import AppContext, Ctx
from service.api.errors import JSONResponse
from service.api.schemas import HealthOut, ReadyOut
from service.engine.storage import accepts_writes

router = APIRouter(tags=["health"])

PING_TIMEOUT_S = 2.0


@router.get(
    "/healthz",
    summary="Liveness",
    description="200 while the process serves requests.",
    response_model=HealthOut,
)
async def healthz() -> Response:
    return JSONResponse({"status": "ok"})


async def store_answers(ctx: AppContext) -> bool:
    store = ctx.store
    if store is None:
        return False
    try:
        ok = bool(await asyncio.wait_for(store.ping(), PING_TIMEOUT_S))
    except (asyncio.TimeoutError, OSError):
        ok = False
    ctx.metrics.state_store_up.set(1 if ok else 0)
    return ok


async def store_takes_writes(ctx: AppContext) -> bool:
    """False when the store answers but refuses writes (out of memory, read-only)."""
    try:
        return await asyncio.wait_for(accepts_writes(ctx.store), PING_TIMEOUT_S)
    except (asyncio.TimeoutError, OSError, RedisError):
        return False


@router.get(
    "/readyz",
    summary="Readiness",
    description="200 when the state store answers and takes writes (a Redis out of memory "
    "does not), the models are loaded and the engine runs; 503 otherwise (with the failing "
    "checks).",
    response_model=ReadyOut,
    responses={503: {"model": ReadyOut, "description": "Not ready."}},
)
async def readyz(ctx: Ctx) -> Response:
    engine = ctx.engine
    answers = await store_answers(ctx)
    checks = {
        "store": answers,
        "store_writable": answers and await store_takes_writes(ctx),
        "models": len(ctx.registry) > 0,
        "engine": engine is not None and engine.running and not ctx.closing,
        **{name: check() for name, check in ctx.readiness.items()},
    }
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description="Exposition text of every `liquid_` series (all worker processes merged).",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}}},
)
async def metrics(ctx: Ctx) -> Response:
    body, content_type = ctx.metrics.render_latest()
    return Response(content=body, media_type=content_type)
