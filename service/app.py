"""The app factory: ``create_app(settings)`` builds the FastAPI app; its lifespan owns the store,
the live bus and the engine (started on startup, drained and closed on shutdown).

``uvicorn --factory service.app:app_from_env`` builds the settings from the environment at
start-up (what ``liquid serve`` uses for its worker processes).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic.json_schema import models_json_schema

from service.api.auth import Authenticator
from service.api.deps import AppContext
from service.api.errors import JSONResponse, install_error_handlers
from service.api.failures import install_failure_handlers
from service.api.front_door import LiquidApp
from service.api.middleware import BodyLimitMiddleware, MetricsMiddleware
from service.api.routers import events, health, live, models, streams, ui
from service.api.routers.fast import fast_routes
from service.api.schemas import EventBatchIn, EventIn, MultiEventBatchIn, StateIn, StreamEventIn
from service.engine import Engine, EngineConfig
from service.engine.registry import ModelRegistry
from service.gc_tuning import tune_gc_for_serving
from service.live.cluster import make_live_bus
from service.memory_release import release_after_crowds_leave
from service.metrics import Metrics, multiprocess_dir
from service.settings import SETTINGS_ENV, Settings
from service.store import make_store

log = logging.getLogger("service")

SHUTDOWN_GRACE_S = 5.0

DESCRIPTION = """
Streaming inference for irregular sensor data with liquid neural networks (LTC, CfC).

Each stream's hidden state advances by the real elapsed time between its events. Send events
with `POST /v1/streams/{stream_id}/events` (or many streams at once with `POST /v1/events`);
watch a stream live on the WebSocket `/v1/streams/{stream_id}/live`.

**Events**: `{"t": <epoch seconds or RFC 3339>, "x": [numbers] or {"name": number}, "id": "..."}`.
Per stream, events apply in time order, exactly once: an older event is refused (409
`out_of_order`), a retried `id` returns the original prediction marked `duplicate`.

**Errors** share one body: `{"error": {"code", "message", "details"}}`; bad input always gets
a 4xx with a machine-readable code and changes no state.

**Auth**: when the service has API keys, send `Authorization: Bearer <key>` (WebSocket:
`?token=<key>` also works). Each key belongs to a tenant, and tenants see only their own
streams.

**WebSocket** `/v1/streams/{stream_id}/live[?model=&token=]`: JSON text frames. The server
sends `{"type": "subscribed"}`, then `{"type": "prediction", "prediction": {...}}` for every
prediction of the stream from any route or replica. The client may send events (the body of
the POST route, optionally with `"request_id"`); each gets `{"type": "result" | "error",
"request_id", "status", ...}` (a store that is down or full: an error with status 503, the
socket stays open). Binary frames are not supported: they close the socket with 1003. Close
codes: 1008 auth / invalid stream id / unknown model / a client that stopped reading, 1003
binary frame, 1000 idle, 1013 not running, 1001 shutdown, 1011 internal error.
"""

_DOC_MODELS = (EventIn, EventBatchIn, StreamEventIn, MultiEventBatchIn, StateIn)


def engine_config(settings: Settings) -> EngineConfig:
    return EngineConfig(
        max_batch=settings.max_batch,
        max_delay_s=settings.max_delay_ms / 1000.0,
        state_ttl_s=settings.state_ttl_s,
        max_gap_s=settings.max_gap_s if settings.max_gap_s is not None else math.inf,
        first_event_dt_s=settings.first_event_dt_s,
        dedupe_window=settings.dedupe_window,
        max_abs_input=settings.max_abs_input,
        device=settings.resolved_device(),
        max_cas_retries=settings.max_cas_retries,
        active_window_s=settings.active_window_s,
        max_queue=max(settings.max_queue, settings.max_batch),
        batch_buckets=None if settings.batch_buckets is None else tuple(settings.batch_buckets),
        max_inflight_batches=settings.max_inflight_batches,
        inline_steps=settings.inline_steps,
    )


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    _, defs = models_json_schema(
        [(m, "validation") for m in _DOC_MODELS], ref_template="#/components/schemas/{model}"
    )
    schema.setdefault("components", {}).setdefault("schemas", {}).update(defs.get("$defs", {}))
    app.openapi_schema = schema
    return schema


def create_app(
    settings: Settings,
    *,
    registry: ModelRegistry | None = None,
    store: Any = None,
    live_bus: Any = None,
) -> FastAPI:
    """The service app. ``registry``, ``store`` and ``live_bus`` replace what ``settings`` would
    make (tests, embedding); an injected store or bus is not closed on shutdown."""
    logging.getLogger("service").setLevel(settings.log_level.upper().replace("TRACE", "DEBUG"))
    if registry is None:
        registry = ModelRegistry.load(settings.models)
    config = engine_config(settings)
    registry = registry.configured(config)
    metrics = Metrics()
    ctx = AppContext(
        settings=settings,
        registry=registry,
        auth=Authenticator(settings.api_keys),
        metrics=metrics,
        stream_id_re=re.compile(settings.stream_id_pattern),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.redis_url
        ctx.store = (
            store
            if store is not None
            else make_store(
                url,
                min_replicas_ack=settings.redis_min_replicas_ack,
                replica_ack_timeout_s=settings.redis_replica_ack_timeout_ms / 1000.0,
                metrics=metrics,
            )
        )
        ctx.live = live_bus if live_bus is not None else make_live_bus(url, metrics)
        engine = Engine(registry, ctx.store, ctx.live, metrics, config)
        await engine.start()
        ctx.engine = engine
        ctx.closing = False
        for entry in registry.all():
            metrics.model_info.labels(model=entry.name, version=entry.version).set(1)
        metrics.state_store_up.set(1 if await ctx.store.ping() else 0)
        mqtt = await _start_mqtt(ctx)
        log.info(
            "serving %s on %s with %s",
            ", ".join(f"{e.name}@{e.version}" for e in registry.all()),
            engine.device,
            "redis" if url else "the in-process store",
        )
        releaser = None
        if settings.memory_release_threshold:
            releaser = asyncio.create_task(
                release_after_crowds_leave(
                    lambda: len(ctx.sessions), settings.memory_release_threshold
                )
            )
        try:
            yield
        finally:
            ctx.closing = True
            if mqtt is not None:
                await mqtt.stop(SHUTDOWN_GRACE_S)
            if releaser is not None:
                releaser.cancel()
            await _end_live_sessions(ctx)
            await engine.stop()
            ctx.engine = None
            if live_bus is None:
                await ctx.live.close()
            if store is None:
                await ctx.store.close()
            if multiprocess_dir():
                from prometheus_client import multiprocess

                multiprocess.mark_process_dead(os.getpid())

    app = LiquidApp(
        title="liquidstream",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        default_response_class=JSONResponse,
        # The service exports its own Prometheus series; FastAPI's native OpenTelemetry
        # hooks would only add per-request work.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        openapi_tags=[
            {"name": "streams", "description": "Events, predictions and state of one stream."},
            {"name": "events", "description": "Events of many streams in one request."},
            {"name": "models", "description": "The served models."},
            {"name": "health", "description": "Liveness, readiness, metrics."},
        ],
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    install_failure_handlers(app, settings.retry_after_s)
    routers = [m.router for m in (streams, events, models, health, live, ui)]
    for router in routers:
        app.include_router(router)
    # the events routes without per-request dependency solving, in front of their FastAPI twins
    plain = fast_routes([r for rt in routers for r in rt.routes])
    app.router.routes[:0] = plain
    # Added last = outermost: metrics see every answer, the body-limit's 413s included.
    app.add_middleware(
        BodyLimitMiddleware, max_bytes=settings.max_body_bytes, timeout_s=settings.body_timeout_s
    )
    app.add_middleware(
        MetricsMiddleware, metrics=metrics, routes=[r for rt in routers for r in rt.routes]
    )
    app.open_front_door(plain)  # and dispatched before routing (service.api.front_door)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


async def _start_mqtt(ctx: AppContext) -> Any:
    """The MQTT consumer, started, when the settings name a broker (else None)."""
    config = ctx.settings.mqtt_config()
    if config is None:
        return None
    from service.mqtt.consumer import MqttConsumer

    consumer = MqttConsumer(config, ctx)
    await consumer.start()
    ctx.readiness["mqtt"] = lambda: consumer.connected
    return consumer


async def _end_live_sessions(ctx: AppContext) -> None:
    """Close every live session's feed (each then closes its socket with 1001) and wait."""
    sessions = list(ctx.sessions)
    if not sessions:
        return
    for session in sessions:
        session.stop()
    waits = [asyncio.create_task(s.finished.wait()) for s in sessions]
    _, pending = await asyncio.wait(waits, timeout=SHUTDOWN_GRACE_S)
    for task in pending:
        task.cancel()


def app_from_env() -> FastAPI:
    """Factory for uvicorn (``--factory``): settings from ``liquid serve`` or the environment."""
    raw = os.environ.get(SETTINGS_ENV)
    settings = Settings.model_validate_json(raw) if raw else Settings()
    app = create_app(settings)
    # A serving process only (not an app built in tests): its start-up heap lives as long as it.
    tune_gc_for_serving()
    return app
